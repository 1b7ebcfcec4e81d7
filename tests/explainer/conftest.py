"""Fixtures of the explainer tests: a model wrapper that counts calls and can fail them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from models import ModelHandle


class CountingModule(torch.nn.Module):
    """Wraps a module, counting calls and rows; optionally fails like a full GPU."""

    def __init__(self, inner: torch.nn.Module, fail_above: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.fail_above = fail_above
        self.calls = 0
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_above is not None and len(x) > self.fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls += 1
        self.rows += len(x)
        return self.inner(x)  # type: ignore[no-any-return]


@pytest.fixture()
def counted(known_models: dict[str, ModelHandle]) -> Iterator[Callable[..., CountingModule]]:
    """Yield a function that wraps a model's module in a CountingModule for one test."""
    originals: dict[str, torch.nn.Module] = {}

    def wrap(name: str, fail_above: int | None = None) -> CountingModule:
        handle = known_models[name]
        assert handle.module is not None
        originals[name] = handle.module
        handle.module = CountingModule(handle.module, fail_above)
        return handle.module

    yield wrap
    for name, module in originals.items():
        known_models[name].module = module
