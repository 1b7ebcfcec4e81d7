"""The audit report and its bias audit, on an audit of the zoo's credit-risk model.

Acceptance 4: the report opens in headless Chromium without console errors and holds every
section, its plots real images. Acceptance 5: the documented group effect on `age_band`
(the "18-25" band defaults more, beyond the other features) shows in the computed disparity.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser

from explainer import Engine
from explainer.audit import (
    AuditSpec,
    AuditSummary,
    aggregate,
    audit_report,
    explain_chunk,
    summarise,
)
from explainer.audit.aggregate import nan_mean
from models import ModelHandle
from tests.audit.conftest import CHEAP_OPTIONS, MODEL, credit_rows

ROWS = 300
SECTIONS = (
    "summary",
    "importance",
    "distributions",
    "classes",
    "segments",
    "agreement",
    "fidelity",
    "predictions",
    "flagged",
)


@pytest.fixture(scope="module")
def documents(credit: ModelHandle, engine: Engine) -> list[dict]:
    spec = AuditSpec(model=MODEL, options=CHEAP_OPTIONS, segment_by="age_band")
    return explain_chunk(credit, engine, spec, list(enumerate(credit_rows(ROWS, seed=3))))


@pytest.fixture(scope="module")
def summary(credit: ModelHandle, documents: list[dict]) -> AuditSummary:
    tabular = credit.spec.tabular
    assert tabular is not None
    return summarise(
        documents,
        credit.feature_names,
        list(credit.spec.classes),
        tabular.adverse_class,
        dict(tabular.categorical),
        "age_band",
    )


def test_disparity_shows_the_documented_age_band_effect(
    summary: AuditSummary, credit: ModelHandle
) -> None:
    disparity = summary.disparity
    assert disparity is not None and disparity.method == "shap"
    segments = {s.label: s for s in disparity.segments}
    assert list(segments) == ["18-25", "26-35", "36-50", "51-65", "66+"]
    assert sum(s.count for s in segments.values()) == ROWS
    young = segments["18-25"]
    others = [s for label, s in segments.items() if label != "18-25"]
    # The young band has the highest mean P(default), by a wide margin ...
    assert disparity.highest == "18-25"
    assert young.mean_adverse_probability > max(s.mean_adverse_probability for s in others) + 0.1
    assert disparity.probability_gap > 0.25
    assert disparity.rate_ratio < 0.8  # fails the four-fifths rule of thumb
    # ... and part of it comes from the protected feature itself: the model pushes the
    # young band toward default through age_band, more than any other band.
    age = credit.feature_names.index("age_band")
    pushes = {label: s.mean_attribution["shap"][age] for label, s in segments.items()}
    assert pushes["18-25"] > 0.2
    assert pushes["18-25"] == max(pushes.values())
    assert disparity.largest_gaps(summary.features, 1)[0][0] == "age_band"


def test_nan_mean_is_quiet_where_no_value_is_finite() -> None:
    values = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's nanmean warns "Mean of empty slice" here
        mean = nan_mean(values)
    assert mean[0] == 2.0 and np.isnan(mean[1])


def test_summary_numbers(summary: AuditSummary) -> None:
    assert summary.methods == ["saliency", "integrated_gradients", "shap", "lime", "tree"]
    for values in summary.importance.values():
        assert values.shape == (8,) and np.all(values >= 0)
    assert set(summary.importance_by_class["shap"]) == {"repaid", "default"}
    assert len(summary.agreement) == 10
    ig_shap = summary.agreement[("integrated_gradients", "shap")]
    assert np.nanmedian(ig_shap) > 0.5  # two additive methods on the same logit agree
    assert summary.quality["tree"]["fidelity_r2"].shape == (ROWS,)


def test_summary_read_a_batch_at_a_time_is_the_same(
    credit: ModelHandle,
    documents: list[dict],
    summary: AuditSummary,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`summarise` reads its documents once, in batches (an audit's documents are never all
    held): 7-row batches, read from a one-pass iterator with a failed row among them, give
    the summary of every row at once."""
    tabular = credit.spec.tabular
    assert tabular is not None
    monkeypatch.setattr(aggregate, "SUMMARY_BATCH", 7)
    failed = {"row": ROWS, "seed": 0, "input": {}, "error": {"title": "t", "detail": "why"}}
    unexplained: list = []
    batched = summarise(
        iter([*documents[:50], failed, *documents[50:]]),
        credit.feature_names,
        list(credit.spec.classes),
        tabular.adverse_class,
        dict(tabular.categorical),
        "age_band",
        unexplained=unexplained,
    )
    assert [u.row for u in unexplained] == [ROWS]
    np.testing.assert_array_equal(batched.rows, summary.rows)
    np.testing.assert_array_equal(batched.inputs, summary.inputs)
    for method in summary.methods:
        np.testing.assert_array_equal(batched.attributions[method], summary.attributions[method])
        np.testing.assert_array_equal(batched.importance[method], summary.importance[method])
        for key, values in summary.quality[method].items():
            np.testing.assert_array_equal(batched.quality[method][key], values)
    assert batched.disparity is not None and summary.disparity is not None
    for a, b in zip(batched.disparity.segments, summary.disparity.segments, strict=True):
        assert (a.label, a.count, a.mean_adverse_probability, a.adverse_rate) == (
            b.label,
            b.count,
            b.mean_adverse_probability,
            b.adverse_rate,
        )
        np.testing.assert_array_equal(a.mean_attribution["shap"], b.mean_attribution["shap"])
    assert batched.flags == summary.flags


@pytest.mark.slow
def test_report_opens_in_chromium_with_every_section(
    credit: ModelHandle, documents: list[dict], browser: Browser, tmp_path: Path
) -> None:
    html = audit_report(
        credit,
        documents,
        title="Audit of credit-risk",
        status="completed",
        total=ROWS,
        segment_by="age_band",
        row_link=lambda row: f"/v1/audits/x/results?row={row}",
    )
    assert "http://" not in html and "https://" not in html and "<script" not in html
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "request", lambda r: None if r.url.startswith(("file:", "data:")) else errors.append(r.url)
    )
    page.goto(path.as_uri())
    for section in SECTIONS:
        assert page.locator(f"section#{section} h2").count() == 1, section
    images = page.locator("img")
    assert images.count() >= 12  # importance, 5 beeswarms, class, 2 segment, agreement, ...
    sizes = page.evaluate(
        "() => [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight,"
        " i.src.startsWith('data:image/png;base64,')])"
    )
    assert all(complete and w > 100 and h > 100 and inline for complete, w, h, inline in sizes)
    headline = page.locator("#disparity-headline").inner_text()
    assert "18-25 has the highest" in headline
    flagged = page.locator("section#flagged a")
    if flagged.count():
        assert flagged.first.get_attribute("href").startswith("/v1/audits/x/results?row=")
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert errors == []
    page.close()
