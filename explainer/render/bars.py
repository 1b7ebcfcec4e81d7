"""Horizontal bar charts of tabular attributions (matplotlib, Agg canvas, no pyplot).

The `MAX_BARS` features with the largest |attribution| are drawn, largest at the top;
positive bars take the colour map's high end, negative ones its low end. Magnitudes
(`magnitude=True`: saliency's |gradient|, SmoothGrad) have no direction: their bars are all
`NEUTRAL_BAR` grey and the title says they are magnitudes.
Texts (feature names, labels, units) are drawn as they are, never as mathtext. The PNG is
RGB, `BAR_CHART_WIDTH` pixels wide and 60 + 22 pixels per bar tall (at 100 dpi).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from explainer.render.colours import COLORMAPS, DIVERGING_COLORMAPS, check_choice, to_rgb
from explainer.render.png import encode_png

MAX_BARS = 15
BAR_CHART_WIDTH = 640
NEUTRAL_BAR = (0.45, 0.45, 0.45)
_DPI = 100


def _magnitude_title(text: Mapping[str, str]) -> str:
    method = f"{text['method']}: " if "method" in text else ""
    target = f" of the {text['target']} score" if "target" in text else ""
    return f"{method}sensitivity{target} (magnitude, no direction)"


def bar_chart_png(
    attributions: np.ndarray,
    feature_names: Sequence[str],
    *,
    colormap: str | None = None,
    title: str = "",
    xlabel: str = "attribution",
    text: Mapping[str, str] | None = None,
    magnitude: bool = False,
) -> bytes:
    """Render one value per feature as a horizontal bar chart PNG.

    `text` holds the PNG's text chunks (`method`, `target` name them in titles). For a
    `magnitude` (values with no sign, the explanation's `magnitude` flag) the bars are
    neutral and the title says so in place of `title`.
    """
    values = np.nan_to_num(np.asarray(attributions, dtype=np.float64), nan=0.0)
    if values.shape != (len(feature_names),):
        raise ValueError(f"expected {len(feature_names)} values, got shape {values.shape}")
    name = colormap or DIVERGING_COLORMAPS[0]
    check_choice("colormap", name, COLORMAPS)
    chunks = {"colormap": name, **(text or {})}
    order = np.argsort(-np.abs(values), kind="stable")[:MAX_BARS][::-1]
    if magnitude:
        colours = [NEUTRAL_BAR] * len(order)
        title = _magnitude_title(chunks)
    else:
        low, high = (to_rgb(np.array([0.1, 0.9]), name) / 255.0).tolist()
        colours = [high if values[i] >= 0 else low for i in order]
    with matplotlib.rc_context({"text.parse_math": False}):  # names may hold "$"
        image = _draw(values[order], [str(feature_names[i]) for i in order], colours, title, xlabel)
    return encode_png(image, chunks)


def _draw(
    values: np.ndarray, names: list[str], colours: Sequence[object], title: str, xlabel: str
) -> Image.Image:
    """The bars, bottom to top, as an RGB image."""
    height_px = 60 + 22 * len(values)
    figure = Figure(figsize=(BAR_CHART_WIDTH / _DPI, height_px / _DPI), dpi=_DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.barh(names, values, color=colours)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel(xlabel)
    axes.tick_params(labelsize=8)
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
    return image.convert("RGB")
