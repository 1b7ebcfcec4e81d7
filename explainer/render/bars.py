"""Horizontal bar charts of tabular attributions (matplotlib, Agg canvas, no pyplot).

The `MAX_BARS` features with the largest |attribution| are drawn, largest at the top;
positive bars take the colour map's high end, negative ones its low end. The PNG is RGB,
`BAR_CHART_WIDTH` pixels wide and 60 + 22 pixels per bar tall (at 100 dpi).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from explainer.render.colours import COLORMAPS, DIVERGING_COLORMAPS, check_choice, to_rgb
from explainer.render.png import encode_png

MAX_BARS = 15
BAR_CHART_WIDTH = 640
_DPI = 100


def bar_chart_png(
    attributions: np.ndarray,
    feature_names: Sequence[str],
    *,
    colormap: str | None = None,
    title: str = "",
    xlabel: str = "attribution",
    text: Mapping[str, str] | None = None,
) -> bytes:
    """Render one value per feature as a horizontal bar chart PNG."""
    values = np.nan_to_num(np.asarray(attributions, dtype=np.float64), nan=0.0)
    if values.shape != (len(feature_names),):
        raise ValueError(f"expected {len(feature_names)} values, got shape {values.shape}")
    name = colormap or DIVERGING_COLORMAPS[0]
    check_choice("colormap", name, COLORMAPS)
    order = np.argsort(-np.abs(values), kind="stable")[:MAX_BARS][::-1]
    low, high = (to_rgb(np.array([0.1, 0.9]), name) / 255.0).tolist()
    colours = [high if values[i] >= 0 else low for i in order]
    height_px = 60 + 22 * len(order)
    figure = Figure(figsize=(BAR_CHART_WIDTH / _DPI, height_px / _DPI), dpi=_DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.barh([str(feature_names[i]) for i in order], values[order], color=colours)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel(xlabel)
    axes.tick_params(labelsize=8)
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
    chunks = {"colormap": name, **(text or {})}
    return encode_png(image.convert("RGB"), chunks)
