"""`explain()` and `predict()`: the library's entry points (no Flask here).

A request's batch goes through one shared prediction forward pass, then each requested
method in turn; methods that perturb share one neighbourhood per instance (LIME, tree).
Every row's result depends only on that row, the target, the options and the seed (never
on the rest of the batch), so finished explanations are cached per row and method.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from explainer.cache import LruCache, array_digest
from explainer.context import MethodContext
from explainer.engine import Engine
from explainer.methods import REGISTRY
from explainer.methods.gradients import smoothgrad_available
from explainer.methods.shap_values import check_options as check_shap_options
from explainer.options import METHODS, ExplainOptions
from explainer.result import Explanation, InstanceExplanation, Prediction
from explainer.targets import (
    as_target,
    predictions_from_outputs,
    resolve_target,
    target_indices,
)
from models.errors import ErrorItem, InvalidInput, ModelOutputNotFinite
from models.handle import ModelHandle


def supports_layer_hooks(handle: ModelHandle) -> bool:
    """Grad-CAM needs an eager image model (safetensors): scripted and exported ones hide layers."""
    return handle.is_image and handle.exposes_layers


# Background rows lime's tabular discretiser needs: from one row its quartiles are all that
# row's values, the neighbourhood holds two points, and LIME shares its weight among the
# features that differ, with a good-looking R² (0.94 for weights on two features a linear
# model ignores).
LIME_MIN_BACKGROUND = 2


def available_methods(handle: ModelHandle) -> list[str]:
    """The methods this model supports (perturbation methods on tabular need a background,
    LIME and the tree at least LIME_MIN_BACKGROUND rows of it; SmoothGrad a background or
    declared ranges, to scale its noise per feature)."""
    names = [m for m in REGISTRY if m != "gradcam" or supports_layer_hooks(handle)]
    if not handle.is_image:
        rows = 0 if handle.background is None else len(handle.background)
        if rows == 0:
            names = [m for m in names if m != "shap"]
        if rows < LIME_MIN_BACKGROUND:
            names = [m for m in names if m not in ("lime", "tree")]
    if not smoothgrad_available(handle):
        names = [m for m in names if m != "smoothgrad"]
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


SEED_LIMIT = 2**32  # numpy's, and so shap's and lime's, seeds lie in [0, 2**32)


def check_seed(seed: int) -> None:
    """A seed every method can take: an integer in [0, 2**32), else a 422 at `seed`."""
    integer = isinstance(seed, int | np.integer) and not isinstance(seed, bool)
    if not integer or not 0 <= seed < SEED_LIMIT:
        raise InvalidInput(
            f"the seed must be an integer from 0 to {SEED_LIMIT - 1}",
            [ErrorItem(("seed",), f"must be an integer from 0 to {SEED_LIMIT - 1}")],
        )


def predict(handle: ModelHandle, inputs: torch.Tensor, engine: Engine) -> list[Prediction]:
    """Predictions for an input-space batch."""
    return predictions_from_outputs(handle, engine.evaluate(handle, inputs, instances=True))


def explain(
    handle: ModelHandle,
    inputs: torch.Tensor,
    methods: Sequence[str] = METHODS,
    target: str | int = "predicted",
    options: ExplainOptions | None = None,
    seed: int = 0,
    engine: Engine | None = None,
    use_cache: bool = True,
) -> list[InstanceExplanation]:
    """Explain each instance of `inputs` (input space, on the device) with `methods`.

    `use_cache=False` neither reads nor fills the engine's explanation cache (batch audits,
    whose rows are seldom asked for again, should not push out interactive entries).
    """
    engine = engine or Engine(device=inputs.device, cache_entries=0)
    names = check_methods(handle, methods)
    check_seed(seed)
    resolved = resolve_target(handle, target)
    options = options or ExplainOptions()
    if "shap" in names:
        check_shap_options(handle, options.shap)
    with engine.lock:
        digests = _row_digests(inputs)
        outputs = _model_outputs(engine, handle, inputs, digests, use_cache)
        predictions = predictions_from_outputs(handle, outputs)
        targets = target_indices(predictions, resolved)
        rows = torch.arange(len(targets))
        scores = outputs[rows, torch.tensor(targets)].cpu().numpy().astype(np.float64)
        results = [
            InstanceExplanation(prediction=p, target=as_target(handle, t), score=float(s))
            for p, t, s in zip(predictions, targets, scores, strict=True)
        ]
        keys = [
            {name: _cache_key(handle, digest, name, options, seed, t) for name in names}
            for digest, t in zip(digests, targets, strict=True)
        ]
        for result, row_keys in zip(results, keys, strict=True):
            result.methods.update(_cached_row(engine.explanations, row_keys) if use_cache else {})
        # Rows with any method missing from the cache are explained afresh, together.
        missing = [i for i, result in enumerate(results) if not result.methods]
        if missing:
            ctx = MethodContext(
                handle=handle,
                engine=engine,
                inputs=inputs[missing],
                targets=[targets[i] for i in missing],
                scores=scores[missing],
                options=options,
                seed=seed,
            )
            for name in names:
                for index, explanation in zip(missing, _timed(name, ctx, missing), strict=True):
                    results[index].methods[name] = explanation
                    if use_cache:
                        _store(engine.explanations, keys[index][name], explanation)
    return results


def _model_outputs(
    engine: Engine, handle: ModelHandle, inputs: torch.Tensor, digests: list[str], use_cache: bool
) -> torch.Tensor:
    """The model's outputs for the instances: from `engine.outputs` when it holds every row's
    (a repeated request makes no model call), else one evaluation, kept per row."""
    keys = [(handle.fingerprint, digest) for digest in digests]
    if use_cache:
        kept = [engine.outputs.get(key, count=False) for key in keys]
        if all(row is not None for row in kept):
            return torch.stack([row for row in kept if row is not None])
    outputs = engine.evaluate(handle, inputs, instances=True)
    if use_cache and engine.outputs.max_entries:
        for key, row in zip(keys, outputs, strict=True):
            engine.outputs.put(key, row.clone())
    return outputs


def _cached_row(
    cache: LruCache[Hashable, Any], row_keys: dict[str, Hashable]
) -> dict[str, Explanation]:
    """Copies of every method's cached explanation of a row, marked `cached`, counted as
    hits (copies: see `_store`); none when one is missing, as the row is then explained
    afresh: all misses.
    """
    found = [cache.get(key, count=False) for key in row_keys.values()]
    hits = [hit for hit in found if hit is not None]
    if len(hits) < len(found):
        cache.record(misses=len(found))
        return {}
    cache.record(hits=len(hits))
    return {
        name: dataclasses.replace(hit.copy(), cached=True)
        for name, hit in zip(row_keys, hits, strict=True)
    }


def _store(cache: LruCache[Hashable, Any], key: Hashable, explanation: Explanation) -> None:
    """Keep a copy of `explanation`, so that a caller changing it in place changes no later
    answer (no copy when the cache keeps no entries)."""
    if cache.max_entries:
        cache.put(key, explanation.copy())


def _timed(name: str, ctx: MethodContext, instances: Sequence[int]) -> list[Explanation]:
    """Run one method on the context (whose rows are the request's `instances`); each result
    gets its share of the time.

    Raises `ModelOutputNotFinite`, naming the instances, for results with a NaN or infinite
    number in them, and names the request's instance in one raised by the method.
    """
    started = time.perf_counter()
    try:
        explanations = REGISTRY[name](ctx)
    except ModelOutputNotFinite as error:  # instances as the context numbers them
        items = [e.about_instance(lambda k: ("instances", instances[k])) for e in error.errors]
        raise ModelOutputNotFinite(error.detail, items) from None
    bad = [i for i, e in zip(instances, explanations, strict=True) if not e.is_finite()]
    if bad:
        raise ModelOutputNotFinite(
            f"the {name} explanation is not finite: the model's outputs or gradients are NaN"
            " or infinite for this input",
            [ErrorItem(("instances", i), f"the {name} explanation is not finite") for i in bad],
        )
    per_instance_ms = (time.perf_counter() - started) * 1000 / len(explanations)
    for explanation in explanations:
        explanation.timing_ms = per_instance_ms
    return explanations


def _row_digests(inputs: torch.Tensor) -> list[str]:
    array = inputs.detach().cpu().numpy()
    return [array_digest(row) for row in array]


def _cache_key(
    handle: ModelHandle, digest: str, method: str, options: ExplainOptions, seed: int, target: int
) -> Hashable:
    return (handle.fingerprint, digest, method, options.used_by(method), seed, target)
