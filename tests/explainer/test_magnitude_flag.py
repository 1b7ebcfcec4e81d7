"""`magnitude` marks attributions that are absolute values: it follows the method's option,
not the values' signs (signed gradients that happen to be all positive keep their colours)."""

from __future__ import annotations

from explainer import Engine, ExplainOptions, explain
from explainer.render.document import method_document
from models import ModelHandle


def _documents(handle: ModelHandle, options: ExplainOptions) -> dict[str, dict[str, object]]:
    instance = handle.background[:1].clone()
    result = explain(
        handle, instance, ["saliency", "smoothgrad", "shap"], options=options, engine=Engine("cpu")
    )[0]
    return {name: method_document(name, exp) for name, exp in result.methods.items()}


def test_saliency_with_abs_and_smoothgrad_are_magnitudes(
    known_models: dict[str, ModelHandle],
) -> None:
    documents = _documents(known_models["logistic"], ExplainOptions())
    assert documents["saliency"]["magnitude"] is True
    assert documents["smoothgrad"]["magnitude"] is True
    assert "magnitude" not in documents["shap"]


def test_signed_saliency_is_not_a_magnitude_even_when_all_positive(
    known_models: dict[str, ModelHandle],
) -> None:
    """Class 0's logit is constant: its signed gradients are all 0, yet keep their sign."""
    handle = known_models["logistic"]
    options = ExplainOptions(saliency={"abs": False})
    saliency = explain(
        handle, handle.background[:1].clone(), ["saliency"], target=0, options=options
    )[0].methods["saliency"]
    assert (saliency.attributions >= 0).all()
    assert "magnitude" not in method_document("saliency", saliency)
