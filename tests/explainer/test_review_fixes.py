"""Known answers for explanation fixes: SHAP budgets, baselines without a background or on
categorical features, exact tree thresholds, SmoothGrad's scale and the seed's range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shap
import torch

from api.config import ApiConfig
from api.limits import Limits, check_limits, model_limits
from explainer import Engine, ExplainOptions, explain
from explainer.baselines import make_baseline
from explainer.explain import available_methods
from explainer.methods.shap_values import evaluation_budget
from explainer.methods.tree import threshold_text
from explainer.options import ShapOptions
from models import ModelHandle, ModelRepository
from models.errors import InvalidInput, LimitExceeded
from tests.conftest import LOGISTIC_W, centred_background
from tests.explainer.conftest import CountingModule
from tests.helpers import LogisticModel, write_torchscript_model

W = np.array(LOGISTIC_W)
X = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7]])
FEATURES = [f"f{i}" for i in range(6)]
RANGES = {
    "f0": {"min": -2.0, "max": 2.0},
    "f1": {"min": 0.0, "max": 10.0},
    "f2": {"min": -1.0, "max": 1.0},
    "f3": {"min": 0.0, "max": 0.5},
    "f4": {"min": -4.0, "max": 0.0},
    "f5": {"min": 1.0, "max": 3.0},
}
# f2 is categorical with 4 categories (codes 0..3); the others keep their declared ranges.
CATEGORIES = ["a", "b", "c", "d"]


def _model(
    root: Path,
    name: str,
    background: np.ndarray | None = None,
    features: int = 6,
    default_baseline: str = "zeros",
    **tabular: Any,
) -> ModelHandle:
    weights = LOGISTIC_W if features == 6 else [1.0] * features
    spec = {
        "name": name,
        "default_baseline": default_baseline,
        "modality": "tabular",
        "classes": ["no", "yes"],
        "output": "logits",
        "tabular": {"features": [f"f{i}" for i in range(features)], **tabular},
    }
    write_torchscript_model(root / name, LogisticModel(weights, 0.3), spec, background)
    repo = ModelRepository(root).load("cpu", only=[name])
    assert not repo.errors, repo.errors
    return repo.get(name)


def _refused_at(call: Any) -> list[tuple[str | int, ...]]:
    with pytest.raises(InvalidInput) as raised:
        call()
    return [item.loc for item in raised.value.errors]


# ---- 1. exact SHAP: 2**F evaluations, refused above the hard limit --------------------------


@pytest.mark.parametrize("max_evals", [None, 20000])
def test_exact_shap_beyond_the_hard_limit_is_refused_at_the_algorithm(
    tmp_path: Path, max_evals: int | None
) -> None:
    handle = _model(tmp_path, "wide", centred_background(50, 15), features=15)
    assert handle.module is not None
    handle.module = counting = CountingModule(handle.module)
    options = ExplainOptions(shap={"algorithm": "exact", "max_evals": max_evals})
    methods = ["saliency", "shap"]
    with pytest.raises(InvalidInput) as raised:
        explain(handle, torch.ones(1, 15), methods, options=options, engine=Engine())
    assert [item.loc for item in raised.value.errors] == [("options", "shap", "algorithm")]
    assert "permutation" in raised.value.errors[0].msg
    assert counting.calls == 0  # refused before any model call


def test_exact_shap_budget_is_2_to_the_f() -> None:
    assert evaluation_budget(ShapOptions(algorithm="exact"), 14) == 2**14
    assert evaluation_budget(ShapOptions(algorithm="exact", max_evals=20000), 14) == 2**14
    assert evaluation_budget(ShapOptions(), 10) == 2**10  # auto: exact up to 10 features
    assert evaluation_budget(ShapOptions(), 30) == 500  # auto: permutation
    assert evaluation_budget(ShapOptions(algorithm="permutation"), 300) == 601
    assert evaluation_budget(ShapOptions(), None) == 500  # images
    assert evaluation_budget(ShapOptions(algorithm="gradient"), 30) == 200


def _limits(features: int | None, max_num_samples: int = 5000) -> Limits:
    return Limits(
        max_instances=16,
        max_n_steps=256,
        max_num_samples=max_num_samples,
        max_depth=6,
        features=features,
    )


@pytest.mark.parametrize(
    ("features", "limit", "shap_options", "locs"),
    [
        (13, 5000, {"algorithm": "exact"}, [("options", "shap", "algorithm")]),
        (30, 5000, {"algorithm": "exact", "max_evals": 5000}, [("options", "shap", "algorithm")]),
        (10, 500, {}, [("options", "shap", "algorithm")]),  # auto is exact at 10 features
        (30, 300, {}, [("options", "shap", "max_evals")]),  # the default 500
        (None, 300, {}, [("options", "shap", "max_evals")]),  # images' default 500
        (30, 5000, {"max_evals": 6000}, [("options", "shap", "max_evals")]),
        (12, 5000, {"algorithm": "exact"}, []),
        (30, 5000, {}, []),
        (None, 5000, {"algorithm": "gradient"}, []),
    ],
)
def test_service_limits_check_the_shap_budget_actually_used(
    features: int | None, limit: int, shap_options: dict[str, Any], locs: list[tuple[str, ...]]
) -> None:
    options = ExplainOptions(shap=shap_options, lime={"num_samples": 100})
    check_limits(_limits(features, limit), 1, options, ["saliency", "lime"])  # no shap
    if not locs:
        check_limits(_limits(features, limit), 1, options, ["shap"])
        return
    with pytest.raises(LimitExceeded) as raised:
        check_limits(_limits(features, limit), 1, options, ["shap"])
    assert [item.loc for item in raised.value.errors] == locs


def test_only_the_requested_methods_options_are_held_to_the_limits() -> None:
    """A model with `max_num_samples = 300` serves saliency (SHAP's default 500 evaluations
    and LIME's 1000 samples are not used); the tree uses LIME's samples."""
    limits = _limits(30, 300)
    check_limits(limits, 1, ExplainOptions(), ["saliency", "integrated_gradients"])
    with pytest.raises(LimitExceeded) as raised:
        check_limits(limits, 1, ExplainOptions(), ["tree"])
    assert [item.loc for item in raised.value.errors] == [("options", "lime", "num_samples")]


def test_model_limits_know_the_feature_count_but_do_not_show_it(
    known_models: dict[str, ModelHandle],
) -> None:
    limits = model_limits(ApiConfig(), known_models["logistic"])
    assert limits.features == 6
    assert set(limits.as_dict()) == {"max_instances", "max_n_steps", "max_num_samples", "max_depth"}
    assert model_limits(ApiConfig(), known_models["block"]).features is None


# ---- 2. the uniform baseline never comes from the request's rows ----------------------------


def test_uniform_baseline_without_background_or_ranges_is_refused(tmp_path: Path) -> None:
    handle = _model(tmp_path, "bare")
    options = ExplainOptions(integrated_gradients={"baseline": "uniform"})
    locs = _refused_at(
        lambda: explain(handle, X, ["integrated_gradients"], options=options, engine=Engine())
    )
    assert locs == [("options", "integrated_gradients", "baseline")]


def test_uniform_baseline_without_background_draws_in_the_declared_ranges(tmp_path: Path) -> None:
    handle = _model(tmp_path, "ranged", ranges=RANGES)
    options = ExplainOptions(integrated_gradients={"baseline": "uniform", "n_steps": 64})
    rows = torch.cat([X, X * 2, -X])
    alone = explain(handle, X, ["integrated_gradients"], 1, options, 7, Engine())[0]
    batch = explain(handle, rows, ["integrated_gradients"], 1, options, 7, Engine())[0]
    noise = torch.rand(6, generator=torch.Generator().manual_seed(7)).numpy()
    low = np.array([r["min"] for r in RANGES.values()])
    high = np.array([r["max"] for r in RANGES.values()])
    baseline = (low + noise * (high - low)).astype(np.float32)
    expected = W * (X[0].numpy() - baseline)  # IG of a linear logit
    for result in (alone, batch):
        attributions = result.methods["integrated_gradients"].attributions
        np.testing.assert_allclose(attributions, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(expected).sum() > 0.1


# ---- 3. tree rules print the threshold the tree compares with -------------------------------


def splits_alike(printed: float, threshold: float) -> bool:
    """Every float32 input (what the tree compares) near either value goes the same way."""
    near = [np.float32(printed), np.float32(threshold)]
    inputs = [np.nextafter(x, np.float32(d)) for x in near for d in (-np.inf, np.inf)] + near
    return all((float(x) <= printed) == (float(x) <= threshold) for x in inputs)


def test_thresholds_print_in_the_fewest_digits_that_split_inputs_alike() -> None:
    """4 significant digits printed 71223.676 as 71220: inputs in between contradicted the
    rule. The text now splits float32 inputs as the threshold does, in the fewest digits."""
    rng = np.random.default_rng(0)
    thresholds = [71223.67578125, 0.35445310175418854, 0.5, -3.25, 1e-7]
    thresholds += list(rng.normal(0, 1e3, 500)) + list(rng.normal(0, 1e-3, 500))
    for threshold in thresholds:
        text = threshold_text(float(threshold))
        assert splits_alike(float(text), threshold), (threshold, text)
    assert threshold_text(71223.67578125) == "71223.676"  # 71223.68 would take 71223.6797
    assert not splits_alike(71223.68, 71223.67578125)
    assert threshold_text(0.35445310175418854) == "0.3544531"
    assert threshold_text(0.5) == "0.5"


def test_tree_rules_print_exact_thresholds(known_models: dict[str, ModelHandle]) -> None:
    handle = known_models["logistic"]
    found = 0
    for seed in range(3):
        result = explain(handle, X, ["tree"], target=1, seed=seed, engine=Engine())[0]
        surrogate = result.methods["tree"].surrogate
        assert surrogate is not None
        nodes = {node["id"]: node for node in surrogate.tree["nodes"]}
        for rule, node in zip(surrogate.rules, surrogate.tree["path"][:-1], strict=True):
            name, op, value = rule.split()[:3]
            assert name == nodes[node]["feature"] and op in ("<=", ">")
            assert splits_alike(float(value), nodes[node]["threshold"])
            assert value == nodes[node]["threshold_text"]  # the viewer writes nodes alike
            found += 1
    assert found >= 3


# ---- 4. shap's gradient explainer takes max_evals as its samples ----------------------------


def test_gradient_shap_uses_max_evals_as_nsamples(
    known_models: dict[str, ModelHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    original = shap.GradientExplainer.shap_values

    def spy(self: Any, X: Any, nsamples: int = 200, **kwargs: Any) -> Any:
        seen.append(nsamples)
        return original(self, X, nsamples=nsamples, **kwargs)

    monkeypatch.setattr(shap.GradientExplainer, "shap_values", spy)
    handle = known_models["logistic"]
    for max_evals in (None, 37, 900):
        options = ExplainOptions(shap={"algorithm": "gradient", "max_evals": max_evals})
        explain(handle, X, ["shap"], target=1, options=options, engine=Engine())
    assert seen == [200, 37, 900]


# ---- 5. SmoothGrad's noise without a background ---------------------------------------------


class _Recording(LogisticModel):
    def __init__(self) -> None:
        super().__init__(LOGISTIC_W, 0.3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return super().forward(x)


def test_smoothgrad_without_background_noises_on_a_quarter_of_the_declared_range(
    tmp_path: Path,
) -> None:
    handle = _model(tmp_path, "ranged", ranges=RANGES)
    recorder = _Recording()
    handle.module = recorder
    options = ExplainOptions(smoothgrad={"nt_samples": 256, "stdev": 0.2})
    result = explain(handle, X, ["smoothgrad"], 1, options, 0, Engine("cpu"))
    noisy = torch.cat([x for x in recorder.seen if len(x) > 1]) - X
    spread = np.array([r["max"] - r["min"] for r in RANGES.values()]) / 4
    np.testing.assert_allclose(noisy.std(dim=0).numpy(), 0.2 * spread, rtol=0.15)
    np.testing.assert_allclose(
        result[0].methods["smoothgrad"].attributions, np.abs(W), rtol=1e-5, atol=1e-6
    )


def test_smoothgrad_noises_a_constant_background_feature_on_its_declared_range(
    tmp_path: Path,
) -> None:
    """f1 (0..10) is constant in the background: its noise is a quarter of its range, not the
    mean of the other features' deviations (about 1, in their units); one background row
    has no spread at all, and every feature takes its range."""
    lows, highs = (np.array([r[key] for r in RANGES.values()]) for key in ("min", "max"))
    drawn = np.random.default_rng(0).random((200, 6))
    background = (lows + (highs - lows) * drawn).astype(np.float32)  # within the ranges
    background[:, 1] = 4.0
    options = ExplainOptions(smoothgrad={"nt_samples": 256, "stdev": 0.2})
    for name, rows in (("constant", background), ("one-row", background[:1])):
        handle = _model(tmp_path, name, rows, ranges=RANGES)
        recorder = _Recording()
        handle.module = recorder
        explain(handle, X, ["smoothgrad"], 1, options, 0, Engine("cpu"))
        noise = (torch.cat([x for x in recorder.seen if len(x) > 1]) - X).std(dim=0).numpy()
        assert noise[1] == pytest.approx(0.2 * 10.0 / 4, rel=0.15), name
        if name == "one-row":
            spread = np.array([r["max"] - r["min"] for r in RANGES.values()]) / 4
            np.testing.assert_allclose(noise, 0.2 * spread, rtol=0.15)


def test_smoothgrad_without_background_or_ranges_is_not_offered(tmp_path: Path) -> None:
    handle = _model(tmp_path, "bare")
    assert "smoothgrad" not in available_methods(handle)
    assert _refused_at(lambda: explain(handle, X, ["smoothgrad"], engine=Engine())) == [
        ("methods", 0)
    ]
    partial = _model(tmp_path, "partial", ranges={"f0": RANGES["f0"]})
    assert "smoothgrad" not in available_methods(partial)
    assert "smoothgrad" in available_methods(_model(tmp_path, "ranged", ranges=RANGES))


# ---- 6. seeds outside [0, 2**32) ------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
@pytest.mark.parametrize("method", ["saliency", "shap", "lime"])
def test_a_seed_out_of_range_is_refused(
    known_models: dict[str, ModelHandle], seed: int, method: str
) -> None:
    handle = known_models["logistic"]
    assert _refused_at(lambda: explain(handle, X, [method], seed=seed, engine=Engine())) == [
        ("seed",)
    ]


def test_the_largest_seed_is_taken(known_models: dict[str, ModelHandle]) -> None:
    result = explain(known_models["logistic"], X, ["lime"], seed=2**32 - 1, engine=Engine())
    assert np.isfinite(result[0].methods["lime"].attributions).all()


# ---- 7. categorical features get whole categories as baselines ------------------------------


def _categorical_model(root: Path) -> ModelHandle:
    background = centred_background(200, 6, seed=3)
    # f2's codes: 0 and 2 are the most frequent (60 rows each), 1 and 3 fewer; mean 1.3.
    codes = np.array([0] * 60 + [1] * 50 + [2] * 60 + [3] * 30, dtype=np.float32)
    background[:, 2] = np.random.default_rng(0).permutation(codes)
    return _model(
        root, "categorical", background, default_baseline="mean", categorical={"f2": CATEGORIES}
    )


def test_mean_baseline_takes_the_most_frequent_code_of_a_categorical_feature(
    tmp_path: Path,
) -> None:
    handle = _categorical_model(tmp_path)
    assert handle.background is not None
    x = torch.tensor([[1.0, 0.8, 3.0, 0.3, -1.2, 0.7]])
    baseline = make_baseline(handle, x, "mean", 0, Engine())
    expected = handle.background.mean(dim=0).numpy()
    expected[2] = 0.0  # the lowest of the tied most frequent codes 0 and 2 (not the mean 1.3)
    np.testing.assert_allclose(baseline[0].numpy(), expected, rtol=1e-6, atol=1e-7)
    weights = np.array([2.0, -1.5, 0.7, 0.0, 1.0, 0.0])
    handle.module = LogisticModel(weights.tolist(), 0.3)
    options = ExplainOptions(integrated_gradients={"baseline": "mean", "n_steps": 64})
    for method in ("integrated_gradients", "occlusion"):
        result = explain(handle, x, [method], 1, options, 0, Engine())[0]
        np.testing.assert_allclose(
            result.methods[method].attributions,
            weights * (x[0].numpy() - expected),
            rtol=1e-4,
            atol=1e-5,
        )


def test_uniform_baseline_draws_whole_codes_of_a_categorical_feature(tmp_path: Path) -> None:
    handle, engine = _categorical_model(tmp_path), Engine()
    drawn = {float(make_baseline(handle, X, "uniform", seed, engine)[0, 2]) for seed in range(60)}
    assert drawn == {0.0, 1.0, 2.0, 3.0}
    bare = _model(tmp_path, "bare-categorical", ranges=RANGES, categorical={"f2": CATEGORIES})
    drawn = {float(make_baseline(bare, X, "uniform", seed, engine)[0, 2]) for seed in range(60)}
    assert drawn == {0.0, 1.0, 2.0, 3.0}


# ---- LIME and the tree need two background rows ------------------------------------------


def test_lime_and_tree_are_not_offered_over_a_one_row_background(tmp_path: Path) -> None:
    """Over one row LIME weighed features the model ignores, with an R² of 0.94."""
    background = centred_background(200, 6)
    one = _model(tmp_path, "one-row", background[:1])
    assert {"shap", "lime", "tree"} & set(available_methods(one)) == {"shap"}
    with pytest.raises(InvalidInput) as refused:
        explain(one, X, ["lime"], target=1, engine=Engine())
    assert refused.value.errors[0].loc == ("methods", 0)
    two = _model(tmp_path, "two-rows", background[:2])
    assert {"shap", "lime", "tree"} <= set(available_methods(two))
