"""The recalling discretiser: a recalled draw is exactly the draw lime would have made."""

from __future__ import annotations

import numpy as np
from lime.discretize import QuartileDiscretizer

from explainer.methods.lime_discretizer import RECALLED_DRAWS, RecallingQuartileDiscretizer

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
