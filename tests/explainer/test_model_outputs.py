"""Non-finite model outputs or gradients are a clear error, never NaN in a result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explainer import Engine, explain
from explainer.methods.tree import MIN_HELD_OUT, _split
from explainer.options import ExplainOptions
from models import ModelRepository
from models.errors import ModelOutputNotFinite
from models.handle import ModelHandle
from tests.helpers import UNSTABLE, NanAboveThree, write_unstable_model

INSTANCE = torch.tensor([[0.1, 0.2, 0.3, 0.1]])  # class 1's logit 0.7: finite


class SquareRoot(torch.nn.Module):
    """Logits [0, sum(sqrt|x|)]: finite everywhere, an infinite gradient at x = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.sqrt(x.abs()).sum(dim=1)
        return torch.stack([torch.zeros_like(total), total], dim=1)


def _handle(root: Path, module: torch.nn.Module) -> ModelHandle:
    write_unstable_model(root, module)
    return ModelRepository(root).load().get(UNSTABLE)


@pytest.mark.parametrize("method", ["shap", "lime", "tree"])
def test_nan_outputs_on_perturbations_are_refused(tmp_path: Path, method: str) -> None:
    handle = _handle(tmp_path, NanAboveThree())
    assert torch.isfinite(handle.forward(INSTANCE)).all()
    # The background, and so shap's masked rows and lime's samples, hold rows summing to
    # more than 3.
    with pytest.raises(ModelOutputNotFinite, match="NaN or infinite outputs for") as raised:
        explain(handle, INSTANCE, [method], engine=Engine("cpu", cache_entries=0))
    # The instance whose perturbed samples broke is named.
    assert [item.loc for item in raised.value.errors] == [("instances", 0)]
    assert "later instances were not tried" in raised.value.errors[0].msg


class NanWhereFirstIsHighAlone(torch.nn.Module):
    """Logits [0, sum(x)], NaN where x0 > 3.5 but x1 < 3.5. The background (standard
    normal: x0 and x1 at most 1.9) never gets there, so only an instance with a high
    x0, mixed with background values of x1, does: shap's masked rows of [4, 4, 0, 0]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.sum(dim=1)
        alone = (x[:, 0] > 3.5) & (x[:, 1] < 3.5)
        total = torch.where(alone, torch.full_like(total, float("nan")), total)
        return torch.stack([torch.zeros_like(total), total], dim=1)


def test_the_instance_whose_perturbations_broke_is_named_in_the_request(tmp_path: Path) -> None:
    handle = _handle(tmp_path, NanWhereFirstIsHighAlone())
    engine = Engine("cpu")
    calm, high = torch.zeros(1, 4), torch.tensor([[4.0, 4.0, 0.0, 0.0]])
    assert torch.isfinite(handle.forward(torch.cat([calm, high]))).all()
    explain(handle, calm, ["shap"], engine=engine)  # cached: the next request explains `high` alone
    with pytest.raises(ModelOutputNotFinite, match="NaN or infinite outputs for") as raised:
        explain(handle, torch.cat([calm, high, calm]), ["shap"], engine=engine)
    assert [item.loc for item in raised.value.errors] == [("instances", 1)]


def test_methods_whose_evaluations_stay_finite_still_run(tmp_path: Path) -> None:
    handle = _handle(tmp_path, NanAboveThree())
    # Gradients along the path from the background mean, and occlusion by that mean,
    # never leave the region where the model is finite.
    methods = ["saliency", "integrated_gradients", "occlusion"]
    result = explain(handle, INSTANCE, methods, engine=Engine("cpu", cache_entries=0))
    assert all(result[0].methods[name].is_finite() for name in methods)


def test_a_nan_prediction_is_refused_before_any_method_naming_the_instance(
    tmp_path: Path,
) -> None:
    handle = _handle(tmp_path, NanAboveThree())
    inputs = torch.cat([INSTANCE, torch.full((1, 4), 2.0)])
    with pytest.raises(ModelOutputNotFinite, match="for 1 of the 2 instances") as raised:
        explain(handle, inputs, ["saliency"], engine=Engine("cpu"))
    assert [item.loc for item in raised.value.errors] == [("instances", 1)]


def test_infinite_gradients_are_refused(tmp_path: Path) -> None:
    handle = _handle(tmp_path, SquareRoot())
    engine = Engine("cpu", cache_entries=0)
    inputs = torch.tensor([[1.0, 1.0, 4.0, 9.0], [0.0, 1.0, 4.0, 9.0]])
    with pytest.raises(ModelOutputNotFinite, match="the saliency explanation is not finite") as e:
        explain(handle, inputs, ["saliency"], engine=engine)
    assert [item.loc for item in e.value.errors] == [("instances", 1)]
    finite = explain(handle, torch.tensor([[1.0, 1.0, 4.0, 9.0]]), ["saliency"], engine=engine)
    assert finite[0].methods["saliency"].is_finite()


@pytest.mark.parametrize("fraction", [0.01, 0.02, 0.05, 0.25, 0.89])
def test_the_tree_holds_out_enough_rows_for_a_finite_fidelity(
    tmp_path: Path, fraction: float
) -> None:
    train, held = _split(50, fraction, seed=0)
    assert len(held) >= MIN_HELD_OUT and 0 in train and len(train) >= 2
    assert sorted([*train, *held]) == list(range(50))
    handle = _handle(tmp_path, SquareRoot())
    options = ExplainOptions(lime={"num_samples": 50}, tree={"holdout_fraction": fraction})
    result = explain(handle, INSTANCE, ["tree"], options=options, engine=Engine("cpu"))
    assert np.isfinite(result[0].methods["tree"].quality["fidelity_r2"])
