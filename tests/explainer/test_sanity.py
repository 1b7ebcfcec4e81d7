"""Sanity check (Adebayo et al., 2018): maps of a trained model differ from a random model's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from explainer import explain
from models import ModelHandle
from tests.helpers import square_images


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a scripted module with every parameter redrawn at random."""
    clone = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return clone


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_randomised_weights_change_the_maps(
    known_models: dict[str, ModelHandle], method: str
) -> None:
    handle = known_models["squares"]
    assert handle.module is not None
    images = torch.from_numpy(square_images(4, seed=21)[0])
    trained = explain(handle, images, [method], target=1)
    original = handle.module
    handle.module = _randomised(original)
    try:
        random = explain(handle, images, [method], target=1)
    finally:
        handle.module = original
    for a, b in zip(trained, random, strict=True):
        rho = spearmanr(
            a.methods[method].attributions.ravel(), b.methods[method].attributions.ravel()
        )
        assert float(np.asarray(rho.statistic)) < 0.5
