"""Bearer API keys: required everywhere but /healthz, /readyz and the pages (the viewer's,
/docs) when configured."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory
from tests.api.repo import TABULAR, TABULAR_ROW

KEYS = ("first-key-0123456789", "second-key-abcdef")


@pytest.fixture(scope="module")
def secured(make_app: AppFactory) -> FlaskClient:
    return make_app(api_keys=",".join(KEYS)).test_client()


@pytest.mark.parametrize("url", ["/healthz", "/readyz", "/", "/docs"])
def test_probes_and_the_pages_are_open(secured: FlaskClient, url: str) -> None:
    assert secured.get(url).status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", "Bearer ", f"Basic {KEYS[0]}", KEYS[0], f"Bearer {KEYS[0]}x"],
    ids=["missing", "wrong", "empty", "basic-scheme", "no-scheme", "prefix-of-key"],
)
@pytest.mark.parametrize("url", ["/v1/models", "/openapi.json", "/metrics", "/v1/nothing"])
def test_without_a_valid_key_is_401(secured: FlaskClient, header: str | None, url: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = secured.get(url, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["status"] == 401


@pytest.mark.parametrize("key", KEYS)
def test_every_configured_key_works(secured: FlaskClient, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    assert secured.get("/v1/models", headers=headers).status_code == 200
    response = secured.post(
        f"/v1/models/{TABULAR}/predict", json={"instances": [TABULAR_ROW]}, headers=headers
    )
    assert response.status_code == 200


def test_post_without_key_is_401_before_the_body_is_read(secured: FlaskClient) -> None:
    response = secured.post(f"/v1/models/{TABULAR}/explain", data="{", content_type="text/plain")
    assert response.status_code == 401


def test_no_keys_means_open(client: FlaskClient) -> None:
    assert client.get("/v1/models").status_code == 200


def test_spec_declares_bearer_security(secured: FlaskClient) -> None:
    spec = secured.get("/openapi.json", headers={"Authorization": f"Bearer {KEYS[0]}"}).get_json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
