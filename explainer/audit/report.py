"""The audit report: one self-contained HTML page, its plots embedded as PNG data URIs.

Sections: summary, rows not explained (when there are any), global importance, attribution
distributions, importance per class, segments and disparities (when a segment column was
chosen), method agreement, surrogate fidelity, predictions, and flagged rows with links to
their explanations.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from explainer.audit import plots
from explainer.audit.aggregate import (
    HIGH_DELTA,
    LOW_AGREEMENT,
    LOW_FIDELITY,
    AuditSummary,
    Disparity,
    NothingExplained,
    UnexplainedRow,
    summarise,
)
from explainer.targets import complementary_scores
from models.handle import ModelHandle

MAX_FLAGGED = 50  # rows listed in the flagged table, and in the table of rows not explained
GAP_HIGHLIGHTS = 3  # the largest attribution gaps highlighted

RowLink = Callable[[int], str]  # row index -> URL of its explanation

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:62rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}
.gap{background:#fde2e1;font-weight:600}.note{color:#555;font-size:.9rem}
img{max-width:100%;display:block;margin:.5rem 0}
"""


@dataclass(frozen=True)
class ReportContext:
    """Who and what the report is about."""

    title: str
    model: str
    status: str
    total: int  # rows in the data set (the summary may hold fewer while the job runs)
    row_link: RowLink | None = None
    unexplained: Sequence[UnexplainedRow] = ()


def _e(value: object) -> str:
    return html.escape(str(value))


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _number(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.4g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], raw: bool = False) -> str:
    """A table; cells are escaped unless `raw` (then they are trusted HTML)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


def _summary(summary: AuditSummary | None, context: ReportContext) -> str:
    explained = 0 if summary is None else len(summary.rows)
    rows = [
        ("model", context.model),
        ("status", context.status),
        ("rows explained", f"{explained} of {context.total}"),
        ("rows not explained", str(len(context.unexplained))),
    ]
    if summary is not None:
        rows += [("methods", ", ".join(summary.methods)), ("flagged rows", str(len(summary.flags)))]
    return _section("summary", "Summary", _table(("", "value"), rows))


def _row_cell(row: int, row_link: RowLink | None) -> str:
    """A row's label, linked to its result when there is a link, as an anchor target."""
    label = f"row {row}"
    cell = f'<a href="{_e(row_link(row))}">{label}</a>' if row_link else label
    return f'<span id="row-{row}">{cell}</span>'


def _unexplained(context: ReportContext) -> str:
    note = (
        '<p class="note">The model\'s outputs or gradients were NaN or infinite for these rows '
        "or for their perturbations, so they have no explanations and every other section "
        f"leaves them out. At most {MAX_FLAGGED} rows.</p>"
    )
    rows = [
        (_row_cell(item.row, context.row_link), _e(item.prediction or "–"), _e(item.reason))
        for item in context.unexplained[:MAX_FLAGGED]
    ]
    table = _table(("row", "prediction", "reason"), rows, raw=True)
    return _section("unexplained", "Rows not explained", note, table)


def _importance(summary: AuditSummary) -> str:
    header = ["feature", *summary.methods]
    rows = [
        [feature, *(_number(summary.importance[m][j]) for m in summary.methods)]
        for j, feature in enumerate(summary.features)
    ]
    note = (
        '<p class="note">Mean |attribution| per feature '
        "(bars: each method normalised to sum 1).</p>"
    )
    return _section(
        "importance",
        "Global importance",
        note + _left_out(summary),
        _image(plots.importance_png(summary), "global importance per method"),
        _table(header, rows),
    )


def _distributions(summary: AuditSummary) -> str:
    parts = [
        f"<h3>{_e(m)}</h3>"
        + _image(plots.beeswarm_png(summary, m), f"{m} attributions per feature")
        for m in summary.methods
    ]
    note = '<p class="note">One point per row; colour: the feature\'s value, low to high.</p>'
    return _section("distributions", "Attribution distributions", note, *parts)


def _classes(summary: AuditSummary, method: str) -> str:
    by_class = summary.importance_by_class[method]
    counts = {
        label: int((summary.predicted == summary.classes.index(label)).sum()) for label in by_class
    }
    header = ["feature", *(f"predicted {label} (n={counts[label]})" for label in by_class)]
    rows = [
        [feature, *(_number(values[j]) for values in by_class.values())]
        for j, feature in enumerate(summary.features)
    ]
    return _section(
        "classes",
        f"Importance per class ({method})",
        _image(plots.class_importance_png(summary, method), "importance per predicted class"),
        _table(header, rows),
    )


