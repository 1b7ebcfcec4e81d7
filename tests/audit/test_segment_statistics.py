"""The report's statistics on synthetic row documents whose answers are known: segments
(quartile bins, missing values, numbers), the disparate impact ratio, attribution gaps and
the direction attributions are read in."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from explainer.audit.aggregate import MISSING_SEGMENT, AuditSummary, summarise
from explainer.audit.report import ReportContext, render_report

FEATURES = ["a", "b", "c"]
CLASSES = ["approve", "decline"]
UNSET = object()


def document(
    row: int,
    p_decline: float,
    target: int = 1,
    segment: Any = UNSET,
    attributions: list[float] | None = None,
) -> dict[str, Any]:
    """A row document as `explain_chunk` writes it, with a SHAP method only."""
    predicted = int(p_decline >= 0.5)
    doc: dict[str, Any] = {
        "row": row,
        "seed": 0,
        "input": {f: float(k) for k, f in enumerate(FEATURES)},
        "prediction": {
            "label": CLASSES[predicted],
            "index": predicted,
            "probabilities": [1 - p_decline, p_decline],
        },
        "target": {"label": CLASSES[target], "index": target},
        "score": 0.0,
        "methods": {"shap": {"attributions": attributions or [0.3, -0.2, 0.1], "quality": {}}},
    }
    if segment is not UNSET:
        doc["segment"] = segment
    return doc


def segmented(
    documents: list[dict[str, Any]], adverse: int | None = 1, complementary: bool = True
) -> AuditSummary:
    return summarise(
        documents, FEATURES, CLASSES, adverse, segment_by="group", complementary=complementary
    )


def test_the_disparate_impact_ratio_compares_favourable_outcomes() -> None:
    """Declined 55% and 65%: approved 45% and 35%, a ratio of 0.78 that fails the four-fifths
    rule (the declined rates' ratio, 0.85, would pass it)."""
    documents = [
        document(100 * g + k, 0.9 if k < declined else 0.1, segment=name)
        for g, (name, declined) in enumerate((("X", 55), ("Y", 65)))
        for k in range(100)
    ]
    disparity = segmented(documents).disparity
    assert disparity is not None
    assert [s.adverse_rate for s in disparity.segments] == [0.55, 0.65]
    assert disparity.rate_ratio == pytest.approx(0.35 / 0.45)


def test_close_quartile_edges_get_labels_that_tell_them_apart() -> None:
    """Values 1,000,000 to 1,000,039 in four bins of ten: four distinct labels, every row
    counted once (at 4 significant digits they printed alike and merged)."""
    documents = [document(i, 0.9 if i < 10 else 0.1, segment=1_000_000 + i) for i in range(40)]
    disparity = segmented(documents).disparity
    assert disparity is not None
    assert [s.count for s in disparity.segments] == [10, 10, 10, 10]
    assert len({s.label for s in disparity.segments}) == 4
    assert disparity.segments[0].label == "[1000000, 1000009.75)"  # exact edges
    assert disparity.probability_gap == pytest.approx(0.8)


def test_a_missing_value_is_its_own_segment_and_the_numbers_are_still_binned() -> None:
    documents = [document(i, 0.2, segment=30_000 + 100 * i) for i in range(40)]
    documents.append(document(40, 0.9, segment=None))
    disparity = segmented(documents).disparity
    assert disparity is not None
    assert [s.count for s in disparity.segments] == [10, 10, 10, 10, 1]
    assert disparity.segments[-1].label == MISSING_SEGMENT
    assert disparity.highest == MISSING_SEGMENT


def test_few_numbers_are_segments_in_numeric_order_and_1_is_1_0() -> None:
    values = [2, 10, 1, 1.0, 2.0, 10]
    documents = [document(i, 0.5, segment=v) for i, v in enumerate(values)]
    disparity = segmented(documents).disparity
    assert disparity is not None
    assert [(s.label, s.count) for s in disparity.segments] == [("1", 2), ("2", 2), ("10", 2)]


def test_a_segment_without_readable_attributions_leaves_the_other_gaps() -> None:
    """Logits, target "predicted": segment C's rows were all explained toward `approve`,
    which a logit model's attributions cannot be read from. C's means are unknown, and the
    gaps between A and B still show (they were all NaN)."""
    documents = [
        document(0, 0.9, segment="A", attributions=[1.0, 0.5, 0.2]),
        document(1, 0.9, segment="B", attributions=[0.2, 0.5, 0.2]),
        document(2, 0.1, target=0, segment="C", attributions=[9.0, 9.0, 9.0]),
    ]
    summary = segmented(documents, complementary=False)
    disparity = summary.disparity
    assert disparity is not None
    np.testing.assert_allclose(disparity.attribution_gaps, [0.8, 0.0, 0.0])
    assert disparity.largest_gaps(FEATURES, 1) == [("a", pytest.approx(0.8))]
    assert summary.unreadable_rows == 1


def test_without_an_adverse_class_attributions_are_read_toward_the_last_class() -> None:
    """Complementary probabilities, rows explained toward `approve`: their attributions are
    negated to read toward `decline`, the class the report tracks, as with an adverse class."""
    documents = [document(0, 0.9, target=0, segment="A", attributions=[-3.0, 0.0, 0.0])]
    summary = segmented(documents, adverse=None)
    np.testing.assert_array_equal(summary.attributions["shap"], [[3.0, 0.0, 0.0]])
    disparity = summary.disparity
    assert disparity is not None
    assert disparity.rate_ratio == 1.0  # one segment: predicted decline everywhere


def test_a_report_with_no_readable_attributions_renders_and_says_why() -> None:
    """Every row explained toward `approve` on a logit model: the views have nothing to
    show; the report says so, and draws without numpy's or matplotlib's warnings."""
    documents = [
        document(i, 0.9 if i % 2 else 0.1, target=0, segment="AB"[i % 2]) for i in range(6)
    ]
    summary = segmented(documents, complementary=False)
    context = ReportContext("t", "m", "completed", 6, None, [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        html = render_report(summary, context)
    assert 'id="left-out"' in html and "6 of 6 rows were explained toward another class" in html


def test_magnitudes_of_complementary_scores_are_read_as_they_are() -> None:
    """Saliency's |gradient| has no sign, and |d p(approve)| = |d p(decline)|: a row explained
    toward `approve` keeps its magnitudes (negated, they would read as pushing toward approve
    in the distributions and the segment means)."""
    documents = [
        document(0, 0.9, target=1, segment="A", attributions=[0.4, 0.0, 0.2]),
        document(1, 0.1, target=0, segment="B", attributions=[0.2, 0.1, 0.0]),
    ]
    for doc in documents:
        doc["methods"] = {"saliency": {**doc["methods"]["shap"], "magnitude": True}}
    summary = segmented(documents)
    np.testing.assert_array_equal(summary.attributions["saliency"], [[0.4, 0, 0.2], [0.2, 0.1, 0]])
    disparity = summary.disparity
    assert disparity is not None
    np.testing.assert_allclose(disparity.attribution_gaps, [0.2, 0.1, 0.2])


def test_text_spelling_the_missing_labels_keeps_its_own_segments() -> None:
    """Values "missing" and "(missing)" and a null: three segments of one row each (the
    null's label was "(missing)", which merged it with that value's row)."""
    values = ["missing", "(missing)", None]
    documents = [document(i, 0.1 * (i + 1), segment=v) for i, v in enumerate(values)]
    disparity = segmented(documents).disparity
    assert disparity is not None
    segments = {s.label: s for s in disparity.segments}
    assert list(segments) == ["(missing)", "missing", "((missing))"]
    assert [s.count for s in segments.values()] == [1, 1, 1]
    assert segments["((missing))"].mean_adverse_probability == pytest.approx(0.3)


def test_a_ratio_of_no_favourable_outcomes_is_undefined() -> None:
    """Every row declined in both segments: 0 / 0 is no ratio (it was reported as 1.0, a
    pass of the four-fifths rule), and the report says so."""
    documents = [document(i, 0.9, segment="AB"[i % 2]) for i in range(6)]
    summary = segmented(documents)
    assert summary.disparity is not None and summary.disparity.rate_ratio is None
    html = render_report(summary, ReportContext("t", "m", "completed", 6, None, []))
    assert "No segment has any favourable outcomes (predicted other than decline)" in html
