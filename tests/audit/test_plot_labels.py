"""The report's plots show labels taken from the data as they are: `$` is not mathtext."""

from __future__ import annotations

from typing import Any

import matplotlib
import pytest
from matplotlib.figure import Figure

from explainer.audit import plots, summarise
from explainer.audit.aggregate import AuditSummary
from explainer.audit.report import ReportContext, render_report

CLASSES = ["repaid", "default"]
# Invalid mathtext (`$^$`, an unknown command), and a valid expression that would be typeset.
LABELS = ["price in $^$", r"cost $\nocommand$", "$5k-$10k", r"50% \$"]


def document(row: int, features: list[str], segment: str) -> dict[str, Any]:
    p = 0.2 + 0.1 * (row % 5)
    predicted = int(p >= 0.5)
    methods = ("shap", "integrated_gradients", "lime", "tree")
    return {
        "row": row,
        "seed": 0,
        "input": {name: float(row % 7 + k) for k, name in enumerate(features)},
        "prediction": {
            "label": CLASSES[predicted],
            "index": predicted,
            "probabilities": [1 - p, p],
        },
        "target": {"label": "default", "index": 1},
        "score": p,
        "segment": segment,
        "methods": {
            method: {
                "attributions": [0.3 * (row % 3 - 1), -0.2, 0.1 * k],
                "quality": {"fidelity_r2": 0.4}
                if method == "tree"
                else {"local_r2": 0.6}
                if method == "lime"
                else {},
            }
            for k, method in enumerate(methods)
        },
    }


@pytest.fixture(scope="module")
def summary() -> AuditSummary:
    features = ["income ($)", LABELS[0], LABELS[1]]
    documents = [document(row, features, LABELS[row % len(LABELS)]) for row in range(24)]
    return summarise(documents, features, CLASSES, adverse=1, segment_by="band $^$")


def test_labels_with_dollar_signs_are_drawn_literally(summary: AuditSummary) -> None:
    assert summary.disparity is not None
    assert {s.label for s in summary.disparity.segments} == set(LABELS)
    html = render_report(summary, ReportContext("Audit", "m", "completed", 24))
    assert html.count("data:image/png;base64,") >= 8
    assert "price in $^$" in html  # the tables show the labels as they are too
    assert matplotlib.rcParams["text.parse_math"]  # the setting is changed for the plots only


def test_each_plot_parses_no_mathtext(
    summary: AuditSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    png = plots._png

    def checked(figure: Figure) -> bytes:
        seen.extend(text.get_parse_math() for text in figure.findobj(matplotlib.text.Text))
        return png(figure)

    monkeypatch.setattr(plots, "_png", checked)
    disparity = summary.disparity
    assert disparity is not None
    for image in (
        plots.importance_png(summary),
        plots.beeswarm_png(summary, "shap"),
        plots.class_importance_png(summary, "shap"),
        plots.segment_probability_png(disparity, "default $^$"),
        plots.segment_attribution_png(disparity, summary.features),
        plots.agreement_png(summary),
        plots.fidelity_png(summary),
        plots.prediction_png(summary),
    ):
        assert image.startswith(b"\x89PNG")
    assert seen and not any(seen)
