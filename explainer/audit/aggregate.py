"""Audit summaries from the per-row documents: importance, segments, agreement, flags.

Attributions are read toward the model's adverse class (the last class when it declares
none), as for reason codes: a two-class probability model's other target is sign-flipped
(but for magnitudes, which have no sign); rows whose target's attributions cannot be read
so, logits or more classes, are left out of the attribution views. Global importance is
the mean |attribution| per feature. Method agreement is the Spearman rank
correlation of two methods' |attributions| within a row. A segment column (a feature or an
extra column) splits the rows into groups whose mean predicted adverse probability,
predicted adverse rate and mean attribution are compared: the bias audit.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from explainer.targets import toward_class

MAX_NUMERIC_SEGMENTS = 10  # more distinct numeric values than this: quartile bins
LOW_FIDELITY = 0.5  # tree surrogate fidelity R^2 below this is flagged
HIGH_DELTA = 0.05  # IG convergence delta above this fraction of max(1, |score|) is flagged
LOW_AGREEMENT = 0.0  # mean pairwise Spearman below this: the methods disagree
SUMMARY_BATCH = 1000  # documents read into arrays at a time
SEGMENT_METHODS = ("shap", "integrated_gradients", "lime", "tree", "occlusion", "saliency")


@dataclass(frozen=True)
class Segment:
    """One group of rows sharing a segment value."""

    label: str
    count: int
    mean_adverse_probability: float
    adverse_rate: float  # share of rows predicted as the adverse class
    mean_attribution: dict[str, np.ndarray]  # method -> (F,) signed, toward the adverse class


@dataclass(frozen=True)
class Disparity:
    """Gaps between segments (the bias audit)."""

    column: str
    segments: list[Segment]
    highest: str  # segment with the highest mean adverse probability
    lowest: str
    probability_gap: float  # highest - lowest mean adverse probability
    # lowest / highest rate of the favourable outcome (not predicted adverse): the disparate
    # impact ratio; without an adverse class, of the rate predicted as the scored class.
    # None when no segment has that outcome at all (0 / 0).
    rate_ratio: float | None
    method: str  # whose attributions the gaps compare
    attribution_gaps: np.ndarray  # (F,) max - min over segments of the mean attribution

    def largest_gaps(self, features: Sequence[str], count: int = 3) -> list[tuple[str, float]]:
        """The `count` largest known gaps, largest first (features without one left out)."""
        known = np.flatnonzero(np.isfinite(self.attribution_gaps))
        order = known[np.argsort(-self.attribution_gaps[known], kind="stable")][:count]
        return [(features[i], float(self.attribution_gaps[i])) for i in order]


@dataclass(frozen=True)
class Flag:
    """A row worth a look, and why."""

    row: int
    reasons: list[str]


@dataclass(frozen=True)
class UnexplainedRow:
    """A row that was not explained (its model outputs were not finite), and why."""

    row: int
    prediction: str | None  # the predicted class, when the prediction itself was finite
    reason: str


class NothingExplained(ValueError):
    """No document of the audit holds explanations (every row failed, or none is stored)."""


def unexplained_row(document: dict[str, Any]) -> UnexplainedRow:
    """The row of a document holding an `error` instead of explanations, and why."""
    return UnexplainedRow(
        row=document["row"],
        prediction=document["prediction"]["label"] if "prediction" in document else None,
        reason=document["error"]["detail"],
    )


@dataclass
class AuditSummary:
    """Everything the report shows, computed from the row documents."""

    features: list[str]
    classes: list[str]
    adverse: int | None  # the adverse class index, when the model declares one
    methods: list[str]
    rows: np.ndarray  # (N,) row indices
    inputs: np.ndarray  # (N, F) feature values, categories as their index
    attributions: dict[str, np.ndarray]  # method -> (N, F), toward the scored class (or NaN)
    probabilities: np.ndarray  # (N, C)
    predicted: np.ndarray  # (N,) predicted class index
    quality: dict[str, dict[str, np.ndarray]]  # method -> quality key -> (N,)
    importance: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (F,)
    importance_by_class: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    agreement: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # pair -> (N,)
    disparity: Disparity | None = None
    flags: list[Flag] = field(default_factory=list)

    @property
    def scored_class(self) -> int:
        """The class whose probability the report tracks: the adverse one, else the last."""
        return scored_class(self.classes, self.adverse)

    @property
    def unreadable_rows(self) -> int:
        """Rows whose attributions cannot be read toward the scored class (explained toward
        another class of a logit or many-class model): left out of the attribution views."""
        first = next(iter(self.attributions.values()))
        return int(np.isnan(first).all(axis=1).sum())

    @property
    def row_agreement(self) -> np.ndarray:
        """(N,) mean Spearman correlation over method pairs (NaN without pairs)."""
        if not self.agreement:
            return np.full(len(self.rows), np.nan)
        return nan_mean(np.stack(list(self.agreement.values())))


def nan_mean(values: np.ndarray) -> np.ndarray:
    """The mean over axis 0 of the finite values; NaN, without numpy's warning, where there
    are none (rows whose method pairs all have constant attributions, say)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    sums = np.where(finite, values, 0.0).sum(axis=0)
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


