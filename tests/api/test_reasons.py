"""Reason codes never name a protected attribute, even when it pushes toward the adverse class."""

from __future__ import annotations

from explainer import explain
from explainer.render.reasons import reason_codes
from models import ModelRepository
from models.repository import ZOO_DIR


def test_protected_attribute_is_never_a_reason() -> None:
    handle = ModelRepository(ZOO_DIR).load().get("credit-risk")
    assert handle.spec.tabular is not None and handle.spec.tabular.protected == ["age_band"]
    result = explain(handle, handle.decode([handle.spec.example]), ["shap"], target="default")[0]
    age = handle.feature_names.index("age_band")
    assert result.methods["shap"].attributions[age] > 0  # the documented 18-25 group effect
    codes = reason_codes(handle, result)
    assert codes is not None and codes["codes"]
    assert "age_band" not in [code["feature"] for code in codes["codes"]]
