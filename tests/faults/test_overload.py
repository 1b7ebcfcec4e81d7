"""api.overload in-process: the request over capacity gets 503 at once, a late one 504.

The app serves tests/faults/faulty.py's model with one compute slot, no queue and a short
time limit; a hung forward holds the only slot, so the next request is shed.
"""

from __future__ import annotations

import threading
import time

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from api.config import ApiConfig
from tests.faults.faulty import NAME, SLOW_VALUE, write_faulty_model

TIME_LIMIT_S = 0.5


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    root = tmp_path_factory.mktemp("overload")
    values = {
        "model_repo": write_faulty_model(root / "models"),
        "database_url": f"sqlite:///{root / 'explainer.db'}",
        "device": "cpu",
        "max_concurrency": 1,
        "max_queue": 0,
        "request_timeout_s": TIME_LIMIT_S,
    }
    return create_app(ApiConfig.from_env(values, environ={})).test_client()


def predict(client: FlaskClient, value: float) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    response = client.post(f"/v1/models/{NAME}/predict", json={"instances": [[value, 0.0]]})
    return response.status_code, dict(response.headers), time.monotonic() - started


def test_late_request_504_then_excess_503_then_recovery(client: FlaskClient) -> None:
    assert predict(client, 1.0)[0] == 200
    status, headers, seconds = predict(client, SLOW_VALUE)
    assert status == 504 and headers["Content-Type"] == "application/problem+json"
    assert TIME_LIMIT_S <= seconds < TIME_LIMIT_S + 1
    # The hung call still holds the only slot: the next request is shed at once.
    status, headers, seconds = predict(client, 1.0)
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert seconds < 0.2
    assert client.get("/healthz").status_code == 200
    deadline = time.monotonic() + 30
    while predict(client, 1.0)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_other_routes_bypass_the_gate(client: FlaskClient) -> None:
    hung = threading.Thread(target=predict, args=(client, SLOW_VALUE))
    hung.start()
    time.sleep(0.1)
    assert client.get("/v1/models").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    hung.join()