def _rate_ratio(summary: AuditSummary, disparity: Disparity) -> str:
    """The disparate impact sentence: on favourable outcomes when the model names its adverse
    class (the four-fifths rule compares selection rates), else on the tracked class."""
    label = _e(summary.classes[summary.scored_class])
    outcome = (
        f"predicted {label}"
        if summary.adverse is None
        else f"favourable outcomes (predicted other than {label})"
    )
    if disparity.rate_ratio is None:
        return f"No segment has any {outcome}: their ratio is undefined."
    ratio = f"<strong>{disparity.rate_ratio:.2f}</strong>"
    if summary.adverse is None:
        return f"Ratio of the lowest to the highest predicted {label} rate: {ratio}."
    return (
        f"Ratio of the lowest to the highest rate of {outcome}: {ratio} (below 0.8 fails the"
        " four-fifths rule of thumb)."
    )


def _left_out(summary: AuditSummary) -> str:
    """A note on the rows the attribution views leave out, when there are any."""
    count = summary.unreadable_rows
    if not count:
        return ""
    label = _e(summary.classes[summary.scored_class])
    return (
        f'<p class="note" id="left-out">{count} of {len(summary.rows)} rows were explained '
        f"toward another class than {label}, and their attributions cannot be read toward "
        f"{label} (the model's scores are logits or it has more than two classes): the "
        "attribution views (importance, distributions, segments, agreement) leave them out. "
        f"Audit with <code>target</code> {label} to include them.</p>"
    )


def _segments(summary: AuditSummary, disparity: Disparity) -> str:
    label = summary.classes[summary.scored_class]
    gaps = {name for name, _ in disparity.largest_gaps(summary.features, GAP_HIGHLIGHTS)}
    extremes = {disparity.highest, disparity.lowest}
    header = ["segment", "rows", f"mean P({label})", f"predicted {label} rate"]
    header += [f"{f}{' ▲' if f in gaps else ''}" for f in summary.features]
    rows = []
    for segment in disparity.segments:
        mark = ' class="gap"' if segment.label in extremes else ""
        cells = [
            f"<span{mark}>{_e(segment.label)}</span>",
            str(segment.count),
            f"<span{mark}>{segment.mean_adverse_probability:.3f}</span>",
            f"{segment.adverse_rate:.3f}",
        ]
        means = segment.mean_attribution[disparity.method]
        cells += [
            f'<span class="gap">{_number(v)}</span>' if f in gaps else _number(v)
            for f, v in zip(summary.features, means, strict=True)
        ]
        rows.append(cells)
    gap_rows = [
        (name, _number(gap))
        for name, gap in disparity.largest_gaps(summary.features, len(summary.features))
    ]
    headline = (
        f'<p id="disparity-headline"><span class="gap">{_e(disparity.highest)}</span> '
        "has the highest "
        f"mean P({_e(label)}) ({max(s.mean_adverse_probability for s in disparity.segments):.3f}), "
        f'<span class="gap">{_e(disparity.lowest)}</span> the lowest: a gap of '
        f"<strong>{disparity.probability_gap:.3f}</strong>. {_rate_ratio(summary, disparity)}</p>"
    )
    caption = (
        f'<p class="note">Per segment: rows, mean predicted P({_e(label)}), the share predicted '
        f"{_e(label)}, and the mean {_e(disparity.method)} attribution of each feature toward "
        f"{_e(label)} (▲ and shaded: the {GAP_HIGHLIGHTS} largest gaps between segments).</p>"
    )
    return _section(
        "segments",
        f"Segments and disparities by {disparity.column}",
        headline,
        _image(
            plots.segment_probability_png(disparity, label), "mean adverse probability per segment"
        ),
        _image(
            plots.segment_attribution_png(disparity, summary.features),
            "mean attribution per segment",
        ),
        caption,
        _table(header, rows, raw=True),
        f"<h3>Largest gaps in mean {_e(disparity.method)} attribution between segments</h3>",
        _table(("feature", "max − min over segments"), gap_rows),
    )


