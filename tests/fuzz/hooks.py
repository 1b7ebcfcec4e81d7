"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): valid requests as explicit examples.

Generated bodies rarely fit a real model, so the examples phase adds requests that do (for
tests/api/repo.py's models, within the fuzz server's limits): their 200 responses are then
checked against the response schemas too. Each carries the privacy canaries: a tabular
value, a class label that does not exist, and a PNG text chunk.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import schemathesis
from PIL import Image, PngImagePlugin
from schemathesis.hooks import HookContext

from benchmarks.canary import CANARY_NUMBER, CANARY_STRING
from tests.api.repo import FEATURES, IMAGE, IMAGE_SIDE, TABULAR

# Within tests/fuzz/conftest.py's SMALL_LIMITS.
CHEAP = {"integrated_gradients": {"n_steps": 8}, "lime": {"num_samples": 100}}
ROW = dict(zip(FEATURES, [CANARY_NUMBER, 1.5, -0.3, 2.0], strict=True))


def canary_png() -> bytes:
    """A small RGB PNG whose metadata holds the canary string."""
    pixels = np.random.default_rng(0).integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", CANARY_STRING)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _bodies(path: str) -> list[tuple[str, dict[str, Any]]]:
    """(model name, JSON body) pairs for one operation's path."""
    image = {"b64": base64.b64encode(canary_png()).decode()}
    if path == "/v1/audits":
        rows = [ROW, list(ROW.values())]
        return [("", {"model": TABULAR, "instances": rows, "options": CHEAP})]
    if path.endswith("predict"):
        return [(TABULAR, {"instances": [ROW]}), (IMAGE, {"instances": [image]})]
    return [
        (TABULAR, {"instances": [ROW, list(ROW.values())], "options": CHEAP}),
        (TABULAR, {"instances": [ROW], "target": CANARY_STRING}),
        (IMAGE, {"instances": [image], "methods": ["saliency", "lime"], "options": CHEAP}),
    ]


@schemathesis.hook
def before_add_examples(context: HookContext, examples: list[schemathesis.Case]) -> None:
    operation = context.operation
    if operation is None or operation.method.upper() != "POST":
        return
    if operation.path != "/v1/audits" and "{name}" not in operation.path:
        return  # a POST on an existing resource (an audit's resume): no body to give
    for name, body in _bodies(operation.path):
        parameters = {"name": name} if name else {}
        examples.append(
            operation.Case(path_parameters=parameters, body=body, media_type="application/json")
        )
