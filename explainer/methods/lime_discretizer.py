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

It also mends lime's draw from a bin that holds a single value (its lowest and highest
values equal: a constant feature, a one-row background, or an integer feature whose
minimum holds a quarter of the rows, such as a loan term of 36 months): lime returns that
bin's z-score, 0, in place of its value, so the model was evaluated at 0 for those samples.
Here they take the bin's value; the random state is consumed as lime consumes it.
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

    def get_undiscretize_values(self, feature: int, values: np.ndarray) -> np.ndarray:
        """lime's values for one feature's bins, with single-valued bins at their value."""
        drawn = super().get_undiscretize_values(feature, values)
        low = np.asarray(self.mins[feature])[values]
        single = low == np.asarray(self.maxs[feature])[values]
        drawn[single] = low[single]
        return drawn

    def _key(self, data: np.ndarray) -> DrawKey:
        """The bins, and the random state about to draw from them."""
        _, keys, position, has_gauss, cached_gauss = self.random_state.get_state()
        return array_digest(data), array_digest(keys), position, has_gauss, cached_gauss
