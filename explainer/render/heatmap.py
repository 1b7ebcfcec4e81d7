"""Heatmap PNGs of image attributions: the map alone or blended on the input, with a colour bar.

Layout: the `(H, W)` map is upscaled by the smallest integer factor that makes its longer
side at least `MIN_MAP_SIDE` pixels (nearest neighbour, so every model pixel stays a crisp
block; a 64 x 64 map becomes 256 x 256), above a `COLOUR_BAR_HEIGHT` pixel colour bar
labelled with the scale's minimum and maximum. A map narrower than `MIN_PNG_WIDTH` is
centred on a white band that wide, so that the bar's labels fit. The PNG is RGB.

Signed maps use a diverging colour map, maps with no negative value a sequential one. The
scale always starts from zero: symmetric, [-max|v|, max|v|] with white at zero, for signed
maps and for any map drawn with a diverging colour map; [0, max] otherwise. In the overlay
style each pixel's opacity is `alpha` times the value's strength |v| / max|v|, so weak
attributions leave the input visible and a uniform map covers it evenly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from explainer.render.colours import (
    STYLES,
    Scale,
    check_alpha,
    check_choice,
    is_signed,
    is_symmetric,
    pick_colormap,
    to_rgb,
)
from explainer.render.png import encode_png

MIN_MAP_SIDE = 256
MIN_PNG_WIDTH = 192  # room for three colour-bar labels such as "-1.23e-05"
COLOUR_BAR_HEIGHT = 40
_BAR_MARGIN = 8
_BAR_THICKNESS = 12
_FONT_SIZE = 12


def heatmap_size(height: int, width: int) -> tuple[int, int]:
    """`(width, height)` of the PNG drawn for an `(height, width)` map."""
    map_width, map_height = _map_size(height, width)
    return max(map_width, MIN_PNG_WIDTH), map_height + COLOUR_BAR_HEIGHT


def _map_size(height: int, width: int) -> tuple[int, int]:
    """`(width, height)` of the upscaled map."""
    factor = max(1, math.ceil(MIN_MAP_SIDE / max(height, width)))
    return width * factor, height * factor


def _image_rgb(image: np.ndarray) -> np.ndarray:
    """`(C, H, W)` pixels (float in [0, 1] or uint8) -> `(H, W, 3)` float in [0, 1]."""
    pixels = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image
    pixels = np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0).transpose(1, 2, 0)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, :3]


def _colour_bar(width: int, scale: Scale, colormap: str) -> Image.Image:
    bar = Image.new("RGB", (width, COLOUR_BAR_HEIGHT), "white")
    inner = max(1, width - 2 * _BAR_MARGIN)
    gradient = to_rgb(np.linspace(0.0, 1.0, inner), colormap)[None, :, :]
    strip = Image.fromarray(np.repeat(gradient, _BAR_THICKNESS, axis=0), "RGB")
    bar.paste(strip, (_BAR_MARGIN, 4))
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default(size=_FONT_SIZE)
    top = 4 + _BAR_THICKNESS + 3
    labels = [(f"{scale.low:.3g}", "la"), (f"{scale.high:.3g}", "ra")]
    positions = [_BAR_MARGIN, width - _BAR_MARGIN]
    if scale.low < 0:
        labels.append(("0", "ma"))
        positions.append(width // 2)
    for (text, anchor), x in zip(labels, positions, strict=True):
        draw.text((x, top), text, fill="black", font=font, anchor=anchor)
    return bar


def heatmap_png(
    attributions: np.ndarray,
    *,
    image: np.ndarray | None = None,
    style: str = "overlay",
    colormap: str | None = None,
    alpha: float = 0.6,
    text: Mapping[str, str] | None = None,
) -> bytes:
    """Render an `(H, W)` map as PNG bytes.

    `image` is the input `(C, H, W)` (float in [0, 1] or uint8) for `style="overlay"`;
    without it the overlay falls back to the map alone. `colormap` None picks RdBu_r for
    signed maps and viridis otherwise. Raises RenderError (422) for a bad style, colour map
    or alpha.
    """
    check_choice("style", style, STYLES)
    check_alpha(alpha)
    values = np.asarray(attributions, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {values.shape}")
    signed = is_signed(values)
    name = pick_colormap(colormap, signed)
    scale = Scale.for_values(values, is_symmetric(name, signed))
    colours = to_rgb(scale.positions(values), name).astype(np.float64) / 255.0
    if style == "overlay" and image is not None:
        weight = (alpha * scale.strengths(values))[:, :, None]
        colours = (1.0 - weight) * _image_rgb(image) + weight * colours
    pixels = np.asarray(np.round(colours * 255), dtype=np.uint8)
    height, width = values.shape
    out_width, out_height = heatmap_size(height, width)
    map_width, map_height = _map_size(height, width)
    picture = Image.fromarray(pixels, "RGB").resize(
        (map_width, map_height), Image.Resampling.NEAREST
    )
    canvas = Image.new("RGB", (out_width, out_height), "white")
    canvas.paste(picture, ((out_width - map_width) // 2, 0))
    canvas.paste(_colour_bar(out_width, scale, name), (0, out_height - COLOUR_BAR_HEIGHT))
    chunks = {"style": style, "colormap": name, **(text or {})}
    return encode_png(canvas, chunks)
