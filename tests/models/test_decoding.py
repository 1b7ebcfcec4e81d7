"""Decoding request instances: numbers that do not fit float32, corrupt or truncated images,
16-bit images and EXIF orientation."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import numpy as np
import pytest
from PIL import Image

from models.decoding import ImageLimits, decode_images, decode_tabular, image_to_array
from models.errors import ErrorItem, InvalidInput
from models.spec import ImageSpec, TabularSpec

HUGE = int("1" + "0" * 400)  # past the float range: float(HUGE) raises OverflowError
FLOAT32_MAX = float(np.finfo(np.float32).max)
TABULAR = TabularSpec(
    features=["income", "age_band"], categorical={"age_band": ["18-25", "26-40", "41+"]}
)
LOC = ("instances", 0)


def image_spec(height: int, width: int, channels: Literal[1, 3] = 3) -> ImageSpec:
    return ImageSpec(
        height=height, width=width, channels=channels, mean=[0.5] * channels, std=[0.25] * channels
    )


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def decode_one(spec: ImageSpec, data: bytes) -> np.ndarray:
    return decode_images(spec, [data], ImageLimits())[0]


def invalid(call: Callable[[], object]) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        call()
    return info.value


def png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG (greyscale for `(H, W)`, RGB for `(H, W, 3)`); Pillow writes no 16-bit RGB."""
    height, width = values.shape[:2]
    colour_type = 2 if values.ndim == 3 else 0
    rows = values.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def exif_block(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A big-endian EXIF block with one IFD of single-value entries (tag, TIFF type, value)."""
    body = struct.pack(">H", len(entries))
    for tag, kind, value in entries:
        count = len(value) if kind == 2 else 1
        body += struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\x00")
    return b"Exif\x00\x00MM\x00*\x00\x00\x00\x08" + body + b"\x00\x00\x00\x00"


# -- tabular values -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [HUGE, -HUGE, 1e39, -1e39, 3.5e38], ids=["huge", "-huge", "1e39", "-1e39", "3.5e38"]
)
@pytest.mark.parametrize("feature", ["income", "age_band"])
def test_a_value_beyond_float32_is_a_422_at_its_feature(value: float, feature: str) -> None:
    row = {"income": 1.0, "age_band": "18-25", feature: value}
    error = invalid(lambda: decode_tabular(TABULAR, [row]))
    assert error.status == 422
    [item] = error.errors
    assert item.loc == (*LOC, feature)
    assert item.msg.startswith("must be finite")
    assert str(value) not in item.msg and str(value) not in error.detail


def test_a_huge_integer_in_a_list_row_names_its_position() -> None:
    error = invalid(lambda: decode_tabular(TABULAR, [[1.0, HUGE]]))
    assert [item.loc for item in error.errors] == [(*LOC, 1)]


def test_the_largest_float32_is_accepted() -> None:
    rows = decode_tabular(TABULAR, [[FLOAT32_MAX, 2], [-FLOAT32_MAX, 0]])
    assert np.isfinite(rows).all()
    assert rows[:, 0].tolist() == [FLOAT32_MAX, -FLOAT32_MAX]


# -- corrupt and truncated images -----------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_every_truncation_of_an_image_is_a_422(fmt: str) -> None:
    data = encode(Image.fromarray(random_rgb(16, 16)), fmt)
    # A PNG's last 20 bytes (zlib checksum, IDAT's CRC, IEND) carry no pixels.
    for length in range(len(data) - 20):
        error = invalid(partial(decode_one, image_spec(16, 16), data[:length]))
        assert [item.loc for item in error.errors] == [LOC], length


def test_a_jpeg_cut_inside_its_header_is_corrupt_or_truncated() -> None:
    data = encode(Image.fromarray(random_rgb(16, 16)), "JPEG")
    for length in range(100, 601, 50):
        error = invalid(partial(decode_one, image_spec(16, 16), data[:length]))
        assert error.detail == "image data is corrupt or truncated"
        assert error.errors == [ErrorItem(LOC, "image data is corrupt or truncated")]


def test_an_exif_block_cut_short_is_corrupt() -> None:
    data = encode(Image.new("RGB", (16, 16)), "PNG", exif=b"Exif\x00\x00MM\x00*")
    error = invalid(lambda: decode_one(image_spec(16, 16), data))
    assert error.errors == [ErrorItem(LOC, "image data is corrupt or truncated")]


def test_a_palette_png_without_its_palette_is_corrupt() -> None:
    data = encode(Image.fromarray(random_rgb(16, 16)).convert("P"), "PNG")
    start = data.index(b"PLTE") - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    without_palette = data[:start] + data[start + 12 + length :]
    error = invalid(lambda: decode_one(image_spec(16, 16), without_palette))
    assert error.errors == [ErrorItem(LOC, "image data is corrupt or truncated")]


# -- 16-bit images --------------------------------------------------------------------

GREY16 = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_greyscale_png_is_rescaled_to_8_bits(channels: Literal[1, 3]) -> None:
    data = encode(Image.fromarray(GREY16), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    pixels = decode_one(image_spec(16, 16, channels), data)
    expected = np.round(GREY16 / 65535 * 255) / np.float32(255)
    assert pixels.shape == (channels, 16, 16)
    np.testing.assert_allclose(pixels, np.broadcast_to(expected, pixels.shape), atol=1e-6)
    assert pixels.max() == 1.0 and pixels.min() == 0.0


@pytest.mark.parametrize(("mode", "dtype"), [("I;16B", ">u2"), ("I;16L", "<u2"), ("I", "<i4")])
def test_16_bit_modes_are_rescaled_to_8_bits(mode: str, dtype: str) -> None:
    image = Image.frombytes(mode, (16, 16), GREY16.astype(dtype).tobytes())
    pixels = image_to_array(image, image_spec(16, 16, 1), LOC)
    np.testing.assert_allclose(pixels[0], np.round(GREY16 / 65535 * 255) / 255, atol=1e-6)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("F", (16, 16), 0.5),
        Image.new("I", (16, 16), 70_000),
        Image.new("I", (16, 16), -1),
    ],
    ids=["float", "int-above-16-bit", "int-negative"],
)
def test_modes_that_cannot_be_read_as_8_or_16_bit_are_a_422(image: Image.Image) -> None:
    error = invalid(lambda: image_to_array(image, image_spec(16, 16), LOC))
    assert error.detail == f"image mode {image.mode!r} is not supported"
    assert [item.loc for item in error.errors] == [LOC]


def test_a_16_bit_rgb_png_keeps_its_colours() -> None:
    rgb = np.random.default_rng(1).integers(0, 65536, size=(16, 16, 3), dtype=np.uint16)
    pixels = decode_one(image_spec(16, 16), png16(rgb))
    np.testing.assert_allclose(pixels, rgb.transpose(2, 0, 1) / 65535, atol=1 / 255 + 1e-6)


# -- EXIF orientation -----------------------------------------------------------------

# Orientation tag -> the stored `(C, H, W)` pixels turned upright.
UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, :, ::-1],
    3: lambda a: a[:, ::-1, ::-1],
    4: lambda a: a[:, ::-1, :],
    5: lambda a: a.transpose(0, 2, 1),
    6: lambda a: np.rot90(a, k=-1, axes=(1, 2)),
    7: lambda a: a.transpose(0, 2, 1)[:, ::-1, ::-1],
    8: lambda a: np.rot90(a, k=1, axes=(1, 2)),
}


def with_orientation(pixels: np.ndarray, fmt: str, orientation: int) -> bytes:
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif)


@pytest.mark.parametrize("orientation", UPRIGHT)
def test_a_png_is_turned_upright_by_its_exif_orientation(orientation: int) -> None:
    stored = random_rgb(16, 24)  # landscape and asymmetric: every orientation differs
    expected = UPRIGHT[orientation](stored.transpose(2, 0, 1) / np.float32(255))
    spec = image_spec(*expected.shape[1:])
    pixels = decode_one(spec, with_orientation(stored, "PNG", orientation))
    np.testing.assert_array_equal(pixels, expected)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_jpeg_photo_is_turned_upright_by_its_exif_orientation(orientation: int) -> None:
    stored = random_rgb(16, 24)
    plain = decode_one(image_spec(16, 24), encode(Image.fromarray(stored), "JPEG"))
    expected = UPRIGHT[orientation](plain)
    spec = image_spec(*expected.shape[1:])
    pixels = decode_one(spec, with_orientation(stored, "JPEG", orientation))
    np.testing.assert_array_equal(pixels, expected)  # the same JPEG data, decoded the same


def test_the_orientation_applies_despite_a_malformed_tag_beside_it() -> None:
    # XResolution written as ASCII: `ImageOps.exif_transpose` fails rewriting such a block.
    block = exif_block([(0x0112, 3, b"\x00\x06"), (0x011A, 2, b"72\x00")])
    stored = np.zeros((16, 24, 3), np.uint8)
    stored[:, :8] = 255  # the left third white: after turning, the top third
    pixels = decode_one(image_spec(24, 16), encode(Image.fromarray(stored), "PNG", exif=block))
    assert (pixels[:, :8] == 1.0).all() and (pixels[:, 8:] == 0.0).all()


def test_an_alpha_channel_is_dropped_as_pillow_converts_it() -> None:
    """Transparent pixels keep the colour stored under them (README: not composited), as
    `Image.open(f).convert("RGB")` gives them in most training code."""
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = random_rgb(8, 8)
    rgba[:4, ..., 3] = 0  # the top half fully transparent
    rgba[4:, ..., 3] = 255
    data = encode(Image.fromarray(rgba, "RGBA"), "PNG")
    expected = rgba[..., :3].transpose(2, 0, 1).astype(np.float32) / 255.0
    np.testing.assert_array_equal(decode_one(image_spec(8, 8), data), expected)
    grey = decode_one(image_spec(8, 8, channels=1), data)
    pillow = Image.open(io.BytesIO(data)).convert("L")
    np.testing.assert_array_equal(grey[0], np.asarray(pillow, dtype=np.float32) / 255.0)
