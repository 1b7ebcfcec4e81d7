"""api.overload in-process: the request over capacity gets 503 at once, a late one 504.

The app serves tests/faults/faulty.py's model with one compute slot, no queue and a short
time limit; a hung forward holds the only slot, so the next request is shed. A late
computation made of many model calls is stopped at its next call, which frees the slot.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from api.config import ApiConfig
from tests.faults.faulty import NAME, PACED_S, PACED_VALUE, SLOW_VALUE, write_faulty_model

TIME_LIMIT_S = 0.5


def one_slot_client(root: Path, chunk_size: int | None = None) -> FlaskClient:
    values = {
        "model_repo": write_faulty_model(root / "models"),
        "database_url": f"sqlite:///{root / 'explainer.db'}",
        "device": "cpu",
        "max_concurrency": 1,
        "max_queue": 0,
        "request_timeout_s": TIME_LIMIT_S,
        "chunk_size": chunk_size,
    }
    return create_app(ApiConfig.from_env(values, environ={})).test_client()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    return one_slot_client(tmp_path_factory.mktemp("overload"))


def predict(client: FlaskClient, value: float, rows: int = 1) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    body = {"instances": [[value, 0.0]] * rows}
    response = client.post(f"/v1/models/{NAME}/predict", json=body)
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


def test_late_computation_stops_at_its_next_model_call(tmp_path: Path) -> None:
    # One row per model call: 16 rows take 16 paced calls (4 s), far past the time limit.
    paced = one_slot_client(tmp_path, chunk_size=1)
    status, _, seconds = predict(paced, PACED_VALUE, rows=16)
    assert status == 504 and seconds < TIME_LIMIT_S + 1
    gave_up = time.monotonic()
    # Cancelled before its next call, the late computation frees the only slot after at
    # most the call in progress; run to its end, it would hold the slot for 3.5 s more.
    while (status := predict(paced, 1.0)[0]) == 503:
        assert time.monotonic() - gave_up < 4 * PACED_S
        time.sleep(0.05)
    assert status == 200
