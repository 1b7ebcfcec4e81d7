"""The explanation cache: hits for repeated rows, identical numbers, bounded size."""

from __future__ import annotations

import numpy as np
import torch

from explainer import Engine, ExplainOptions, explain
from explainer.cache import LruCache
from explainer.warmup import prepare
from models import ModelHandle

X = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7], [-0.3, 0.1, 2.0, -1.0, 0.4, 0.0]])


def test_repeated_request_is_served_from_the_cache(known_models: dict[str, ModelHandle]) -> None:
    engine = Engine("cpu")
    handle = known_models["logistic"]
    first = explain(handle, X, target=1, seed=2, engine=engine)
    misses = engine.explanations.misses
    second = explain(handle, X, target=1, seed=2, engine=engine)
    assert engine.explanations.misses == misses
    assert engine.explanations.hits == 2 * 5
    for a, b in zip(first, second, strict=True):
        for name, explanation in a.methods.items():
            assert b.methods[name].cached and not explanation.cached
            np.testing.assert_array_equal(explanation.attributions, b.methods[name].attributions)


def test_cached_and_uncached_results_are_equal_per_row(
    known_models: dict[str, ModelHandle],
) -> None:
    """A row's result does not depend on its batch, so caching rows is sound."""
    handle = known_models["logistic"]
    methods = ["integrated_gradients", "shap", "lime", "tree", "smoothgrad", "occlusion"]
    options = ExplainOptions(integrated_gradients={"baseline": "uniform"})
    together = explain(handle, X, methods, target=1, seed=5, options=options)
    alone = explain(handle, X[1:], methods, target=1, seed=5, options=options)[0]
    for name in methods:
        np.testing.assert_allclose(
            together[1].methods[name].attributions, alone.methods[name].attributions, atol=1e-6
        )


def test_expected_gradients_of_a_row_do_not_depend_on_its_batch(
    known_models: dict[str, ModelHandle],
) -> None:
    handle = known_models["logistic"]
    options = ExplainOptions(shap={"algorithm": "gradient"})
    rows = torch.cat([X, -X])
    together = explain(handle, rows, ["shap"], target=1, seed=5, options=options)
    for index in (1, 3):
        alone = explain(
            handle, rows[index : index + 1], ["shap"], target=1, seed=5, options=options
        )
        np.testing.assert_allclose(
            together[index].methods["shap"].attributions,
            alone[0].methods["shap"].attributions,
            rtol=1e-6,
            atol=1e-7,
        )


def test_different_seed_options_or_target_miss_the_cache(
    known_models: dict[str, ModelHandle],
) -> None:
    engine = Engine("cpu")
    handle = known_models["logistic"]
    explain(handle, X[:1], ["lime"], target=1, seed=1, engine=engine)
    explain(handle, X[:1], ["lime"], target=1, seed=2, engine=engine)
    explain(handle, X[:1], ["lime"], target=0, seed=1, engine=engine)
    options = ExplainOptions(lime={"num_samples": 500})
    explain(handle, X[:1], ["lime"], target=1, seed=1, engine=engine, options=options)
    assert engine.explanations.hits == 0 and engine.explanations.misses == 4


def test_the_tree_misses_the_cache_when_lime_options_change(
    known_models: dict[str, ModelHandle],
) -> None:
    """The tree is fit on LIME's neighbourhood, so LIME's options are part of its key."""
    engine = Engine("cpu")
    handle = known_models["logistic"]
    few, many = (ExplainOptions(lime={"num_samples": n}) for n in (100, 2000))
    explain(handle, X[:1], ["tree"], target=1, seed=1, engine=engine, options=few)
    served = explain(handle, X[:1], ["tree"], target=1, seed=1, engine=engine, options=many)
    fresh = explain(handle, X[:1], ["tree"], target=1, seed=1, options=many)
    assert engine.explanations.hits == 0 and not served[0].methods["tree"].cached
    assert served[0].methods["tree"].quality == fresh[0].methods["tree"].quality
    np.testing.assert_array_equal(
        served[0].methods["tree"].attributions, fresh[0].methods["tree"].attributions
    )
    unchanged_tree = ExplainOptions(lime={"num_samples": 2000}, shap={"max_evals": 99})
    explain(handle, X[:1], ["tree"], target=1, seed=1, engine=engine, options=unchanged_tree)
    assert engine.explanations.hits == 1  # other methods' options do not matter to it


def test_lru_cache_is_bounded_and_counts() -> None:
    cache: LruCache[int, str] = LruCache(2)
    cache.put(1, "a")
    cache.put(2, "b")
    assert cache.get(1) == "a"
    cache.put(3, "c")  # drops 2, the least recently used
    assert cache.get(2) is None and cache.get(3) == "c" and len(cache) == 2
    assert cache.stats() == {"entries": 2, "hits": 2, "misses": 1}


def test_lookups_can_be_counted_by_the_caller() -> None:
    cache: LruCache[int, str] = LruCache(2)
    cache.put(1, "a")
    assert cache.get(1, count=False) == "a" and cache.get(2, count=False) is None
    cache.record(hits=3, misses=1)
    assert cache.stats() == {"entries": 1, "hits": 3, "misses": 1}