def scored_class(classes: Sequence[str], adverse: int | None) -> int:
    """The class the report tracks: the adverse one, else the last."""
    return adverse if adverse is not None else len(classes) - 1


def _toward(
    values: np.ndarray, target: int, scored: int, complementary: bool, magnitude: bool
) -> np.ndarray:
    """A row's attributions toward the scored class; NaN where they cannot be read so.

    `magnitude`: the values have no sign (saliency's |gradient|, SmoothGrad), and those of
    complementary scores are equal (|d p0| = |d p1|): they are read as they are.
    """
    if magnitude and complementary:
        return values
    toward = toward_class(values, target, scored, complementary)
    return np.full_like(values, np.nan) if toward is None else toward


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) Spearman correlation of |a| and |b| row by row (NaN for constant rows)."""
    ra = rankdata(np.abs(a), axis=1)
    rb = rankdata(np.abs(b), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(axis=1) / denominator, np.nan)


MISSING_SEGMENT = "missing"  # the segment of rows without a value in the segment column


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_label(value: float) -> str:
    """A number as a segment label: 1 and 1.0 alike, never rounded."""
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)


def _bin_names(edges: np.ndarray) -> list[str]:
    """Quartile bin labels with exact edges (the shortest text that reads back as the edge:
    a rounded edge could show a row in the wrong bin, or two bins alike)."""
    shown = [np.format_float_positional(e, unique=True, trim="-") for e in edges]
    last = len(edges) - 2
    return [f"[{shown[i]}, {shown[i + 1]}{']' if i == last else ')'}" for i in range(last + 1)]


def _segment_codes(
    values: list[Any], categories: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """(each row's segment index, segment labels in display order).

    Missing values (None) make a segment of their own, shown last. Numbers with more than
    MAX_NUMERIC_SEGMENTS distinct values are cut into quartile bins; fewer distinct numbers
    are a segment each, in numeric order (1 and 1.0 are one segment). Other values are
    segments by their text, in the model's category order when it has one, else sorted.
    """
    present = [v for v in values if v is not None]
    labels: list[str | None]
    if present and all(_is_number(v) for v in present):
        numbers = np.asarray([np.nan if v is None else float(v) for v in values])
        distinct = np.unique(numbers[~np.isnan(numbers)])
        if len(distinct) > MAX_NUMERIC_SEGMENTS:
            known = numbers[~np.isnan(numbers)]
            edges = np.unique(np.quantile(known, [0.0, 0.25, 0.5, 0.75, 1.0]))
            bins = np.clip(np.searchsorted(edges, numbers, side="right") - 1, 0, len(edges) - 2)
            order = _bin_names(edges)
            labels = [None if np.isnan(x) else order[b] for x, b in zip(numbers, bins, strict=True)]
        else:
            order = [_number_label(x) for x in distinct]
            labels = [None if v is None else _number_label(v) for v in values]
    else:
        labels = [None if v is None else str(v) for v in values]
        texts = {label for label in labels if label is not None}
        known = [c for c in categories or () if c in texts]
        order = known + sorted(texts.difference(known))
    if None in labels:
        missing = MISSING_SEGMENT
        while missing in order:  # a value spelt "missing" (or "(missing)"...) keeps its own
            missing = f"({missing})"
        order = [*order, missing]
    index = {label: i for i, label in enumerate(order)}
    codes = np.asarray([len(order) - 1 if label is None else index[label] for label in labels])
    return codes, order


def _favourable_rates(segments: Sequence[Segment], adverse: int | None) -> list[float]:
    """Per segment, the share of rows with the favourable outcome (not predicted adverse)
    when the model declares an adverse class, else the share predicted as the scored class."""
    return [1.0 - s.adverse_rate if adverse is not None else s.adverse_rate for s in segments]


def _disparity(
    summary: AuditSummary, column: str, values: list[Any], categories: Sequence[str] | None
) -> Disparity:
    codes, order = _segment_codes(values, categories)
    scored = summary.scored_class
    segments = []
    for code, label in enumerate(order):
        mask = codes == code
        segments.append(
            Segment(
                label=label,
                count=int(mask.sum()),
                mean_adverse_probability=float(summary.probabilities[mask, scored].mean()),
                adverse_rate=float((summary.predicted[mask] == scored).mean()),
                mean_attribution={m: nan_mean(a[mask]) for m, a in summary.attributions.items()},
            )
        )
    by_probability = sorted(segments, key=lambda s: s.mean_adverse_probability)
    rates = _favourable_rates(segments, summary.adverse)
    method = next(m for m in (*SEGMENT_METHODS, *summary.methods) if m in summary.methods)
    means = np.stack([s.mean_attribution[method] for s in segments])  # (S, F), NaN: no rows
    return Disparity(
        column=column,
        segments=segments,
        highest=by_probability[-1].label,
        lowest=by_probability[0].label,
        probability_gap=by_probability[-1].mean_adverse_probability
        - by_probability[0].mean_adverse_probability,
        rate_ratio=min(rates) / max(rates) if max(rates) > 0 else None,
        method=method,
        attribution_gaps=_spread(means),
    )


def _spread(means: np.ndarray) -> np.ndarray:
    """(F,) max - min over the segments whose mean is known; NaN where fewer than one is."""
    known = np.isfinite(means)
    high = np.where(known, means, -np.inf).max(axis=0)
    low = np.where(known, means, np.inf).min(axis=0)
    return np.where(known.any(axis=0), high - low, np.nan)


def _flags(summary: AuditSummary, scores: np.ndarray) -> list[Flag]:
    reasons: list[list[str]] = [[] for _ in summary.rows]
    fidelity = summary.quality.get("tree", {}).get("fidelity_r2")
    if fidelity is not None:
        for i in np.flatnonzero(fidelity < LOW_FIDELITY):
            reasons[i].append(f"low tree fidelity (R² {fidelity[i]:.2f})")
    delta = summary.quality.get("integrated_gradients", {}).get("convergence_delta")
    if delta is not None:
        for i in np.flatnonzero(delta > HIGH_DELTA * np.maximum(1.0, np.abs(scores))):
            reasons[i].append(f"high IG convergence delta ({delta[i]:.3g})")
    agreement = summary.row_agreement
    for i in np.flatnonzero(agreement < LOW_AGREEMENT):
        reasons[i].append(f"methods disagree (mean Spearman {agreement[i]:.2f})")
    flags = [Flag(int(summary.rows[i]), r) for i, r in enumerate(reasons) if r]
    return sorted(flags, key=lambda f: (-len(f.reasons), f.row))


@dataclass
class _RowNumbers:
    """What the summary reads from explained rows' documents, as arrays (row order kept)."""

    rows: np.ndarray  # (N,)
    inputs: np.ndarray  # (N, F)
    attributions: dict[str, np.ndarray]  # method -> (N, F), toward the scored class
    probabilities: np.ndarray  # (N, C)
    predicted: np.ndarray  # (N,)
    quality: dict[str, dict[str, np.ndarray]]  # method -> key -> (N,)
    scores: np.ndarray  # (N,)
    segments: list[Any]  # (N,) the segment column's values ([] without one)

    @classmethod
    def read(
        cls,
        documents: Sequence[dict[str, Any]],
        features: Sequence[str],
        scored: int,
        categorical: dict[str, Sequence[str]],
        complementary: bool,
        segmented: bool,
    ) -> _RowNumbers:
        """The numbers of a batch of explained rows' documents (all with the same methods)."""
        methods = list(documents[0]["methods"])
        targets = [d["target"]["index"] for d in documents]
        return cls(
            rows=np.asarray([d["row"] for d in documents]),
            inputs=np.asarray(
                [
                    [
                        categorical[f].index(d["input"][f]) if f in categorical else d["input"][f]
                        for f in features
                    ]
                    for d in documents
                ],
                dtype=np.float64,
            ),
            attributions={
                m: np.stack(
                    [
                        _toward(
                            np.asarray(d["methods"][m]["attributions"], dtype=np.float64),
                            t,
                            scored,
                            complementary,
                            bool(d["methods"][m].get("magnitude")),
                        )
                        for d, t in zip(documents, targets, strict=True)
                    ]
                )
                for m in methods
            },
            probabilities=np.asarray(
                [d["prediction"]["probabilities"] for d in documents], dtype=np.float64
            ),
            predicted=np.asarray([d["prediction"]["index"] for d in documents]),
            quality={
                m: {
                    key: np.asarray(
                        [d["methods"][m]["quality"][key] for d in documents], dtype=np.float64
                    )
                    for key in documents[0]["methods"][m]["quality"]
                }
                for m in methods
            },
            scores=np.asarray([d["score"] for d in documents], dtype=np.float64),
            segments=[d["segment"] for d in documents] if segmented else [],
        )

    @classmethod
    def joined(cls, parts: Sequence[_RowNumbers]) -> _RowNumbers:
        """The batches' numbers as one set, in the batches' order."""
        first = parts[0]
        return cls(
            rows=np.concatenate([p.rows for p in parts]),
            inputs=np.concatenate([p.inputs for p in parts]),
            attributions={
                m: np.concatenate([p.attributions[m] for p in parts]) for m in first.attributions
            },
            probabilities=np.concatenate([p.probabilities for p in parts]),
            predicted=np.concatenate([p.predicted for p in parts]),
            quality={
                m: {k: np.concatenate([p.quality[m][k] for p in parts]) for k in keys}
                for m, keys in first.quality.items()
            },
            scores=np.concatenate([p.scores for p in parts]),
            segments=[value for p in parts for value in p.segments],
        )


def summarise(
    documents: Iterable[dict[str, Any]],
    features: Sequence[str],
    classes: Sequence[str],
    adverse: int | None = None,
    categorical: dict[str, Sequence[str]] | None = None,
    segment_by: str | None = None,
    complementary: bool = False,
    unexplained: list[UnexplainedRow] | None = None,
) -> AuditSummary:
    """The audit's summary of its explained rows, reading `documents` once, a batch at a time,
    so that only their numbers are held (an audit's 100,000 documents would take gigabytes).

    Documents with an `error` are left out (appended to `unexplained` when given);
    NothingExplained when none is left. `categorical` maps a feature to its categories
    (display order); `complementary`: the two classes' scores are complementary
    probabilities (see `targets.toward_class`).
    """
    categorical = categorical or {}
    parts: list[_RowNumbers] = []
    stream = iter(documents)
    while batch := list(itertools.islice(stream, SUMMARY_BATCH)):
        explained = [d for d in batch if "error" not in d]
        if unexplained is not None:
            unexplained.extend(unexplained_row(d) for d in batch if "error" in d)
        if explained:
            numbers = _RowNumbers.read(
                explained,
                features,
                scored_class(classes, adverse),
                categorical,
                complementary,
                segment_by is not None,
            )
            parts.append(numbers)
    if not parts:
        raise NothingExplained("no explained rows to summarise")
    numbers = _RowNumbers.joined(parts)
    attributions = numbers.attributions
    methods = list(attributions)
    summary = AuditSummary(
        features=list(features),
        classes=list(classes),
        adverse=adverse,
        methods=methods,
        rows=numbers.rows,
        inputs=numbers.inputs,
        attributions=attributions,
        probabilities=numbers.probabilities,
        predicted=numbers.predicted,
        quality=numbers.quality,
    )
    summary.importance = {m: nan_mean(np.abs(a)) for m, a in attributions.items()}
    summary.importance_by_class = {
        m: {
            classes[c]: nan_mean(np.abs(a[summary.predicted == c]))
            for c in range(len(classes))
            if (summary.predicted == c).any()
        }
        for m, a in attributions.items()
    }
    summary.agreement = {
        (m1, m2): _spearman_rows(attributions[m1], attributions[m2])
        for m1, m2 in itertools.combinations(methods, 2)
    }
    if segment_by is not None:
        summary.disparity = _disparity(
            summary, segment_by, numbers.segments, categorical.get(segment_by)
        )
    summary.flags = _flags(summary, numbers.scores)
    return summary
