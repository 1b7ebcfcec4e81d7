"""Known answers: analytic attributions of a logistic model and a block-mean image model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explainer import Engine, ExplainOptions, explain
from models import ModelHandle
from tests.conftest import BLOCK, LOGISTIC_W

W = np.array(LOGISTIC_W)
X = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7]])
NONZERO = {0, 1, 4}


@pytest.fixture(scope="module")
def logistic_result(known_models: dict[str, ModelHandle]):  # type: ignore[no-untyped-def]
    return explain(known_models["logistic"], X, target=1, seed=0)[0]


def test_integrated_gradients_equal_w_times_x(logistic_result) -> None:  # type: ignore[no-untyped-def]
    ig = logistic_result.methods["integrated_gradients"]
    np.testing.assert_allclose(ig.attributions, W * X[0].numpy(), atol=1e-3)
    assert ig.quality["convergence_delta"] < 1e-4


def test_shap_equals_w_times_centred_x(logistic_result) -> None:  # type: ignore[no-untyped-def]
    shap = logistic_result.methods["shap"]
    expected = W * X[0].numpy()  # the background is centred at zero
    assert np.linalg.norm(shap.attributions - expected) / np.linalg.norm(expected) < 0.10


def test_shap_with_whole_background_is_exact(known_models: dict[str, ModelHandle]) -> None:
    handle = known_models["logistic"]
    options = ExplainOptions(shap={"background_size": 1000})
    shap = explain(handle, X, ["shap"], target=1, options=options)[0].methods["shap"]
    assert handle.background is not None
    mean = handle.background.mean(dim=0).numpy()
    np.testing.assert_allclose(shap.attributions, W * (X[0].numpy() - mean), atol=1e-5)


def test_shap_additivity_below_one_percent(logistic_result) -> None:  # type: ignore[no-untyped-def]
    shap = logistic_result.methods["shap"]
    assert shap.base_value is not None
    assert abs(shap.base_value + shap.attributions.sum() - logistic_result.score) < 1e-6
    assert shap.quality["additivity_error"] < 0.01 * abs(logistic_result.score)


def test_saliency_equals_abs_w(logistic_result) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(
        logistic_result.methods["saliency"].attributions, np.abs(W), atol=1e-6
    )


def test_lime_top_three_are_the_nonzero_weights(logistic_result) -> None:  # type: ignore[no-untyped-def]
    weights = logistic_result.methods["lime"].attributions
    top = set(np.argsort(-np.abs(weights))[:3].tolist())
    assert top == NONZERO
    for feature in NONZERO:
        assert np.sign(weights[feature]) == np.sign(W[feature] * X[0, feature].item())
    assert 0.0 < logistic_result.methods["lime"].quality["local_r2"] <= 1.0


def test_tree_names_only_the_features_the_model_uses(known_models: dict[str, ModelHandle]) -> None:
    result = explain(known_models["two-features"], X, ["tree"], target=1, seed=0)[0]
    tree = result.methods["tree"]
    assert tree.surrogate is not None
    named = {rule.split()[0] for rule in tree.surrogate.rules}
    assert named <= {"f0", "f1"} and named
    used = {node["feature"] for node in tree.surrogate.tree["nodes"] if "feature" in node}
    assert used <= {"f0", "f1"}
    assert tree.quality["fidelity_r2"] >= 0.8
    # Path contributions add up from the root mean to the leaf value.
    assert tree.base_value is not None
    assert tree.base_value + tree.attributions.sum() == pytest.approx(tree.surrogate.leaf_value)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "shap", "lime", "tree"])
def test_image_attribution_mass_inside_the_known_block(
    known_models: dict[str, ModelHandle], block_batch: torch.Tensor, method: str
) -> None:
    options = ExplainOptions(lime={"hide_color": "zero"})
    results = explain(known_models["block"], block_batch, [method], target=0, options=options)
    top, left = BLOCK
    for result in results:
        attributions = result.methods[method].attributions
        assert attributions.shape == (64, 64)
        positive = np.clip(attributions, 0.0, None)
        inside = positive[top : top + 16, left : left + 16].sum() / positive.sum()
        assert inside >= 0.8, f"{method}: {inside:.2f} of the positive mass inside the block"


def test_same_seed_same_numbers(known_models: dict[str, ModelHandle]) -> None:
    handle = known_models["logistic"]
    first = explain(handle, X, target=1, seed=7, engine=Engine("cpu"))[0]
    second = explain(handle, X, target=1, seed=7, engine=Engine("cpu"))[0]
    for name, explanation in first.methods.items():
        np.testing.assert_array_equal(explanation.attributions, second.methods[name].attributions)
        assert explanation.quality == second.methods[name].quality
    other = explain(handle, X, ["lime"], target=1, seed=8)[0].methods["lime"].attributions
    assert not np.array_equal(other, first.methods["lime"].attributions)


def test_same_seed_same_numbers_on_images(
    known_models: dict[str, ModelHandle], block_batch: torch.Tensor
) -> None:
    methods = ["shap", "lime", "tree", "smoothgrad"]
    first = explain(known_models["block"], block_batch, methods, seed=3)
    second = explain(known_models["block"], block_batch, methods, seed=3)
    for a, b in zip(first, second, strict=True):
        for name in methods:
            # Equal up to float32 rounding: a reduction over a differently aligned buffer
            # may round differently in the last bit.
            np.testing.assert_allclose(
                a.methods[name].attributions, b.methods[name].attributions, rtol=1e-6, atol=1e-9
            )


def test_quality_figures_on_every_result(known_models: dict[str, ModelHandle]) -> None:
    result = explain(known_models["logistic"], X)[0]
    expected = {
        "integrated_gradients": "convergence_delta",
        "shap": "additivity_error",
        "lime": "local_r2",
        "tree": "fidelity_r2",
    }
    for method, figure in expected.items():
        assert np.isfinite(result.methods[method].quality[figure])


def test_target_by_label_equals_target_by_index(known_models: dict[str, ModelHandle]) -> None:
    by_label = explain(known_models["logistic"], X, ["integrated_gradients"], target="yes")[0]
    by_index = explain(known_models["logistic"], X, ["integrated_gradients"], target=1)[0]
    assert by_label.target.index == 1 and by_label.target.label == "yes"
    np.testing.assert_array_equal(
        by_label.methods["integrated_gradients"].attributions,
        by_index.methods["integrated_gradients"].attributions,
    )


@pytest.mark.parametrize("method", ["smoothgrad", "occlusion"])
def test_extra_methods_on_the_logistic_model(
    known_models: dict[str, ModelHandle], method: str
) -> None:
    attributions = explain(known_models["logistic"], X, [method], target=1)[0].methods[method]
    top = set(np.argsort(-np.abs(attributions.attributions))[:3].tolist())
    assert top == NONZERO


def test_too_small_shap_budget_is_a_422_before_shap_fails(
    known_models: dict[str, ModelHandle],
) -> None:
    from models.errors import InvalidInput

    options = ExplainOptions(shap={"max_evals": 20, "algorithm": "exact"})
    with pytest.raises(InvalidInput) as error:
        explain(known_models["logistic"], X, ["shap"], options=options)
    assert error.value.errors[0].loc == ("options", "shap", "max_evals")