def test_hits_and_misses_count_what_the_cache_served(known_models: dict[str, ModelHandle]) -> None:
    """A row with a method missing is explained afresh with every method: all misses."""
    engine = Engine("cpu")
    handle = known_models["logistic"]
    explain(handle, X, ["saliency"], target=1, engine=engine)
    assert (engine.explanations.hits, engine.explanations.misses) == (0, 2)
    mixed = explain(handle, X, ["saliency", "occlusion"], target=1, engine=engine)
    assert not any(row.methods["saliency"].cached for row in mixed)
    assert (engine.explanations.hits, engine.explanations.misses) == (0, 2 + 4)
    again = explain(handle, X, ["saliency", "occlusion"], target=1, engine=engine)
    assert all(explanation.cached for row in again for explanation in row.methods.values())
    assert (engine.explanations.hits, engine.explanations.misses) == (4, 6)


def test_warm_up_neither_fills_nor_counts_in_the_cache(
    known_models: dict[str, ModelHandle],
) -> None:
    engine = Engine("cpu")
    explain(known_models["logistic"], X, ["saliency"], target=1, engine=engine)
    prepare(engine, known_models["logistic"], tune=False, warm_up=True)
    assert engine.explanations.stats() == {"entries": 2, "hits": 0, "misses": 2}


def test_changing_a_result_in_place_changes_no_later_answer(
    known_models: dict[str, ModelHandle],
) -> None:
    """The cache keeps and hands out copies: a caller may normalise or round in place."""
    engine = Engine("cpu")
    handle = known_models["logistic"]
    methods = ["saliency", "integrated_gradients", "tree"]
    truth = explain(handle, X[:1], methods, target=1, seed=1, engine=Engine("cpu"))[0]
    for _ in range(2):  # the first result is computed, the second served from the cache
        served = explain(handle, X[:1], methods, target=1, seed=1, engine=engine)[0]
        for name in methods:
            expected = truth.methods[name]
            np.testing.assert_array_equal(served.methods[name].attributions, expected.attributions)
            assert served.methods[name].quality == expected.quality
            served.methods[name].attributions /= 10.0
            served.methods[name].quality["changed"] = 1.0
        surrogate = served.methods["tree"].surrogate
        assert surrogate is not None and truth.methods["tree"].surrogate is not None
        assert surrogate.rules == truth.methods["tree"].surrogate.rules
        assert surrogate.tree == truth.methods["tree"].surrogate.tree
        surrogate.rules.append("changed")
        surrogate.tree["nodes"][0]["value"] = 99.0
        surrogate.tree["path"].append(99)
    assert served.methods["saliency"].cached


def test_use_cache_false_neither_reads_nor_fills(known_models: dict[str, ModelHandle]) -> None:
    engine = Engine("cpu")
    handle = known_models["logistic"]
    explain(handle, X, ["lime"], target=1, engine=engine, use_cache=False)
    assert len(engine.explanations) == 0 and engine.explanations.hits == 0
    explain(handle, X, ["lime"], target=1, engine=engine)
    again = explain(handle, X, ["lime"], target=1, engine=engine, use_cache=False)
    assert not any(row.methods["lime"].cached for row in again)


def test_kept_shap_explainers_give_the_numbers_of_fresh_ones(
    known_models: dict[str, ModelHandle],
) -> None:
    """shap explainers are kept per model; a kept permutation explainer is re-seeded."""
    handle = known_models["logistic"]
    options = ExplainOptions(shap={"algorithm": "permutation"})
    engine = Engine("cpu", cache_entries=0)  # no explanation cache: shap runs every time
    first = explain(handle, X, ["shap"], target=1, seed=3, options=options, engine=engine)
    kept = len(engine.objects)
    np.random.seed(99)  # whatever the global generator holds, the kept explainer re-seeds
    again = explain(handle, X, ["shap"], target=1, seed=3, options=options, engine=engine)
    assert len(engine.objects) == kept  # nothing new was built
    fresh = explain(handle, X, ["shap"], target=1, seed=3, options=options)  # a new engine
    for a, b, c in zip(first, again, fresh, strict=True):
        values = a.methods["shap"].attributions
        np.testing.assert_array_equal(values, b.methods["shap"].attributions)
        np.testing.assert_array_equal(values, c.methods["shap"].attributions)


def test_a_repeated_request_makes_no_model_call(known_models: dict[str, ModelHandle]) -> None:
    """Its predictions come from the model outputs kept with the explanations."""
    engine = Engine("cpu")
    handle = known_models["logistic"]
    first = explain(handle, X, ["saliency", "lime"], engine=engine)
    calls = engine.model_calls
    again = explain(handle, X, ["saliency", "lime"], engine=engine)
    assert engine.model_calls == calls
    for a, b in zip(first, again, strict=True):
        assert a.prediction == b.prediction and a.score == b.score and a.target == b.target
    explain(handle, X[:1] + 1.0, ["saliency"], engine=engine)  # a new row: evaluated
    assert engine.model_calls > calls
    explain(handle, X, ["saliency"], engine=engine, use_cache=False)  # past the cache
    assert len(engine.outputs) == len(X) + 1
