"""Faults inside a request on a live server: device out of memory (503), a hung call (504),
NaN model outputs (422).

Each is contained in its request: the gunicorn worker keeps running (same pid) and later
requests succeed.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from benchmarks.liveserver import LiveServer
from tests.faults.conftest import TIME_LIMIT_S
from tests.faults.faulty import NAME, NAN_VALUE, OOM_VALUE, SLOW_S, SLOW_VALUE

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


def post(server: LiveServer, action: str, row: list[float], **extra: Any) -> requests.Response:
    body = {"instances": [row], **extra}
    return requests.post(f"{server.url}/v1/models/{NAME}/{action}", json=body, timeout=60)


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize(
    ("action", "extra"), [("predict", {}), ("explain", {"methods": ["saliency", "occlusion"]})]
)
@pytest.mark.parametrize(
    ("marker", "status", "title"),
    [
        (OOM_VALUE, 503, "Device out of memory"),  # the only one with Retry-After
        (NAN_VALUE, 422, "Model output not finite"),
    ],
)
def test_a_failing_model_call_is_a_problem_and_the_next_request_succeeds(
    fault_server: LiveServer,
    action: str,
    extra: dict[str, Any],
    marker: float,
    status: int,
    title: str,
) -> None:
    workers = fault_server.worker_pids()
    failed = post(fault_server, action, [marker, 0.0], **extra)
    assert assert_problem(failed, status)["title"] == title
    assert ("Retry-After" in failed.headers) == (status == 503)
    assert post(fault_server, action, [0.5, -1.0], **extra).status_code == 200
    assert fault_server.worker_pids() == workers
    assert "Traceback" not in fault_server.log_text()


def test_past_the_time_limit_is_a_504_and_the_worker_stays_healthy(
    fault_server: LiveServer,
) -> None:
    workers = fault_server.worker_pids()
    started = time.monotonic()
    late = post(fault_server, "predict", [SLOW_VALUE, 0.0])
    elapsed = time.monotonic() - started
    assert_problem(late, 504)
    assert TIME_LIMIT_S <= elapsed < SLOW_S
    assert requests.get(f"{fault_server.url}/healthz", timeout=1).status_code == 200
    # The late computation finishes in the background; then requests succeed again.
    deadline = time.monotonic() + SLOW_S + 30
    while (status := post(fault_server, "predict", [0.5, -1.0]).status_code) != 200:
        assert status == 504 and time.monotonic() < deadline
    assert fault_server.worker_pids() == workers
    assert "Traceback" not in fault_server.log_text()
