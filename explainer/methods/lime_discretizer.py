"""lime's quartile discretiser, remembering the neighbourhoods it has drawn.

With a seed, lime draws the same neighbourhood for every instance of a tabular model: the
quartile bins of the perturbed rows come from the background's bin frequencies, not from
the instance, and only row 0 (the instance) and the binary "same bin as the instance"
encoding depend on the instance. Turning the bins back into values (`undiscretize`: one
truncated-normal draw per feature) is most of lime's sampling time, and its result is a
pure function of the bins and of the random state when it is called.

`RecallingQuartileDiscretizer` keeps its last few results keyed by both, and on a repeat
returns the same values and leaves the random state exactly where the draw would have left
it. The rows of a multi-row request, and repeated requests with the same seed, draw once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lime.discretize import QuartileDiscretizer

from explainer.cache import LruCache, array_digest

RECALLED_DRAWS = 8  # per model: distinct (seed, num_samples, ...) neighbourhoods kept

RandomStateTuple = tuple[Any, ...]  # numpy's `RandomState.get_state()`
RecalledDraw = tuple[np.ndarray, RandomStateTuple]  # the values, the state after the draw
DrawKey = tuple[str, str, int, int, float]  # bins, state keys, position, gauss


class RecallingQuartileDiscretizer(QuartileDiscretizer):
    """`QuartileDiscretizer` whose `undiscretize` is recalled for the same bins and state."""

    def __init__(
        self,
        data: np.ndarray,
        categorical_features: list[int],
        feature_names: list[str],
        random_state: np.random.RandomState,
    ) -> None:
        super().__init__(data, categorical_features, feature_names, random_state=random_state)
        self.recalled: LruCache[DrawKey, RecalledDraw] = LruCache(RECALLED_DRAWS)

    def undiscretize(self, data: np.ndarray) -> np.ndarray:
        key = self._key(data)
        kept = self.recalled.get(key)
        if kept is None:
            values = super().undiscretize(data)
            kept = (values, self.random_state.get_state())
            self.recalled.put(key, kept)
        else:
            self.random_state.set_state(kept[1])
        return kept[0].copy()

    def _key(self, data: np.ndarray) -> DrawKey:
        """The bins, and the random state about to draw from them."""
        _, keys, position, has_gauss, cached_gauss = self.random_state.get_state()
        return array_digest(data), array_digest(keys), position, has_gauss, cached_gauss
