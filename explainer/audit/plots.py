"""The audit report's plots: matplotlib figures (Agg, no pyplot state) encoded as PNG bytes."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import ParamSpec

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from explainer.audit.aggregate import AuditSummary, Disparity

MAX_POINTS = 1500  # beeswarm points per feature (a seeded subsample beyond)
DPI = 90

P = ParamSpec("P")


def _literal(plot: Callable[P, bytes]) -> Callable[P, bytes]:
    """Draw `plot` with its texts shown as they are: labels come from the data (segment
    values, column and feature names), where a `$` must not start mathtext, which an invalid
    expression (`$^$`) would make fail. Texts take the setting when they are created, tick
    labels possibly while the figure is saved: both happen within the plot function."""

    @functools.wraps(plot)
    def literal(*args: P.args, **kwargs: P.kwargs) -> bytes:
        with matplotlib.rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)

    return literal


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _height(rows: float) -> float:
    return 1.2 + 0.35 * rows


@_literal
def importance_png(summary: AuditSummary) -> bytes:
    """Mean |attribution| per feature and method, each method normalised to sum 1."""
    features, methods = summary.features, summary.methods
    figure = Figure(figsize=(7.5, _height(len(features) * max(1, len(methods)) / 2.5)))
    axes = figure.add_subplot()
    height = 0.8 / len(methods)
    y = np.arange(len(features))
    for k, method in enumerate(methods):
        values = summary.importance[method]
        total = np.nansum(values)
        axes.barh(y + k * height, values / total if total > 0 else values, height, label=method)
    axes.set_yticks(y + 0.4 - height / 2, features)
    axes.invert_yaxis()
    axes.set_xlabel("share of mean |attribution|")
    axes.legend(fontsize="small", loc="lower right")
    return _png(figure)


@_literal
def beeswarm_png(summary: AuditSummary, method: str) -> bytes:
    """Each row's attribution per feature, coloured by the feature's value (rank within it)."""
    values = summary.attributions[method]
    order = np.argsort(-summary.importance[method], kind="stable")
    rng = np.random.default_rng(0)
    rows = np.arange(len(values))
    if len(rows) > MAX_POINTS:
        rows = np.sort(rng.choice(rows, MAX_POINTS, replace=False))
    figure = Figure(figsize=(7.5, _height(len(order))))
    axes = figure.add_subplot()
    points = None
    for position, j in enumerate(order):
        x = values[rows, j]
        colour = summary.inputs[rows, j].argsort().argsort() / max(1, len(rows) - 1)
        jitter = rng.uniform(-0.3, 0.3, len(rows))
        points = axes.scatter(x, position + jitter, c=colour, cmap="coolwarm", s=6, alpha=0.7)
    axes.set_yticks(np.arange(len(order)), [summary.features[j] for j in order])
    axes.invert_yaxis()
    axes.axvline(0.0, color="grey", linewidth=0.8)
    axes.set_xlabel(f"{method} attribution")
    if points is not None:
        bar = figure.colorbar(points, ax=axes, ticks=[0, 1])
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("feature value")
    return _png(figure)


@_literal
def class_importance_png(summary: AuditSummary, method: str) -> bytes:
    """Mean |attribution| per feature for the rows predicted as each class."""
    by_class = summary.importance_by_class[method]
    figure = Figure(figsize=(7.5, _height(len(summary.features))))
    axes = figure.add_subplot()
    y = np.arange(len(summary.features))
    height = 0.8 / max(1, len(by_class))
    for k, (label, values) in enumerate(by_class.items()):
        axes.barh(y + k * height, values, height, label=f"predicted {label}")
    axes.set_yticks(y + 0.4 - height / 2, summary.features)
    axes.invert_yaxis()
    axes.set_xlabel(f"mean |{method} attribution|")
    axes.legend(fontsize="small", loc="lower right")
    return _png(figure)


@_literal
def segment_probability_png(disparity: Disparity, class_label: str) -> bytes:
    """Mean predicted probability of the adverse class per segment; extremes highlighted."""
    labels = [s.label for s in disparity.segments]
    values = [s.mean_adverse_probability for s in disparity.segments]
    colours = [
        "#c0392b"
        if s.label == disparity.highest
        else "#2e86c1"
        if s.label == disparity.lowest
        else "#95a5a6"
        for s in disparity.segments
    ]
    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.add_subplot()
    axes.bar(labels, values, color=colours)
    axes.set_ylabel(f"mean P({class_label})")
    axes.set_xlabel(disparity.column)
    return _png(figure)


@_literal
def segment_attribution_png(disparity: Disparity, features: list[str]) -> bytes:
    """Mean signed attribution per segment and feature (toward the adverse class)."""
    means = np.stack([s.mean_attribution[disparity.method] for s in disparity.segments])
    known = np.abs(means[np.isfinite(means)])  # a segment's means are unknown (NaN) when
    limit = float(known.max()) if known.size and known.max() > 0 else 1.0  # none is readable
    figure = Figure(figsize=(8.0, 1.5 + 0.4 * len(disparity.segments)))
    axes = figure.add_subplot()
    image = axes.imshow(means, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    axes.set_xticks(np.arange(len(features)), features, rotation=35, ha="right")
    axes.set_yticks(np.arange(len(disparity.segments)), [s.label for s in disparity.segments])
    axes.set_ylabel(disparity.column)
    figure.colorbar(image, ax=axes, label=f"mean {disparity.method} attribution")
    return _png(figure)


@_literal
def agreement_png(summary: AuditSummary) -> bytes:
    """Per-row Spearman correlation of |attributions| for each pair of methods."""
    pairs = list(summary.agreement)
    figure = Figure(figsize=(7.5, _height(len(pairs))))
    axes = figure.add_subplot()
    data = [summary.agreement[p][np.isfinite(summary.agreement[p])] for p in pairs]
    axes.boxplot(data, orientation="horizontal", tick_labels=[f"{a} vs {b}" for a, b in pairs])
    axes.invert_yaxis()
    axes.axvline(0.0, color="grey", linewidth=0.8)
    axes.set_xlabel("Spearman rank correlation of |attributions| per row")
    return _png(figure)


@_literal
def fidelity_png(summary: AuditSummary) -> bytes:
    """Distribution of the surrogates' fidelity: tree R² on held-out samples, LIME's R²."""
    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.add_subplot()
    series = [
        (label, summary.quality[method][key])
        for method, key, label in (
            ("tree", "fidelity_r2", "tree fidelity R² (held out)"),
            ("lime", "local_r2", "LIME local R²"),
        )
        if method in summary.quality
    ]
    for label, values in series:
        finite = values[np.isfinite(values)]
        axes.hist(np.clip(finite, -1.0, 1.0), bins=40, range=(-1.0, 1.0), alpha=0.6, label=label)
    axes.set_xlabel("R² (clipped to [-1, 1])")
    axes.set_ylabel("rows")
    if series:
        axes.legend(fontsize="small")
    return _png(figure)


@_literal
def prediction_png(summary: AuditSummary) -> bytes:
    """Distribution of the predicted probability of the tracked class, by predicted class."""
    scored = summary.scored_class
    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.add_subplot()
    for index, label in enumerate(summary.classes):
        mask = summary.predicted == index
        if mask.any():
            values = summary.probabilities[mask, scored]
            axes.hist(values, bins=40, range=(0.0, 1.0), alpha=0.6, label=f"predicted {label}")
    axes.set_xlabel(f"P({summary.classes[scored]})")
    axes.set_ylabel("rows")
    axes.legend(fontsize="small")
    return _png(figure)
