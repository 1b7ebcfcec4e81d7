"""Turn explanations into what people and programs read: JSON documents, heatmap PNGs, bar
charts and reason codes (no Flask).

`heatmap_png` draws an image model's `(H, W)` attribution map, alone or blended on the
input; `bar_chart_png` draws a tabular model's attributions as horizontal bars. Both
write PNG text chunks naming the model, version, method and target.
"""

from explainer.render.bars import bar_chart_png
from explainer.render.colours import (
    COLORMAPS,
    DIVERGING_COLORMAPS,
    SEQUENTIAL_COLORMAPS,
    STYLES,
    RenderError,
)
from explainer.render.document import (
    instance_document,
    library_versions,
    model_reference,
    prediction_document,
    provenance,
)
from explainer.render.heatmap import COLOUR_BAR_HEIGHT, MIN_MAP_SIDE, heatmap_png, heatmap_size
from explainer.render.reasons import reason_codes

__all__ = [
    "COLORMAPS",
    "COLOUR_BAR_HEIGHT",
    "DIVERGING_COLORMAPS",
    "MIN_MAP_SIDE",
    "SEQUENTIAL_COLORMAPS",
    "STYLES",
    "RenderError",
    "bar_chart_png",
    "heatmap_png",
    "heatmap_size",
    "instance_document",
    "library_versions",
    "model_reference",
    "prediction_document",
    "provenance",
    "reason_codes",
]
