"""`explain()` and `predict()`: the library's entry points (no Flask here).

A request's batch goes through one shared prediction forward pass, then each requested
method in turn; methods that perturb share one neighbourhood per instance (LIME, tree).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from explainer.context import MethodContext
from explainer.engine import Engine
from explainer.methods import REGISTRY
from explainer.options import METHODS, ExplainOptions
from explainer.result import InstanceExplanation, Prediction
from explainer.targets import (
    as_target,
    predictions_from_outputs,
    resolve_target,
    target_indices,
)
from models.errors import ErrorItem, InvalidInput
from models.handle import ModelHandle


def available_methods(handle: ModelHandle) -> list[str]:
    """The methods this model supports (perturbation methods on tabular need a background)."""
    names = [m for m in REGISTRY if handle.is_image or m != "gradcam"]
    if not handle.is_image and handle.background is None:
        names = [m for m in names if m not in ("shap", "lime", "tree")]
    return names


def check_methods(handle: ModelHandle, methods: Sequence[str]) -> list[str]:
    """Validate method names before any model call; duplicates are dropped."""
    supported = available_methods(handle)
    errors = [
        ErrorItem(("methods", i), f"must be one of {supported}")
        for i, name in enumerate(methods)
        if name not in supported
    ]
    if errors:
        raise InvalidInput("unknown or unsupported method", errors)
    if not methods:
        raise InvalidInput("no methods requested", [ErrorItem(("methods",), "must not be empty")])
    return list(dict.fromkeys(methods))


def predict(handle: ModelHandle, inputs: torch.Tensor, engine: Engine) -> list[Prediction]:
    """Predictions for an input-space batch."""
    return predictions_from_outputs(handle, engine.evaluate(handle, inputs))


def explain(
    handle: ModelHandle,
    inputs: torch.Tensor,
    methods: Sequence[str] = METHODS,
    target: str | int = "predicted",
    options: ExplainOptions | None = None,
    seed: int = 0,
    engine: Engine | None = None,
) -> list[InstanceExplanation]:
    """Explain each instance of `inputs` (input space, on the device) with `methods`."""
    engine = engine or Engine(device=inputs.device)
    names = check_methods(handle, methods)
    resolved = resolve_target(handle, target)
    with engine.lock:
        outputs = engine.evaluate(handle, inputs)
        predictions = predictions_from_outputs(handle, outputs)
        targets = target_indices(predictions, resolved)
        rows = torch.arange(len(targets))
        scores = outputs[rows, torch.tensor(targets)].cpu().numpy().astype(np.float64)
        ctx = MethodContext(
            handle=handle,
            engine=engine,
            inputs=inputs,
            targets=targets,
            scores=scores,
            options=options or ExplainOptions(),
            seed=seed,
        )
        results = [
            InstanceExplanation(prediction=p, target=as_target(handle, t), score=float(s))
            for p, t, s in zip(predictions, targets, scores, strict=True)
        ]
        for name in names:
            started = time.perf_counter()
            explanations = REGISTRY[name](ctx)
            per_instance_ms = (time.perf_counter() - started) * 1000 / len(results)
            for result, explanation in zip(results, explanations, strict=True):
                explanation.timing_ms = per_instance_ms
                result.methods[name] = explanation
    return results