def _agreement(summary: AuditSummary) -> str:
    if not summary.agreement:
        return _section(
            "agreement", "Method agreement", "<p>Only one method: nothing to compare.</p>"
        )
    rows = []
    for (a, b), values in summary.agreement.items():
        finite = values[np.isfinite(values)]
        stats = (
            (np.median(finite), finite.mean(), (finite < LOW_AGREEMENT).mean())
            if len(finite)
            else (np.nan,) * 3
        )
        rows.append((f"{a} vs {b}", *(_number(float(s)) for s in stats)))
    return _section(
        "agreement",
        "Method agreement",
        _image(plots.agreement_png(summary), "Spearman correlation per method pair"),
        _table(("pair", "median Spearman", "mean", f"share below {LOW_AGREEMENT}"), rows),
    )


def _fidelity(summary: AuditSummary) -> str:
    rows = []
    for method, values in summary.quality.items():
        for key, series in values.items():
            finite = series[np.isfinite(series)]
            if len(finite):
                rows.append(
                    (
                        f"{method} {key}",
                        *(_number(float(q)) for q in np.quantile(finite, [0.1, 0.5, 0.9])),
                    )
                )
    return _section(
        "fidelity",
        "Surrogate fidelity and quality",
        _image(plots.fidelity_png(summary), "surrogate fidelity distribution"),
        _table(("quality figure", "10th pct", "median", "90th pct"), rows),
    )


def _predictions(summary: AuditSummary) -> str:
    counts = [
        (label, str(int((summary.predicted == i).sum()))) for i, label in enumerate(summary.classes)
    ]
    return _section(
        "predictions",
        "Predictions",
        _image(plots.prediction_png(summary), "prediction distribution"),
        _table(("predicted class", "rows"), counts),
    )


def _flagged(summary: AuditSummary, row_link: RowLink | None) -> str:
    note = (
        f'<p class="note">Tree fidelity R² below {LOW_FIDELITY}, IG convergence delta above '
        f"{HIGH_DELTA} × max(1, |score|), or a mean Spearman agreement below {LOW_AGREEMENT}. "
        f"At most {MAX_FLAGGED} rows, most reasons first.</p>"
    )
    if not summary.flags:
        return _section("flagged", "Flagged rows", note, "<p>No row was flagged.</p>")
    rows = [
        (_row_cell(flag.row, row_link), _e("; ".join(flag.reasons)))
        for flag in summary.flags[:MAX_FLAGGED]
    ]
    return _section("flagged", "Flagged rows", note, _table(("row", "reasons"), rows, raw=True))


def primary_method(summary: AuditSummary) -> str:
    """The method the per-class and per-segment views use: SHAP first when present."""
    disparity_method = summary.disparity.method if summary.disparity else None
    return disparity_method or next(
        (m for m in ("shap", "integrated_gradients", "lime") if m in summary.methods),
        summary.methods[0],
    )


def render_report(summary: AuditSummary | None, context: ReportContext) -> str:
    """The whole report as one HTML document (no external resources, no scripts).

    `summary` is None when no row was explained: the report then has the summary and the
    rows not explained only.
    """
    sections = [_summary(summary, context)]
    if context.unexplained:
        sections.append(_unexplained(context))
    if summary is not None:
        sections += [
            _importance(summary),
            _distributions(summary),
            _classes(summary, primary_method(summary)),
        ]
        if summary.disparity is not None:
            sections.append(_segments(summary, summary.disparity))
        sections += [
            _agreement(summary),
            _fidelity(summary),
            _predictions(summary),
            _flagged(summary, context.row_link),
        ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{_e(context.title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{_e(context.title)}</h1>{''.join(sections)}</body></html>"
    )


def audit_report(
    handle: ModelHandle,
    documents: Iterable[dict[str, Any]],
    *,
    title: str,
    status: str,
    total: int,
    segment_by: str | None = None,
    row_link: RowLink | None = None,
) -> str:
    """Summarise a tabular model's audit documents (read once, never all held) and render the
    report."""
    tabular = handle.spec.tabular
    if tabular is None:
        raise ValueError("audit reports need a tabular model")
    unexplained: list[UnexplainedRow] = []
    try:
        summary: AuditSummary | None = summarise(
            documents,
            handle.feature_names,
            list(handle.spec.classes),
            tabular.adverse_class,
            dict(tabular.categorical),
            segment_by,
            complementary_scores(handle),
            unexplained,
        )
    except NothingExplained:
        summary = None
    model = f"{handle.name} {handle.spec.version} (sha256 {handle.sha256[:12]})"
    context = ReportContext(title, model, status, total, row_link, unexplained)
    return render_report(summary, context)
