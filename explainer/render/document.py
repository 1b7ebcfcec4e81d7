"""Explanations as JSON-ready documents (the HTTP API's and the CLI's shape, DESIGN 3.2).

Arrays become nested lists; non-finite numbers become null so the JSON stays valid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from importlib import metadata
from typing import Any

import numpy as np

from explainer.options import ALL_METHODS, ExplainOptions
from explainer.render.reasons import reason_codes
from explainer.result import Explanation, InstanceExplanation, Prediction
from models.handle import ModelHandle

# (instance index, method) -> URL of its heatmap PNG
HeatmapUrl = Callable[[int, str], str]

_VERSIONED = {
    "torch": "torch",
    "captum": "captum",
    "shap": "shap",
    "lime": "lime",
    "sklearn": "scikit-learn",
    "numpy": "numpy",
    "explainer": "explainer",
}


def jsonable(array: np.ndarray) -> list[Any]:
    """An array as nested lists of Python numbers, with NaN and infinities as None."""
    values = np.asarray(array)
    if values.dtype.kind in "iub":
        return values.tolist()
    objects = values.astype(np.float64).astype(object)
    objects[~np.isfinite(values.astype(np.float64))] = None
    return objects.tolist()


def _number(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _method_rank(name: str) -> int:
    return ALL_METHODS.index(name) if name in ALL_METHODS else len(ALL_METHODS)


def method_document(name: str, explanation: Explanation) -> dict[str, Any]:
    """One method's result: attributions, units, quality and the method's extras."""
    out: dict[str, Any] = {
        "attributions": jsonable(explanation.attributions),
        "units": explanation.units,
        "score_kind": explanation.score_kind,
        "quality": {key: _number(value) for key, value in explanation.quality.items()},
    }
    if explanation.base_value is not None:
        out["intercept" if name == "lime" else "base_value"] = _number(explanation.base_value)
    if explanation.surrogate is not None:
        out["rules"] = list(explanation.surrogate.rules)
        out["leaf_value"] = _number(explanation.surrogate.leaf_value)
        out["tree"] = explanation.surrogate.tree
    if explanation.segments is not None:
        out["segments"] = jsonable(explanation.segments.astype(np.int64))
    if explanation.segment_weights is not None:
        out["segment_weights"] = jsonable(explanation.segment_weights)
    if explanation.magnitude:  # absolute values: no direction to read
        out["magnitude"] = True
    if explanation.cached:  # its `timings_ms` entry is that of the run that computed it
        out["cached"] = True
    return out


def prediction_document(prediction: Prediction) -> dict[str, Any]:
    """The predicted class and every class's probability."""
    return {
        "label": prediction.label,
        "index": prediction.index,
        "probabilities": [_number(p) for p in prediction.probabilities],
    }


def instance_document(
    handle: ModelHandle,
    index: int,
    result: InstanceExplanation,
    heatmap_url: HeatmapUrl | None = None,
) -> dict[str, Any]:
    """Every method's explanation of instance `index`, plus reason codes where available.

    Methods appear in the order of `ALL_METHODS`, whatever order they were computed in.
    """
    names = sorted(result.methods, key=_method_rank)
    methods = {}
    for name in names:
        methods[name] = method_document(name, result.methods[name])
        if heatmap_url is not None:
            methods[name]["heatmap_url"] = heatmap_url(index, name)
    out: dict[str, Any] = {
        "prediction": prediction_document(result.prediction),
        "target": {"label": result.target.label, "index": result.target.index},
        "score": _number(result.score),
        "methods": methods,
        "timings_ms": {name: round(result.timings_ms[name], 3) for name in names},
    }
    codes = reason_codes(handle, result)
    if codes is not None:
        out["reason_codes"] = codes
    return out


@cache
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that compute explanations."""
    versions = {}
    for key, distribution in _VERSIONED.items():
        try:
            versions[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[key] = "unknown"
    return versions


def resolved_options(handle: ModelHandle, options: ExplainOptions) -> dict[str, Any]:
    """Every option value used, defaults included (the IG baseline resolved to the model's)."""
    dumped = options.model_dump(mode="json")
    if dumped["integrated_gradients"]["baseline"] is None:
        dumped["integrated_gradients"]["baseline"] = handle.spec.default_baseline
    return dumped


def provenance(
    handle: ModelHandle,
    *,
    device: str,
    seed: int,
    target: str | int,
    methods: Sequence[str],
    options: ExplainOptions,
) -> dict[str, Any]:
    """What is needed to replay an explanation: versions, device, seed and options."""
    return {
        "versions": library_versions(),
        "device": device,
        "seed": seed,
        "target": target,
        "methods": list(methods),
        "options": resolved_options(handle, options),
    }


def model_reference(handle: ModelHandle) -> dict[str, str]:
    return {"name": handle.name, "version": handle.spec.version, "sha256": handle.sha256}
