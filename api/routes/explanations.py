"""Explanations: compute (`/explain` and the KServe `:explain` alias), fetch, and heatmap PNGs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from flask import Response, jsonify, url_for
from flask_openapi3 import APIBlueprint, Tag

from api.limits import check_limits, model_limits
from api.openapi import problem_responses, request_body
from api.parsing import read_body
from api.runtime import runtime
from api.schemas import (
    ExplainMultipart,
    ExplainRequest,
    ExplainResponse,
    ExplanationPath,
    HeatmapPath,
    HeatmapQuery,
    ModelPath,
)
from api.store import new_id
from explainer import METHODS, available_methods, check_methods, explain, resolve_target
from explainer.render import (
    bar_chart_png,
    heatmap_png,
    instance_document,
    model_reference,
    provenance,
)
from explainer.result import InstanceExplanation
from models.errors import NotFound
from models.handle import ModelHandle

bp = APIBlueprint("explanations", __name__, abp_tags=[Tag(name="explanations")])

# Heatmaps never change for a given URL and query; browsers may keep them for the store's TTL.
PNG_CACHE = "private, max-age=3600"


def _arrays(
    handle: ModelHandle, inputs: np.ndarray, results: list[InstanceExplanation]
) -> dict[str, np.ndarray]:
    """What the heatmaps are drawn from: maps per (instance, method), and the input images."""
    arrays = {
        f"{i}/{name}": np.asarray(exp.attributions, dtype=np.float32)
        for i, result in enumerate(results)
        for name, exp in result.methods.items()
    }
    if handle.is_image:
        arrays["inputs"] = np.round(np.clip(inputs, 0.0, 1.0) * 255).astype(np.uint8)
    else:
        arrays["features"] = np.asarray(handle.feature_names, dtype=np.str_)
    return arrays


_EXPLAIN: dict[str, Any] = {
    "summary": "Explain instances with several methods in one response",
    "description": "JSON body, or multipart/form-data with image files in `instances` and "
    "the other keys as a JSON object in `request`.",
    "responses": {200: ExplainResponse, **problem_responses(bp, 400, 401, 404, 413, 415, 503, 504)},
    "openapi_extensions": request_body(bp, ExplainRequest, ExplainMultipart),
}


@bp.post("/v1/models/<name>/explain", **_EXPLAIN)
@bp.post("/v1/models/<string:name>:explain", endpoint="explain_kserve", **_EXPLAIN)
def explain_route(path: ModelPath) -> Response:
    body = read_body(ExplainRequest)
    state = runtime()
    handle, engine = state.model(path.name)
    supported = available_methods(handle)
    methods = check_methods(handle, body.methods or [m for m in METHODS if m in supported])
    resolve_target(handle, body.target)
    check_limits(model_limits(state.config, handle), len(body.instances), body.options, methods)
    inputs = handle.decode(body.instances, state.config.image_limits)
    with state.slot():
        results = explain(handle, inputs, methods, body.target, body.options, body.seed, engine)
    id_ = new_id()

    def heatmap_url(index: int, method: str) -> str:
        return url_for("explanations.heatmap", id=id_, index=index, method=method)

    document: dict[str, Any] = {
        "id": id_,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model_reference(handle),
        "explanations": [
            instance_document(handle, i, result, heatmap_url if body.heatmaps else None)
            for i, result in enumerate(results)
        ],
        "provenance": provenance(
            handle,
            device=str(engine.device),
            seed=body.seed,
            target=body.target,
            methods=methods,
            options=body.options,
        ),
    }
    state.store.put(id_, handle.name, document, _arrays(handle, inputs.cpu().numpy(), results))
    response = jsonify(document)
    response.headers["Location"] = url_for("explanations.get_explanation", id=id_)
    return response


@bp.get(
    "/v1/explanations/<id>",
    summary="A stored explanation (the explain response), until it expires",
    responses={200: ExplainResponse, **problem_responses(bp, 401, 404)},
)
def get_explanation(path: ExplanationPath) -> Response:
    stored = runtime().store.get(path.id, with_arrays=False)
    return jsonify(stored.payload)


@bp.get(
    "/v1/explanations/<id>/<int:index>/<method>.png",
    summary="Heatmap PNG of one instance and method (a bar chart for tabular models)",
    responses={
        200: {"description": "PNG image", "content": {"image/png": {"schema": {}}}},
        **problem_responses(bp, 401, 404, 422),
    },
)
def heatmap(path: HeatmapPath, query: HeatmapQuery) -> Response:
    stored = runtime().store.get(path.id)
    key = f"{path.index}/{path.method}"
    if key not in stored.arrays:
        raise NotFound("no such instance or method in this explanation")
    instance = stored.payload["explanations"][path.index]
    method_result = instance["methods"][path.method]
    model = stored.payload["model"]
    text = {
        "model": model["name"],
        "version": model["version"],
        "method": path.method,
        "target": instance["target"]["label"],
        "explanation": path.id,
    }
    attributions = stored.arrays[key]
    if attributions.ndim == 2:
        png = heatmap_png(
            attributions,
            image=stored.arrays["inputs"][path.index],
            style=query.style,
            colormap=query.colormap,
            alpha=query.alpha,
            text=text,
        )
    else:
        png = bar_chart_png(
            attributions,
            [str(name) for name in stored.arrays["features"]],
            colormap=query.colormap,
            title=f"{path.method}: toward {instance['target']['label']}",
            xlabel=f"attribution ({method_result['units']})",
            text=text,
            magnitude=method_result.get("magnitude") is True,
        )
    return Response(png, mimetype="image/png", headers={"Cache-Control": PNG_CACHE})
