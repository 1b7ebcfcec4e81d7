"""The HTTP API on a real gunicorn server serving the zoo: every model, every method."""

from __future__ import annotations

import base64
import io
from functools import cache
from typing import Any

import pytest
import requests
from PIL import Image

from models.zoo.lesion_data import generate

pytestmark = pytest.mark.e2e

FIVE = ["saliency", "integrated_gradients", "shap", "lime", "tree"]
ZOO = ["breast-cancer", "credit-risk", "lesion-64"]
TIMEOUT = 300


@cache
def lesion_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(generate(1, seed=7).images[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def instance(info: dict[str, Any]) -> Any:
    if info["modality"] == "image":
        return {"b64": base64.b64encode(lesion_png()).decode()}
    return info["example"]


def numbers(response: dict[str, Any]) -> list[Any]:
    return [
        {
            **item,
            "timings_ms": None,
            "methods": {
                name: {k: v for k, v in result.items() if k not in ("heatmap_url", "cached")}
                for name, result in item["methods"].items()
            },
        }
        for item in response["explanations"]
    ]


@pytest.fixture(scope="module")
def zoo(live_server: str) -> dict[str, dict[str, Any]]:
    ready = requests.get(f"{live_server}/readyz", timeout=TIMEOUT).json()
    assert ready["errors"] == {}, ready["errors"]
    listed = requests.get(f"{live_server}/v1/models", timeout=TIMEOUT).json()["models"]
    return {info["name"]: info for info in listed}


@pytest.fixture(scope="module")
def explained(live_server: str, zoo: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One JSON explain request with all five methods per zoo model."""
    out = {}
    for name, info in zoo.items():
        response = requests.post(
            f"{live_server}/v1/models/{name}/explain",
            json={"instances": [instance(info)], "methods": FIVE},
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text
        out[name] = response.json()
    return out


def test_lists_the_zoo(zoo: dict[str, dict[str, Any]]) -> None:
    assert sorted(zoo) == ZOO
    assert zoo["lesion-64"]["image"] == {"height": 64, "width": 64, "channels": 3}


@pytest.mark.parametrize("name", ZOO)
def test_explain_with_all_five_methods(name: str, explained: dict[str, dict[str, Any]]) -> None:
    response = explained[name]
    assert response["model"]["name"] == name and len(response["model"]["sha256"]) == 64
    methods = response["explanations"][0]["methods"]
    assert list(methods) == FIVE
    for result in methods.values():
        assert result["attributions"] and result["heatmap_url"]
    if name == "credit-risk":
        codes = response["explanations"][0]["reason_codes"]
        assert codes["method"] == "shap" and codes["codes"]


@pytest.mark.parametrize("name", ZOO)
def test_kserve_alias_gives_the_same_numbers(
    live_server: str, name: str, zoo: dict[str, dict[str, Any]], explained: dict[str, Any]
) -> None:
    response = requests.post(
        f"{live_server}/v1/models/{name}:explain",
        json={"instances": [instance(zoo[name])], "methods": FIVE},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert numbers(response.json()) == numbers(explained[name])
    body = {"instances": [instance(zoo[name])]}
    plain = requests.post(f"{live_server}/v1/models/{name}/predict", json=body, timeout=TIMEOUT)
    alias = requests.post(f"{live_server}/v1/models/{name}:predict", json=body, timeout=TIMEOUT)
    assert plain.json() == alias.json()


def test_multipart_image_upload(live_server: str, explained: dict[str, Any]) -> None:
    response = requests.post(
        f"{live_server}/v1/models/lesion-64/explain",
        files={"instances": ("lesion.png", lesion_png(), "image/png")},
        data={
            "request": '{"methods": ["saliency", "integrated_gradients", "shap", "lime", "tree"]}'
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert numbers(response.json()) == numbers(explained["lesion-64"])


@pytest.mark.parametrize("style", ["overlay", "map"])
def test_image_heatmaps(live_server: str, explained: dict[str, Any], style: str) -> None:
    for method, result in explained["lesion-64"]["explanations"][0]["methods"].items():
        response = requests.get(
            f"{live_server}{result['heatmap_url']}", params={"style": style}, timeout=TIMEOUT
        )
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (256, 296)), method
        assert image.text["method"] == method  # type: ignore[attr-defined]


def test_tabular_bar_charts(live_server: str, explained: dict[str, Any]) -> None:
    for name in ("breast-cancer", "credit-risk"):
        url = explained[name]["explanations"][0]["methods"]["shap"]["heatmap_url"]
        response = requests.get(f"{live_server}{url}", timeout=TIMEOUT)
        image = Image.open(io.BytesIO(response.content))
        assert response.status_code == 200 and image.mode == "RGB" and image.width == 640


def test_gradcam_and_extras_on_the_image_model(live_server: str) -> None:
    methods = ["gradcam", "smoothgrad", "occlusion"]
    response = requests.post(
        f"{live_server}/v1/models/lesion-64/explain",
        json={"instances": [{"b64": base64.b64encode(lesion_png()).decode()}], "methods": methods},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert set(response.json()["explanations"][0]["methods"]) == set(methods)


def test_errors_are_problems_on_the_live_server(live_server: str) -> None:
    response = requests.post(
        f"{live_server}/v1/models/credit-risk/explain",
        data='{"instances": [[NaN]]}',
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert requests.get(f"{live_server}/healthz", timeout=TIMEOUT).status_code == 200


def test_stored_explanations_survive_across_requests(
    live_server: str, explained: dict[str, Any]
) -> None:
    stored = explained["credit-risk"]
    response = requests.get(f"{live_server}/v1/explanations/{stored['id']}", timeout=TIMEOUT)
    assert response.json() == stored
