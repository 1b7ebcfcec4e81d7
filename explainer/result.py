"""The Explanation data model: one result type that serialisation and rendering both read.

Arrays are parallel and in input order: for tabular models one value per feature; for
image models an `(H, W)` map at the model's input size (signed, channels summed), plus
`segments` (an `(H, W)` integer map) for methods that work on superpixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# What the attributions explain, per method (`units` of the result).
UNITS_SCORE = "score"  # contributions to the target score (logit or probability)
UNITS_GRADIENT = "gradient"  # d score / d input (saliency, smoothgrad)
UNITS_RELEVANCE = "relevance"  # Grad-CAM: non-negative class-discriminative relevance


@dataclass(frozen=True)
class Target:
    """The class whose score is explained."""

    index: int
    label: str


@dataclass(frozen=True)
class Prediction:
    """The model's prediction for one instance."""

    index: int
    label: str
    probabilities: list[float]


@dataclass(frozen=True)
class TreeSurrogate:
    """A local decision-tree surrogate: the input's path and the whole tree."""

    rules: list[str]  # conditions on the input's own path, in original units
    leaf_value: float  # the surrogate's prediction for the input
    tree: dict[str, Any]  # the whole tree: nodes with feature, threshold, value, children

    def copy(self) -> TreeSurrogate:
        """An independent copy (its rules and tree too)."""
        return TreeSurrogate(list(self.rules), self.leaf_value, _copied(self.tree))


@dataclass
class Explanation:
    """One method's explanation of one instance toward one target."""

    method: str
    attributions: np.ndarray  # (F,) for tabular, (H, W) for images
    score_kind: str  # "logit" or "probability": the explained score
    units: str  # UNITS_*: how to read the attribution values
    base_value: float | None = None  # SHAP expected value, LIME intercept, tree root mean
    quality: dict[str, float] = field(default_factory=dict)
    segments: np.ndarray | None = None  # (H, W) superpixel ids for superpixel methods
    segment_weights: np.ndarray | None = None  # one weight per superpixel (LIME, tree)
    surrogate: TreeSurrogate | None = None  # only for the "tree" method
    magnitude: bool = False  # values are |sensitivities| with no sign (saliency's abs, smoothgrad)
    timing_ms: float = 0.0
    cached: bool = False  # served from the explanation cache

    def copy(self) -> Explanation:
        """An independent copy: its arrays, quality and surrogate copied too (the cache keeps
        and hands out copies; `copy.deepcopy` took about 3 times as long)."""
        return replace(
            self,
            attributions=self.attributions.copy(),
            quality=dict(self.quality),
            segments=None if self.segments is None else self.segments.copy(),
            segment_weights=None if self.segment_weights is None else self.segment_weights.copy(),
            surrogate=None if self.surrogate is None else self.surrogate.copy(),
        )

    def is_finite(self) -> bool:
        """True when every number it reports (attributions, base value, quality) is finite."""
        numbers = [self.attributions, list(self.quality.values())]
        if self.base_value is not None:
            numbers.append([self.base_value])
        if self.segment_weights is not None:
            numbers.append(self.segment_weights)
        return all(bool(np.isfinite(np.asarray(part, dtype=np.float64)).all()) for part in numbers)


@dataclass
class InstanceExplanation:
    """Every requested method's explanation of one instance."""

    prediction: Prediction
    target: Target
    score: float  # the model's target score for this instance
    methods: dict[str, Explanation] = field(default_factory=dict)

    @property
    def timings_ms(self) -> dict[str, float]:
        return {name: exp.timing_ms for name, exp in self.methods.items()}


def _copied(value: Any) -> Any:
    """A copy of JSON-like data: its dicts and lists copied, the scalars in them shared."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value
