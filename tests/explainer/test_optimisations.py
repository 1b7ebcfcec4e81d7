"""The optimisations do not change the numbers: chunking, caching, shared neighbourhoods,
frozen copies of image models (equal up to float32 rounding in the model's outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explainer import METHODS, Engine, explain
from models import ModelHandle

X = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7], [-0.3, 0.1, 2.0, -1.0, 0.4, 0.0]])


def _compare(first, second, atol: float) -> None:  # type: ignore[no-untyped-def]
    for a, b in zip(first, second, strict=True):
        assert a.methods.keys() == b.methods.keys()
        for name, explanation in a.methods.items():
            np.testing.assert_allclose(
                explanation.attributions, b.methods[name].attributions, rtol=1e-5, atol=atol
            )


@pytest.mark.parametrize("name", ["logistic", "block", "squares"])
def test_same_seed_same_numbers_with_and_without_optimisations(
    known_models: dict[str, ModelHandle], block_batch: torch.Tensor, name: str
) -> None:
    handle = known_models[name]
    inputs = X if name == "logistic" else block_batch[:1]
    # Unoptimised: tiny chunks (many model calls), no cache, the model itself (no frozen
    # copy), one method per call so that nothing is shared between methods.
    plain_engine = Engine("cpu", chunk_size=7, cache_entries=0, inference_copies=False)
    plain = [explain(handle, inputs, [m], seed=4, engine=plain_engine) for m in METHODS]
    merged = plain[0]
    for per_method in plain[1:]:
        for row, other in zip(merged, per_method, strict=True):
            row.methods.update(other.methods)
    # Optimised: tuned chunk, explanation cache, all methods together, asked twice.
    fast_engine = Engine("cpu")
    fast_engine.tune(handle)
    explain(handle, inputs, METHODS, seed=4, engine=fast_engine)
    cached = explain(handle, inputs, METHODS, seed=4, engine=fast_engine)
    assert all(e.cached for row in cached for e in row.methods.values())
    _compare(merged, cached, atol=1e-7)
