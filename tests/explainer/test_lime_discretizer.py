"""The recalling discretiser: a recalled draw is exactly the draw lime would have made, but
for bins of one value, which lime drew as 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lime.discretize import QuartileDiscretizer

from explainer import Engine, InstanceExplanation, explain
from explainer.methods.lime_discretizer import RECALLED_DRAWS, RecallingQuartileDiscretizer
from models import ModelRepository
from tests.helpers import LogisticModel, binary_tabular_spec, write_torchscript_model

DATA = np.random.default_rng(0).normal(size=(200, 4))
NAMES = ["a", "b", "c", "d"]


def _bins(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, size=(50, 4)).astype(np.float64)


def test_a_recalled_draw_equals_lime_and_leaves_the_random_state_where_lime_does() -> None:
    plain = QuartileDiscretizer(DATA, [], NAMES, random_state=np.random.RandomState(0))
    recalling = RecallingQuartileDiscretizer(DATA, [], NAMES, np.random.RandomState(0))
    for _ in range(3):  # the first draws, the others are recalled
        plain.random_state.seed(7)
        recalling.random_state.seed(7)
        expected = plain.undiscretize(_bins(1))
        np.testing.assert_array_equal(recalling.undiscretize(_bins(1)), expected)
        # What lime draws next (its ridge, a later feature) is unchanged.
        assert plain.random_state.random_sample() == recalling.random_state.random_sample()
    assert recalling.recalled.stats() == {"entries": 1, "hits": 2, "misses": 1}


def test_other_bins_or_another_random_state_draw_afresh() -> None:
    recalling = RecallingQuartileDiscretizer(DATA, [], NAMES, np.random.RandomState(0))
    recalling.random_state.seed(7)
    first = recalling.undiscretize(_bins(1))
    recalling.random_state.seed(7)
    other_bins = recalling.undiscretize(_bins(2))
    recalling.random_state.seed(8)
    other_seed = recalling.undiscretize(_bins(1))
    recalling.random_state.seed(7)
    assert recalling.undiscretize(_bins(1)) is not first  # a copy: lime may write into it
    assert recalling.recalled.stats()["misses"] == 3
    assert not np.array_equal(first, other_bins)
    assert not np.array_equal(first, other_seed)


def test_the_recalled_draws_are_bounded() -> None:
    recalling = RecallingQuartileDiscretizer(DATA, [], NAMES, np.random.RandomState(0))
    for seed in range(RECALLED_DRAWS + 5):
        recalling.random_state.seed(seed)
        recalling.undiscretize(_bins(1))
    assert len(recalling.recalled) == RECALLED_DRAWS


def test_a_bin_of_one_value_draws_that_value() -> None:
    """lime drew 0 (the bin's z-score) for a bin whose rows all hold one value: a loan term
    of 36 months in 60% of the rows, a constant feature. Values in other bins are lime's."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(200, 4))
    data[:, 1] = np.where(rng.random(200) < 0.6, 36.0, 60.0)  # the lowest bin holds only 36
    data[:, 3] = 5.0  # constant
    plain = QuartileDiscretizer(data, [], NAMES, random_state=np.random.RandomState(0))
    recalling = RecallingQuartileDiscretizer(data, [], NAMES, np.random.RandomState(0))
    bins = np.zeros((20, 4))
    bins[10:, 0] = 3
    plain.random_state.seed(3)
    recalling.random_state.seed(3)
    expected = plain.undiscretize(bins)
    drawn = recalling.undiscretize(bins)
    assert np.all(expected[:, [1, 3]] == 0.0)  # lime's own draw
    np.testing.assert_array_equal(drawn[:, 1], 36.0)
    np.testing.assert_array_equal(drawn[:, 3], 5.0)
    np.testing.assert_array_equal(drawn[:, [0, 2]], expected[:, [0, 2]])
    assert plain.random_state.random_sample() == recalling.random_state.random_sample()


@pytest.fixture(scope="module")
def term(tmp_path_factory: pytest.TempPathFactory) -> InstanceExplanation:
    """A logit of 0.1 * term - 4, with terms of 36 (60% of the background) or 60 months,
    explained at a term of 36: LIME and the tree, toward the logit."""
    rng = np.random.default_rng(0)
    background = rng.normal(size=(50, 4)).astype(np.float32)
    background[:, 1] = np.where(rng.random(50) < 0.6, 36.0, 60.0)
    spec = binary_tabular_spec("term", NAMES)
    root = tmp_path_factory.mktemp("term")
    write_torchscript_model(
        root / "term", LogisticModel([0.0, 0.1, 0.0, 0.0], -4.0), spec, background
    )
    handle = ModelRepository(root).load("cpu").handles["term"]
    row = torch.tensor([[2.0, 36.0, 2.0, 3.0]])
    return explain(handle, row, ["lime", "tree"], target=1, seed=0, engine=Engine())[0]


def test_lime_weighs_a_bin_of_one_value_by_the_scores_of_that_value(
    term: InstanceExplanation,
) -> None:
    """LIME's weight of "term in the instance's bin" is the score's change from 60 to 36,
    -2.4 (it was -5.9, from samples evaluated at a term of 0)."""
    assert term.methods["lime"].attributions[1] == pytest.approx(-2.4, abs=0.05)


def test_the_tree_leaf_of_a_bin_of_one_value_is_the_instance_score(
    term: InstanceExplanation,
) -> None:
    """The tree's leaf is the instance's own score (it was 1.6, where the score is -0.4)."""
    tree = term.methods["tree"].surrogate
    assert tree is not None
    assert tree.leaf_value == pytest.approx(term.score, abs=1e-5)
