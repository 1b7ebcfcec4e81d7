"""Reason codes: never a protected attribute, even when it pushes toward the adverse class;
read toward the adverse class only where the target's attributions can be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from explainer import explain
from explainer.render.reasons import reason_codes
from models import ModelRepository
from models.repository import ZOO_DIR
from tests.helpers import write_torchscript_model


def test_protected_attribute_is_never_a_reason() -> None:
    handle = ModelRepository(ZOO_DIR).load().get("credit-risk")
    assert handle.spec.tabular is not None and handle.spec.tabular.protected == ["age_band"]
    result = explain(handle, handle.decode([handle.spec.example]), ["shap"], target="default")[0]
    age = handle.feature_names.index("age_band")
    assert result.methods["shap"].attributions[age] > 0  # the documented 18-25 group effect
    codes = reason_codes(handle, result)
    assert codes is not None and codes["codes"]
    assert "age_band" not in [code["feature"] for code in codes["codes"]]


class SoftmaxOfTwoLogits(torch.nn.Module):
    """Probabilities of two free logits: z0 = x1 - x2, z1 = 2 x0 + x3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([x[:, 1] - x[:, 2], 2 * x[:, 0] + x[:, 3]], dim=1)
        return torch.softmax(logits, dim=1)


def test_logit_models_give_no_reason_codes_toward_the_other_class() -> None:
    # Two free logits: minus the other class's attributions are not the push toward "default".
    handle = ModelRepository(ZOO_DIR).load().get("credit-risk")
    assert handle.spec.output == "logits"
    instance = handle.decode([handle.spec.example])
    toward_default = explain(handle, instance, ["shap"], target="default")[0]
    toward_repaid = explain(handle, instance, ["shap"], target="repaid")[0]
    assert reason_codes(handle, toward_default) is not None
    assert reason_codes(handle, toward_repaid) is None


def test_probability_models_read_the_other_class_sign_flipped(tmp_path: Path) -> None:
    features = ["a", "b", "c", "d"]
    spec = {
        "name": "two-probabilities",
        "modality": "tabular",
        "classes": ["repaid", "default"],
        "output": "probabilities",
        "tabular": {"features": features, "adverse_class": 1, "reasons": {"a": "A too high"}},
    }
    background = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    write_torchscript_model(tmp_path / "two", SoftmaxOfTwoLogits(), spec, background)
    handle = ModelRepository(tmp_path).load().get("two-probabilities")
    instance = torch.tensor([[1.5, -0.5, 0.5, 0.2]])
    codes = {
        target: reason_codes(handle, explain(handle, instance, ["shap"], target=target)[0])
        for target in ("default", "repaid")
    }
    assert codes["default"] is not None and codes["repaid"] is not None
    assert codes["default"]["codes"][0]["reason"] == "A too high"
    assert [c["feature"] for c in codes["repaid"]["codes"]] == [
        c["feature"] for c in codes["default"]["codes"]
    ]
    np.testing.assert_allclose(
        [c["contribution"] for c in codes["repaid"]["codes"]],
        [c["contribution"] for c in codes["default"]["codes"]],
        rtol=1e-5,
    )
