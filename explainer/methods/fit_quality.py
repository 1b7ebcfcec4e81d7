"""The R² of LIME's and the tree's local fits where the model's scores do not vary.

Around a saturated prediction (a probability of 1.0, say) the scores of a neighbourhood
differ by a few float32 steps only. Their R² is then a ratio of rounding errors: anything
from -1e28 to 1, which the viewer showed as a poor fit. Where the scores' weighted
variance is at most `ROUNDING_SPREAD` of their mean square, the fits are judged as
scikit-learn judges constant scores: 1.0 when they match the scores as closely, else 0.0.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import r2_score

# Variance of scores, relative to their mean square, that float rounding alone gives: about
# eight float32 steps (one step is 1.2e-7 of the value).
ROUNDING_SPREAD = 1e-12


def _mean_square(values: np.ndarray, weights: np.ndarray) -> float:
    return float(np.average(values**2, weights=weights))


def only_rounding(scores: np.ndarray, weights: np.ndarray) -> bool:
    """True when the weighted scores differ by float rounding only."""
    if not np.sum(weights) > 0:
        return False
    spread = _mean_square(scores - np.average(scores, weights=weights), weights)
    return spread <= ROUNDING_SPREAD * _mean_square(scores, weights)


def surrogate_r2(scores: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> float:
    """The weighted R² of `predicted` against `scores` (see the module's docstring)."""
    if only_rounding(scores, weights):
        error = _mean_square(scores - predicted, weights)
        return 1.0 if error <= ROUNDING_SPREAD * _mean_square(scores, weights) else 0.0
    return float(r2_score(scores, predicted, sample_weight=weights))


def lime_r2(reported: float, scores: np.ndarray, weights: np.ndarray) -> float:
    """lime's R² of its ridge fit, or 1.0 where the scores differ by rounding only: a ridge
    fit with an intercept is never further from them than their weighted mean is."""
    return 1.0 if only_rounding(scores, weights) else float(reported)
