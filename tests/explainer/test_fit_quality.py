"""LIME's `local_r2` and the tree's `fidelity_r2` where the scores differ by rounding only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from explainer import Engine, explain
from explainer.methods.fit_quality import lime_r2, surrogate_r2
from models import ModelRepository
from tests.conftest import centred_background
from tests.helpers import binary_tabular_spec, write_torchscript_model

RNG = np.random.default_rng(0)
WEIGHTS = RNG.random(500)
# A saturated probability: 1.0 and the float32 values just below it.
ROUNDED = 1.0 - RNG.integers(0, 3, 500) * np.float64(np.finfo(np.float32).epsneg)


def test_scores_that_differ_by_rounding_only_are_fitted_perfectly_by_their_mean() -> None:
    assert r2_score(ROUNDED, np.full(500, 1.0), sample_weight=WEIGHTS) < -0.5  # noise
    assert surrogate_r2(ROUNDED, np.full(500, 1.0), WEIGHTS) == 1.0
    assert surrogate_r2(ROUNDED, np.full(500, 0.5), WEIGHTS) == 0.0  # a poor fit is still poor
    assert lime_r2(-3.0, ROUNDED, WEIGHTS) == 1.0


def test_scores_that_vary_keep_scikit_learn_and_lime_figures() -> None:
    scores = RNG.normal(size=500)
    predicted = scores + RNG.normal(scale=0.5, size=500)
    assert surrogate_r2(scores, predicted, WEIGHTS) == pytest.approx(
        r2_score(scores, predicted, sample_weight=WEIGHTS)
    )
    assert lime_r2(0.42, scores, WEIGHTS) == 0.42
    tiny = 1e-7 * scores  # small, but varying: not rounding
    assert surrogate_r2(tiny, np.zeros(500), WEIGHTS) == pytest.approx(
        r2_score(tiny, np.zeros(500), sample_weight=WEIGHTS)
    )


class Saturated(torch.nn.Module):
    """P(yes) = sigmoid(bias + a + b / 2): at bias 16, within a few float32 steps of 1
    around the instance; at bias 30, exactly 1.0."""

    def __init__(self, bias: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, 0.5, 0.0, 0.0]))
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.bias + x @ self.w)
        return torch.stack([1 - p, p], dim=1)


@pytest.mark.parametrize("bias", [16.0, 30.0], ids=["float32-steps", "exactly-one"])
def test_a_saturated_prediction_has_faithful_local_fits(tmp_path: Path, bias: float) -> None:
    """At bias 16 lime's R² was 0.09 and the tree's -0.003 (the poor-fit badges)."""
    spec = binary_tabular_spec("saturated", ["a", "b", "c", "d"], output="probabilities")
    background = centred_background(200, 4)
    write_torchscript_model(tmp_path / "saturated", Saturated(bias), spec, background)
    handle = ModelRepository(tmp_path).load("cpu").handles["saturated"]
    row = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    result = explain(handle, row, ["lime", "tree"], target=1, engine=Engine())[0]
    assert result.methods["lime"].quality["local_r2"] == 1.0
    assert result.methods["tree"].quality["fidelity_r2"] == 1.0
