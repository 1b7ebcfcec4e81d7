"""PNG encoding with text chunks (model, version, method, target, ...)."""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image, PngImagePlugin


def encode_png(image: Image.Image, text: Mapping[str, str]) -> bytes:
    """Encode `image` as PNG with one tEXt/iTXt chunk per `text` entry."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "explainer")
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, optimize=False)
    return buffer.getvalue()
