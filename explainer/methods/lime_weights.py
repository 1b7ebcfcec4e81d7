"""LIME weights from the shared neighbourhood (see `neighbourhood`).

Tabular attributions are lime's weights of the binarised features ("the feature is in the
instance's quartile bin"), one per feature. Image attributions spread each superpixel's
weight evenly over its pixels (weight / area), so a map sums to the summed weights; the raw
per-superpixel weights are in `segment_weights`.
"""

from __future__ import annotations

import numpy as np

from explainer.context import MethodContext
from explainer.methods.neighbourhood import Neighbourhood, neighbourhoods
from explainer.result import Explanation


def lime(ctx: MethodContext) -> list[Explanation]:
    return [_explanation(ctx, n) for n in neighbourhoods(ctx)]


def spread_over_segments(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Per-superpixel values -> an `(H, W)` map, each value divided by its area."""
    area = np.bincount(segments.ravel(), minlength=len(values)).astype(np.float64)
    return (values / np.maximum(area, 1.0))[segments]


def _explanation(ctx: MethodContext, hood: Neighbourhood) -> Explanation:
    weights = hood.lime_weights
    attributions = (
        weights if hood.segments is None else spread_over_segments(weights, hood.segments)
    )
    return Explanation(
        "lime",
        attributions,
        ctx.score_kind,
        ctx.units,
        base_value=hood.lime_intercept,
        quality={"local_r2": hood.lime_r2},
        segments=hood.segments,
        segment_weights=None if hood.segments is None else weights,
    )
