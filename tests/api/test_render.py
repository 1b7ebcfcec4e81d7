"""Heatmap and bar-chart PNGs (explainer.render): sizes, modes, colours, text, validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explainer.render import (
    COLOUR_BAR_HEIGHT,
    RenderError,
    bar_chart_png,
    heatmap_png,
    heatmap_size,
)


def open_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


@pytest.mark.parametrize(
    ("shape", "size"),
    [((64, 64), (256, 256 + COLOUR_BAR_HEIGHT)), ((16, 16), (256, 296)), ((200, 300), (300, 240))],
)
def test_heatmap_size(shape: tuple[int, int], size: tuple[int, int]) -> None:
    assert heatmap_size(*shape) == size
    values = np.random.default_rng(0).normal(size=shape)
    assert open_png(heatmap_png(values, style="map")).size == size


def test_text_chunks_and_default_colormaps() -> None:
    signed = np.linspace(-1, 1, 64 * 64).reshape(64, 64)
    image = open_png(heatmap_png(signed, style="map", text={"model": "m", "target": "t"}))
    assert image.mode == "RGB"
    assert image.text["model"] == "m" and image.text["target"] == "t"  # type: ignore[attr-defined]
    assert image.text["colormap"] == "RdBu_r"  # type: ignore[attr-defined]
    magnitude = open_png(heatmap_png(np.abs(signed), style="map"))
    assert magnitude.text["colormap"] == "viridis"  # type: ignore[attr-defined]


def test_zero_is_white_on_a_diverging_map() -> None:
    values = np.zeros((8, 8))
    values[0, 0], values[7, 7] = -1.0, 1.0
    image = open_png(heatmap_png(values, style="map")).convert("RGB")
    centre = image.getpixel((128, 128))  # a zero-valued model pixel, scaled 32x
    assert all(channel > 240 for channel in centre)  # type: ignore[union-attr]


def test_overlay_with_alpha_zero_shows_the_input() -> None:
    pixels = np.full((3, 8, 8), 0.5, dtype=np.float32)
    pixels[0] = 1.0
    values = np.random.default_rng(1).normal(size=(8, 8))
    image = open_png(heatmap_png(values, image=pixels, style="overlay", alpha=0.0))
    assert image.getpixel((10, 10)) == (255, 128, 128)
    blended = open_png(heatmap_png(values, image=pixels, style="overlay", alpha=1.0))
    assert blended.tobytes() != image.tobytes()


@pytest.mark.parametrize(
    "kwargs",
    [{"style": "sketch"}, {"colormap": "jet"}, {"alpha": 1.5}, {"alpha": -0.1}],
)
def test_bad_render_options_are_422(kwargs: dict[str, object]) -> None:
    with pytest.raises(RenderError) as error:
        heatmap_png(np.zeros((8, 8)), **kwargs)  # type: ignore[arg-type]
    assert error.value.status == 422 and error.value.errors


def test_non_finite_values_do_not_break_rendering() -> None:
    values = np.full((8, 8), np.nan)
    values[0, 0] = np.inf
    assert open_png(heatmap_png(values, style="map")).size == (256, 296)


def test_bar_chart() -> None:
    names = [f"feature {i}" for i in range(30)]
    values = np.random.default_rng(2).normal(size=30)
    image = open_png(bar_chart_png(values, names, title="shap", text={"method": "shap"}))
    assert image.mode == "RGB" and image.width == 640
    assert image.height == 60 + 22 * 15  # at most 15 bars
    assert image.text["method"] == "shap"  # type: ignore[attr-defined]
    with pytest.raises(RenderError):
        bar_chart_png(values, names, colormap="jet")
