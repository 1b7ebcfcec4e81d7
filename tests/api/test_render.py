"""Heatmap and bar-chart PNGs (explainer.render): sizes, modes, colours, text, validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explainer.render import (
    COLOUR_BAR_HEIGHT,
    DIVERGING_COLORMAPS,
    RenderError,
    bar_chart_png,
    heatmap_png,
    heatmap_size,
)
from explainer.render.bars import NEUTRAL_BAR
from explainer.render.colours import Scale, to_rgb
from explainer.render.heatmap import MIN_PNG_WIDTH


def open_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((64, 64), (256, 256 + COLOUR_BAR_HEIGHT)),
        ((16, 16), (256, 296)),
        ((200, 300), (300, 240)),
        ((512, 16), (MIN_PNG_WIDTH, 512 + COLOUR_BAR_HEIGHT)),  # widened for the bar's labels
    ],
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


def _colours(data: bytes) -> set[tuple[int, int, int]]:
    image = open_png(data).convert("RGB")
    return {pixel for _, pixel in image.getcolors(image.width * image.height) or []}  # type: ignore[misc]


def test_unsigned_scale_starts_at_zero() -> None:
    """A constant map is labelled 0..v, not v..v+1, and is drawn at full strength."""
    assert Scale.for_values(np.full((8, 8), 5.0), symmetric=False) == Scale(0.0, 5.0)
    assert Scale.for_values(np.array([-2.0, 1.0, np.nan]), symmetric=True) == Scale(-2.0, 2.0)
    grey = np.full((3, 8, 8), 0.5)
    uniform = open_png(heatmap_png(np.full((8, 8), 5.0), image=grey, alpha=1.0))
    assert uniform.getpixel((10, 10)) == tuple(to_rgb(np.array([1.0]), "viridis")[0])


def test_weakest_positive_value_still_shows_on_the_overlay() -> None:
    values = np.linspace(0.1, 1.0, 64).reshape(8, 8)
    grey = np.full((3, 8, 8), 0.5)
    image = open_png(heatmap_png(values, image=grey, alpha=1.0))
    assert image.getpixel((2, 2)) != (128, 128, 128)  # value 0.1: opacity 0.1, not 0


@pytest.mark.parametrize("colormap", DIVERGING_COLORMAPS)
def test_diverging_colormap_is_symmetric_for_non_negative_maps(colormap: str) -> None:
    """Near-zero saliency takes the colour of zero (not "away"), and one tiny negative value
    changes nothing but its own pixel."""
    values = np.full((8, 8), 0.01)
    values[:, 4:] = 1.0
    image = open_png(heatmap_png(values, style="map", colormap=colormap))
    zero = to_rgb(np.array([0.5]), colormap)[0].astype(int)
    assert np.abs(np.array(image.getpixel((10, 10))) - zero).max() <= 6
    grey = np.full((3, 8, 8), 0.5)
    flipped = values.copy()
    flipped[7, 0] = -1e-9
    plain = open_png(heatmap_png(values, image=grey, colormap=colormap, alpha=1.0))
    tiny = open_png(heatmap_png(flipped, image=grey, colormap=colormap, alpha=1.0))
    assert plain.crop((0, 0, 256, 200)).tobytes() == tiny.crop((0, 0, 256, 200)).tobytes()


def test_bar_chart_of_a_magnitude_is_neutral() -> None:
    """A magnitude (saliency's |gradient|) has no direction: no "toward" colour, a title that
    says so. Signed values drawn without the flag keep their colours even when all positive
    (saliency with abs=false)."""
    values = np.array([0.5, 0.2, 0.1])
    names = ["x", "y", "z"]
    toward = tuple(to_rgb(np.array([0.9]), "RdBu_r")[0])
    text = {"method": "saliency", "target": "default"}
    magnitude = _colours(bar_chart_png(values, names, text=text, magnitude=True))
    assert toward not in magnitude
    assert tuple(round(255 * c) for c in NEUTRAL_BAR) in magnitude
    assert toward in _colours(bar_chart_png(values, names, text=text))
    assert toward in _colours(bar_chart_png(values, names, text={"method": "shap"}))


@pytest.mark.parametrize(
    "name", ["debt ($) / income ($)", "cost_$_total_$_x", "b^2$ and $c", "$^$", r"a \$ b"]
)
def test_bar_chart_draws_texts_literally(name: str) -> None:
    """A "$" in a feature name, title or label is a dollar sign, never mathtext (nor a 500)."""
    png = bar_chart_png(
        np.array([1.0, -0.5]), [name, "y"], title=f"{name}: toward $", xlabel=f"({name})"
    )
    assert open_png(png).width == 640


def test_a_narrow_map_is_centred_on_a_band_wide_enough_for_its_labels() -> None:
    """A 512 x 16 map is drawn 16 pixels wide in the middle of a white band: the colour bar
    below it keeps its labels."""
    values = np.linspace(-1.0, 1.0, 512 * 16).reshape(512, 16)
    image = open_png(heatmap_png(values, style="map")).convert("RGB")
    assert image.size == (MIN_PNG_WIDTH, 512 + COLOUR_BAR_HEIGHT)
    left = (MIN_PNG_WIDTH - 16) // 2
    row = [image.getpixel((x, 0)) for x in range(MIN_PNG_WIDTH)]
    assert set(row[:left] + row[left + 16 :]) == {(255, 255, 255)}
    assert (255, 255, 255) not in row[left : left + 16]  # the map's first row: dark blue
    bar = image.crop((0, 512, MIN_PNG_WIDTH, 512 + COLOUR_BAR_HEIGHT))
    labels = bar.crop((0, 20, MIN_PNG_WIDTH, COLOUR_BAR_HEIGHT))
    dark = [
        x
        for x in range(MIN_PNG_WIDTH)
        for y in range(labels.height)
        if sum(labels.getpixel((x, y))) < 200
    ]
    assert min(dark) < 30 and max(dark) > MIN_PNG_WIDTH - 30  # "-1" at the left, "1" at the right
