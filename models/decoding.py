"""Decode request instances into one float tensor batch in the model's input space.

Tabular rows become `(N, F)` float32 in original units (categories as their index);
images become `(N, C, H, W)` float32 pixels in [0, 1] at the model's size, turned upright by
their EXIF orientation, 16-bit greyscale rescaled to 8 bits first. Normalisation
(mean/std) is applied later, inside `ModelHandle.forward`, so that every attribution and
baseline lives in the same human-readable space as the input.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image

from models.errors import ErrorItem, InvalidInput, LimitExceeded
from models.spec import ImageSpec, TabularSpec

ALLOWED_IMAGE_FORMATS = ("PNG", "JPEG")
# Feature values must fit the model's float32 input (the largest finite float32).
FLOAT32_MAX = float(np.finfo(np.float32).max)
# What Pillow raises for corrupt or truncated data, opening a file, decoding its pixels or
# reading its EXIF block (struct.error: an EXIF block cut short).
CORRUPT_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, struct.error)
# 16-bit greyscale, rescaled to 8 bits; "I" (32-bit) only with values in 0..65535.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# 8-bit modes that `Image.convert` turns into "RGB" or "L" meaningfully.
EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")
# EXIF Orientation -> the transposition that turns the stored pixels upright, as in
# `ImageOps.exif_transpose` (which also rewrites the EXIF block, and fails on corrupt ones).
EXIF_TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageLimits:
    """Limits checked on the image header before any pixel is decoded."""

    max_pixels: int = 4096 * 4096
    max_bytes: int = 20 * 1024 * 1024


def _number(value: Any, loc: tuple[str | int, ...]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("a feature value is not a number", [ErrorItem(loc, "must be a number")])
    try:
        number = float(value)
    except OverflowError:  # an integer past the float range
        number = math.inf
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise InvalidInput(
            "a feature value is not a finite float32",
            [ErrorItem(loc, f"must be finite, at most {FLOAT32_MAX:.8g} in magnitude (float32)")],
        )
    return number


def _tabular_value(
    spec: TabularSpec, feature: str, value: Any, loc: tuple[str | int, ...]
) -> float:
    categories = spec.categorical.get(feature)
    if categories is not None:
        if isinstance(value, str):
            if value not in categories:
                raise InvalidInput(
                    f"unknown category for feature {feature!r}",
                    [ErrorItem(loc, f"must be one of {categories}")],
                )
            return float(categories.index(value))
        code = _number(value, loc)
        if code != int(code) or not 0 <= code < len(categories):
            raise InvalidInput(
                f"bad category code for feature {feature!r}",
                [ErrorItem(loc, f"must be a category name or an index below {len(categories)}")],
            )
        return code
    number = _number(value, loc)
    bounds = spec.ranges.get(feature)
    if bounds is not None and not bounds.min <= number <= bounds.max:
        raise InvalidInput(
            f"feature {feature!r} out of its valid range",
            [ErrorItem(loc, f"must be within [{bounds.min}, {bounds.max}]")],
        )
    return number


def decode_tabular_row(spec: TabularSpec, row: Any, index: int) -> list[float]:
    """One row: an object keyed by feature name, or a list in feature order."""
    loc: tuple[str | int, ...] = ("instances", index)
    if isinstance(row, Mapping):
        unknown = sorted(set(row) - set(spec.features))
        missing = [f for f in spec.features if f not in row]
        errors = [ErrorItem((*loc, name), "unknown feature") for name in unknown]
        errors += [ErrorItem((*loc, name), "missing feature") for name in missing]
        if errors:
            raise InvalidInput("instance does not match the model's features", errors)
        return [_tabular_value(spec, f, row[f], (*loc, f)) for f in spec.features]
    if isinstance(row, Sequence) and not isinstance(row, str | bytes):
        if len(row) != len(spec.features):
            raise InvalidInput(
                "instance has the wrong number of values",
                [ErrorItem(loc, f"expected {len(spec.features)} values, got {len(row)}")],
            )
        return [
            _tabular_value(spec, f, v, (*loc, i))
            for i, (f, v) in enumerate(zip(spec.features, row, strict=True))
        ]
    raise InvalidInput(
        "instance must be an object keyed by feature name or a list in feature order",
        [ErrorItem(loc, "must be an object or a list")],
    )


def decode_tabular(spec: TabularSpec, rows: Sequence[Any]) -> np.ndarray:
    """All rows -> `(N, F)` float32."""
    return np.asarray([decode_tabular_row(spec, row, i) for i, row in enumerate(rows)], np.float32)


def _corrupt_image(loc: tuple[str | int, ...]) -> InvalidInput:
    return InvalidInput(
        "image data is corrupt or truncated", [ErrorItem(loc, "image data is corrupt or truncated")]
    )


def open_image(data: bytes, limits: ImageLimits, loc: tuple[str | int, ...]) -> Image.Image:
    """Open PNG/JPEG bytes, checking size and pixel count from the header before decoding,
    then decode the pixels and turn the image upright by its EXIF orientation."""
    if len(data) > limits.max_bytes:
        raise LimitExceeded(
            "image file too large", [ErrorItem(loc, f"at most {limits.max_bytes} bytes")]
        )
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_IMAGE_FORMATS)
    except Image.UnidentifiedImageError:
        raise InvalidInput(
            "not a PNG or JPEG image", [ErrorItem(loc, "must be a PNG or JPEG image")]
        ) from None
    except Image.DecompressionBombError:  # Pillow's own header check, past ~179 Mpixels
        raise LimitExceeded(
            "image has too many pixels",
            [ErrorItem(loc, f"exceeds the limit of {limits.max_pixels} pixels")],
        ) from None
    except CORRUPT_IMAGE_ERRORS:  # e.g. a header cut short: "Truncated File Read"
        raise _corrupt_image(loc) from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise LimitExceeded(
            "image has too many pixels",
            [ErrorItem(loc, f"{width}x{height} exceeds the limit of {limits.max_pixels} pixels")],
        )
    try:
        image.load()
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except (*CORRUPT_IMAGE_ERRORS, Image.DecompressionBombError):
        raise _corrupt_image(loc) from None
    if image.mode == "P" and image.palette is None:  # a PNG without its PLTE chunk
        raise _corrupt_image(loc)
    # A malformed tag (not a number) is ignored, as by viewers.
    transposition = EXIF_TRANSPOSITIONS.get(orientation) if isinstance(orientation, int) else None
    return image if transposition is None else image.transpose(transposition)


def _eight_bit(image: Image.Image, loc: tuple[str | int, ...]) -> Image.Image:
    """16-bit greyscale rescaled linearly to 8-bit "L"; 8-bit modes as they are."""
    if image.mode in EIGHT_BIT_MODES:
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if values.min() >= 0 and values.max() <= 65535:
            # 65535 / 255 == 257; no value lies halfway between two 8-bit levels.
            return Image.fromarray(np.rint(values.astype(np.float32) / 257).astype(np.uint8))
    raise InvalidInput(
        f"image mode {image.mode!r} is not supported",
        [ErrorItem(loc, "must have 8-bit channels or 16-bit greyscale (0..65535)")],
    )


def image_to_array(image: Image.Image, spec: ImageSpec, loc: tuple[str | int, ...]) -> np.ndarray:
    """Convert to the model's channels and size -> `(C, H, W)` float32 in [0, 1]."""
    mode = "RGB" if spec.channels == 3 else "L"
    converted = _eight_bit(image, loc).convert(mode)
    if converted.size != (spec.width, spec.height):
        converted = converted.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(converted, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def decode_base64(text: Any, loc: tuple[str | int, ...]) -> bytes:
    """Strict base64 (standard alphabet; a data-URL prefix is accepted)."""
    if not isinstance(text, str):
        raise InvalidInput("b64 must be a string", [ErrorItem(loc, "must be a base64 string")])
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("invalid base64", [ErrorItem(loc, "invalid base64")]) from None


def decode_images(spec: ImageSpec, instances: Sequence[Any], limits: ImageLimits) -> np.ndarray:
    """Instances `{"b64": ...}` (or raw bytes from a multipart upload) -> `(N, C, H, W)`."""
    arrays = []
    for index, instance in enumerate(instances):
        loc: tuple[str | int, ...] = ("instances", index)
        if isinstance(instance, bytes):
            data = instance
        elif isinstance(instance, Mapping) and set(instance) == {"b64"}:
            data = decode_base64(instance["b64"], (*loc, "b64"))
        else:
            raise InvalidInput(
                'image instances must be {"b64": "<base64 PNG or JPEG>"}',
                [ErrorItem(loc, "must be an object with the single key 'b64'")],
            )
        arrays.append(image_to_array(open_image(data, limits, loc), spec, loc))
    return np.stack(arrays).astype(np.float32)
