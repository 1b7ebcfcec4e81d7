"""Regressions for what the fuzzer found, in-process (Flask test client)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from api.config import ApiConfig
from tests.api.repo import TABULAR, build_repository


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    root = tmp_path_factory.mktemp("regressions")
    values = {
        "model_repo": build_repository(root / "models"),
        "database_url": f"sqlite:///{root / 'explainer.db'}",
    }
    return create_app(ApiConfig.from_env(values, environ={})).test_client()


def test_spec_without_api_keys_has_valid_security_schemes(client: FlaskClient) -> None:
    """flask-openapi3 wrote `"securitySchemes": null`, which OpenAPI tools reject."""
    spec = client.get("/openapi.json").get_json()
    assert isinstance(spec["components"].get("securitySchemes", {}), dict)


def test_results_row_beyond_sqlite_integers_is_a_422(client: FlaskClient) -> None:
    """`?row=` past 2**63 reached SQLite and raised OverflowError: a 500."""
    body = {"model": TABULAR, "instances": [[0.1, 0.2, 0.3, 0.4]], "methods": ["saliency"]}
    created = client.post("/v1/audits", json=body)
    assert created.status_code == 202, created.get_data(as_text=True)
    response = client.get(f"{created.headers['Location']}/results?row={2**70}")
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
