"""Models: list and describe them, and predict (`/predict` and the KServe `:predict` alias)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from api.limits import check_limits, model_limits
from api.openapi import problem_responses, request_body
from api.parsing import read_body
from api.runtime import Runtime, runtime
from api.schemas import ModelInfo, ModelList, ModelPath, PredictRequest, PredictResponse
from explainer import METHODS, available_methods, predict
from explainer.render import prediction_document
from models.handle import ModelHandle

bp = APIBlueprint("models", __name__, abp_tags=[Tag(name="models")])


def model_info(state: Runtime, handle: ModelHandle) -> dict[str, Any]:
    """`handle.describe()` plus methods, limits, description and example."""
    methods = available_methods(handle)
    return {
        **handle.describe(),
        "description": handle.spec.description,
        "methods": methods,
        "default_methods": [m for m in METHODS if m in methods],
        "limits": model_limits(state.config, handle).as_dict(),
        "example": handle.spec.example,
    }


@bp.get(
    "/v1/models",
    summary="List the loaded models",
    responses={200: ModelList, **problem_responses(bp, 401, 503)},
)
def list_models() -> Response:
    state = runtime()
    state.require_ready()
    handles = [state.repository.get(name) for name in state.repository.names()]
    return jsonify({"models": [model_info(state, h) for h in handles]})


@bp.get(
    "/v1/models/<name>",
    summary="Describe one model",
    responses={200: ModelInfo, **problem_responses(bp, 401, 404, 503)},
)
def get_model(path: ModelPath) -> Response:
    state = runtime()
    handle, _ = state.model(path.name)
    return jsonify(model_info(state, handle))


_PREDICT: dict[str, Any] = {
    "summary": "Predict: {instances} -> {predictions}",
    "description": 'application/json only (images as `{"b64": ...}`); any other media '
    "type, multipart/form-data included, is a 415.",
    "responses": {200: PredictResponse, **problem_responses(bp, 400, 401, 404, 413, 415, 503, 504)},
    "openapi_extensions": request_body(bp, PredictRequest),
}


@bp.post("/v1/models/<name>/predict", **_PREDICT)
@bp.post("/v1/models/<string:name>:predict", endpoint="predict_kserve", **_PREDICT)
def predict_route(path: ModelPath) -> Response:
    body = read_body(PredictRequest, multipart=False)  # JSON only, as documented
    state = runtime()
    handle, engine = state.model(path.name)
    check_limits(model_limits(state.config, handle), len(body.instances))
    inputs = handle.decode(body.instances, state.config.image_limits)
    with state.slot():
        predictions = predict(handle, inputs, engine)
    return jsonify({"predictions": [prediction_document(p) for p in predictions]})
