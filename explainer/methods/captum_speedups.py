"""Two of captum's per-call costs, removed without changing a number.

- Gauss-Legendre nodes: integrated gradients asks numpy for them twice per call
  (`np.polynomial.legendre.leggauss(n)`, about 0.6 ms each for 50 steps, once for the step
  sizes and once for the alphas). They depend only on `n`, so `recall_gauss_legendre()`
  has captum's builder keep them (fresh lists on every call, as captum returns them).
- Gradients: captum's `compute_gradients` differentiates `torch.unbind(outputs)`, and
  autograd then makes a tensor of ones for every output scalar (instances x steps of them
  for integrated gradients: 800 for 16 rows). `one_seed_gradients` hands autograd one
  tensor of ones for the whole batch instead: the same backward pass, the same gradients
  bit for bit. `with_one_seed_gradients` sets it on a captum method (its `gradient_func`,
  which captum's gradient methods call for every gradient they take).

The benchmarks time captum as shipped for their naive runs (`gauss_legendre_as_shipped`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch
from captum._utils.gradient import _run_forward
from captum._utils.typing import TargetType
from captum.attr import GradientAttribution
from captum.attr._utils import approximation_methods

Method = TypeVar("Method", bound=GradientAttribution)

_SHIPPED_GAUSS_LEGENDRE = approximation_methods.gauss_legendre_builders


@functools.lru_cache(maxsize=32)
def _gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """captum's step sizes and alphas for `n` steps: its own scaling of numpy's nodes."""
    assert n > 0, "The number of steps has to be larger than zero"
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return tuple((0.5 * weights).tolist()), tuple((0.5 * (1 + nodes)).tolist())


def _recalled_builders() -> tuple[Callable[[int], list[float]], Callable[[int], list[float]]]:
    def step_sizes(n: int) -> list[float]:
        return list(_gauss_legendre(n)[0])

    def alphas(n: int) -> list[float]:
        return list(_gauss_legendre(n)[1])

    return step_sizes, alphas


def recall_gauss_legendre() -> None:
    """Make captum's Gauss-Legendre builder (integrated gradients' default) recall its nodes.

    Process-wide and idempotent; every captum method that integrates with Gauss-Legendre
    gets the same numbers as before, without numpy's eigenvalue solve on every call.
    """
    approximation_methods.gauss_legendre_builders = _recalled_builders


@contextlib.contextmanager
def gauss_legendre_as_shipped() -> Iterator[None]:
    """captum's own Gauss-Legendre builder for the duration, then whichever was in place."""
    in_place = approximation_methods.gauss_legendre_builders
    approximation_methods.gauss_legendre_builders = _SHIPPED_GAUSS_LEGENDRE
    try:
        yield
    finally:
        approximation_methods.gauss_legendre_builders = in_place


def one_seed_gradients(
    forward_fn: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    target_ind: TargetType = None,
    additional_forward_args: object | None = None,
) -> tuple[torch.Tensor, ...]:
    """captum's `compute_gradients` with one backward seed for the batch (see module doc)."""
    with torch.autograd.set_grad_enabled(True):
        outputs = _run_forward(forward_fn, inputs, target_ind, additional_forward_args)
        assert isinstance(outputs, torch.Tensor)
        assert outputs[0].numel() == 1, (
            "Target not provided when necessary, cannot take gradient with respect to"
            " multiple outputs."
        )
        return torch.autograd.grad(outputs, inputs, grad_outputs=torch.ones_like(outputs))


def with_one_seed_gradients(method: Method) -> Method:
    """`method` (a captum gradient method), taking its gradients with `one_seed_gradients`."""
    method.gradient_func = one_seed_gradients
    return method
