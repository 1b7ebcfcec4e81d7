"""captum's per-call costs we remove give captum's numbers bit for bit."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
import torch
from captum._utils.gradient import compute_gradients
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from captum.attr._utils import approximation_methods

from explainer.methods.captum_speedups import (
    gauss_legendre_as_shipped,
    one_seed_gradients,
    recall_gauss_legendre,
    with_one_seed_gradients,
)
from models import ModelHandle
from tests.helpers import square_images


def _captums_own_approximation_methods() -> ModuleType:
    """A fresh copy of captum's module, untouched by `recall_gauss_legendre`."""
    spec = importlib.util.find_spec(approximation_methods.__name__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mlp() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 32),
        torch.nn.GELU(),
        torch.nn.Linear(32, 3),
    ).eval()


@pytest.mark.parametrize("n_steps", [1, 2, 7, 50, 300])
def test_recalled_gauss_legendre_nodes_equal_captums(n_steps: int) -> None:
    own = _captums_own_approximation_methods()
    recall_gauss_legendre()
    step_sizes, alphas = approximation_methods.approximation_parameters("gausslegendre")
    own_step_sizes, own_alphas = own.approximation_parameters("gausslegendre")
    assert step_sizes(n_steps) == own_step_sizes(n_steps)
    assert alphas(n_steps) == own_alphas(n_steps)
    # A caller may change the list it gets; the next call is not affected.
    step_sizes(n_steps).append(99.0)
    assert step_sizes(n_steps) == own_step_sizes(n_steps)


def test_one_seed_gradients_equal_captums_bit_for_bit() -> None:
    model = _mlp()
    inputs = (torch.randn(40, 6, generator=torch.Generator().manual_seed(1)).requires_grad_(),)
    targets = torch.tensor([i % 3 for i in range(40)])
    ours = one_seed_gradients(model, inputs, targets)
    captums = compute_gradients(model, inputs, targets)
    assert torch.equal(ours[0], captums[0])


def test_one_seed_gradients_need_a_target_for_several_outputs() -> None:
    inputs = (torch.randn(4, 6).requires_grad_(),)
    with pytest.raises(AssertionError, match="Target not provided"):
        one_seed_gradients(_mlp(), inputs)


def test_gradient_methods_with_one_seed_equal_captums(known_models: dict[str, ModelHandle]) -> None:
    images = torch.from_numpy(square_images(3, seed=2)[0])
    forward = known_models["squares"].forward
    targets = torch.tensor([0, 1, 1])
    baselines = torch.zeros_like(images)

    integrated = [
        IntegratedGradients(forward),
        with_one_seed_gradients(IntegratedGradients(forward)),
    ]
    plain, ours = (
        method.attribute(images, baselines, targets, n_steps=20, internal_batch_size=16)
        for method in integrated
    )
    assert torch.equal(ours, plain)

    saliency = [Saliency(forward), with_one_seed_gradients(Saliency(forward))]
    plain, ours = (
        method.attribute(images.clone().requires_grad_(), targets) for method in saliency
    )
    assert torch.equal(ours, plain)

    smoothed = []
    for method in saliency:
        torch.manual_seed(0)
        smoothed.append(
            NoiseTunnel(method).attribute(
                images, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, target=targets
            )
        )
    assert torch.equal(smoothed[1], smoothed[0])


def test_the_shipped_builder_is_back_for_the_duration_only() -> None:
    recall_gauss_legendre()
    recalled = approximation_methods.gauss_legendre_builders
    own = _captums_own_approximation_methods().gauss_legendre_builders
    with gauss_legendre_as_shipped():
        shipped = approximation_methods.gauss_legendre_builders
        assert shipped is not recalled
        assert shipped.__code__.co_code == own.__code__.co_code
    assert approximation_methods.gauss_legendre_builders is recalled
