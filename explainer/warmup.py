"""Prepare a loaded model for requests: tune its chunk size and pay first-call costs.

shap compiles its Partition and Permutation code on first use (seconds), and the first
forward on a device allocates; doing both at load keeps the first request fast.
"""

from __future__ import annotations

import logging

import torch

from explainer.engine import Engine
from explainer.explain import available_methods, explain
from explainer.options import METHODS, ExplainOptions
from models.handle import ModelHandle

log = logging.getLogger(__name__)

# Cheap settings: the point is to run every code path once, not to explain well.
WARM_UP_SETTINGS = {
    "integrated_gradients": {"n_steps": 4},
    "shap": {"background_size": 4},
    "lime": {"num_samples": 50},
}
WARM_UP_OPTIONS = {
    "tabular": ExplainOptions.model_validate(WARM_UP_SETTINGS),
    "image": ExplainOptions.model_validate(
        {**WARM_UP_SETTINGS, "shap": {"max_evals": 40, "blur_kernel": 4}}
    ),
}


def warm_up_input(handle: ModelHandle) -> torch.Tensor:
    """The model's example row, a background row, or a grey image."""
    if handle.spec.example is not None:
        return handle.decode([handle.spec.example])
    if handle.background is not None:
        return handle.background[:1].clone()
    return torch.full((1, *handle.input_shape), 0.5, device=handle.device)


def prepare(engine: Engine, handle: ModelHandle, tune: bool, warm_up: bool) -> None:
    """Tune the chunk size (when asked) and run one cheap explanation of every method."""
    if tune:
        engine.tune(handle)
    if warm_up:
        methods = [m for m in METHODS if m in available_methods(handle)]
        options = WARM_UP_OPTIONS[handle.spec.modality]
        # Past the explanation cache: warm-up neither fills it nor counts in its hits and misses.
        explain(
            handle, warm_up_input(handle), methods, options=options, engine=engine, use_cache=False
        )
        log.info("warmed up %s", handle.name)
