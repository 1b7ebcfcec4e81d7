"""The spec says what the server enforces: the bearer requirement of every keyed operation,
and the media types each body accepts; /docs renders the spec on a keyed server too."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory, png_bytes
from tests.api.repo import IMAGE, TABULAR, TABULAR_ROW

KEY = "spec-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROBES = {"/healthz", "/readyz"}  # the only operations open with keys configured


@pytest.fixture(scope="module")
def secured(make_app: AppFactory) -> FlaskClient:
    return make_app(api_keys=KEY).test_client()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, verb, op) for path, item in spec["paths"].items() for verb, op in item.items()]


def test_with_keys_every_keyed_operation_requires_the_bearer_scheme(
    secured: FlaskClient,
) -> None:
    spec = secured.get("/openapi.json", headers=AUTH).get_json()
    assert spec["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert "security" not in spec  # per operation: the probes need no key
    for path, verb, op in operations(spec):
        if path in PROBES:
            assert "security" not in op and "401" not in op["responses"], (verb, path)
        else:
            assert op["security"] == [{"bearer": []}], (verb, path)
            assert list(op["responses"]["401"]["content"]) == ["application/problem+json"]


def test_without_keys_no_operation_requires_a_key_or_lists_a_401(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    assert not spec["components"].get("securitySchemes")
    for path, verb, op in operations(spec):
        assert "security" not in op and "401" not in op["responses"], (verb, path)


@pytest.mark.parametrize("route", ["predict", ":predict"])
def test_predict_is_json_only_in_the_spec_and_on_the_server(
    client: FlaskClient, route: str
) -> None:
    spec = client.get("/openapi.json").get_json()
    template = "/v1/models/{name}" + (route if route.startswith(":") else f"/{route}")
    post = spec["paths"][template]["post"]
    assert list(post["requestBody"]["content"]) == ["application/json"]
    assert "415" in post["responses"]

    url = f"/v1/models/{IMAGE}" + (route if route.startswith(":") else f"/{route}")
    data = {"instances": (io.BytesIO(png_bytes()), "image.png", "image/png")}
    response = client.post(url, data=data, content_type="multipart/form-data")
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == "send application/json"


def test_explain_still_takes_multipart(client: FlaskClient) -> None:
    data = {
        "instances": (io.BytesIO(png_bytes()), "image.png", "image/png"),
        "request": json.dumps({"methods": ["saliency"]}),
    }
    response = client.post(f"/v1/models/{IMAGE}/explain", data=data)
    assert response.status_code == 200, response.get_data(as_text=True)
    spec = client.get("/openapi.json").get_json()
    content = spec["paths"]["/v1/models/{name}/explain"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}


def test_predict_json_works_with_the_key(secured: FlaskClient) -> None:
    body = {"instances": [TABULAR_ROW]}
    assert secured.post(f"/v1/models/{TABULAR}/predict", json=body).status_code == 401
    response = secured.post(f"/v1/models/{TABULAR}/predict", json=body, headers=AUTH)
    assert response.status_code == 200


def test_docs_page_is_open_and_fetches_the_spec_with_the_key(secured: FlaskClient) -> None:
    """A browser cannot send a bearer token when it navigates: the page (no data) is open,
    and its script sends the key the viewer keeps in sessionStorage, or asks for one."""
    page = secured.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '"explainer.apiKey"' in html  # the viewer's sessionStorage entry
    assert "Authorization: `Bearer ${key}`" in html
    assert '<label for="api-key">API key</label>' in html
    # The spec itself needs the key, as every API route does.
    assert secured.get("/openapi.json").status_code == 401
    assert secured.get("/openapi.json", headers=AUTH).status_code == 200


def test_the_audit_post_declares_its_idempotency_key_and_location(client: FlaskClient) -> None:
    operation = client.get("/openapi.json").get_json()["paths"]["/v1/audits"]["post"]
    (parameter,) = [p for p in operation["parameters"] if p["in"] == "header"]
    assert parameter["name"] == "Idempotency-Key" and not parameter["required"]
    assert parameter["schema"] == {"type": "string", "minLength": 1, "maxLength": 128}
    assert set(operation["responses"]["202"]["headers"]) == {"Location"}
