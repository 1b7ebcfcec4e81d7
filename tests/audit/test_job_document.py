"""Submitting and following audits: an Idempotency-Key race, and the progress document."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from api.routes.audits import STORE, _document
from explainer.audit import AuditStore, Job
from tests.api.conftest import app_factory
from tests.audit.conftest import MODEL, credit_rows


@pytest.fixture(scope="module")
def app(credit_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return app_factory(credit_repo, tmp_path_factory)()


def body(rows: int) -> dict[str, Any]:
    return {"model": MODEL, "instances": credit_rows(rows), "methods": ["saliency"]}


def lose_the_race(monkeypatch: pytest.MonkeyPatch, store: AuditStore) -> None:
    """The route's key lookup finds nothing, as if a concurrent POST with the same key
    stored its job just after it: `submit` then finds that job."""
    lookup = store.by_key
    calls: list[str] = []

    def late_lookup(owner: str, key: str) -> Job | None:
        calls.append(key)
        return None if len(calls) == 1 else lookup(owner, key)

    monkeypatch.setattr(store, "by_key", late_lookup)


def race(
    app: Flask, monkeypatch: pytest.MonkeyPatch, key: str, rows: int
) -> tuple[TestResponse, TestResponse]:
    """A first POST of 3 rows wins `key`; a second of `rows` rows loses the race for it:
    the two responses."""
    client = app.test_client()
    headers = {"Idempotency-Key": key}
    winner = client.post("/v1/audits", json=body(3), headers=headers)
    assert winner.status_code == 202, winner.get_json()
    lose_the_race(monkeypatch, app.extensions[STORE])
    return winner, client.post("/v1/audits", json=body(rows), headers=headers)


def test_losing_an_idempotency_race_with_another_request_is_a_422(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, loser = race(app, monkeypatch, "race-1", rows=4)
    assert loser.status_code == 422, loser.get_json()
    problem = loser.get_json()
    assert "used for a different audit request" in problem["detail"]
    assert [error["loc"] for error in problem["errors"]] == [["Idempotency-Key"]]


def test_losing_an_idempotency_race_with_the_same_request_returns_the_job(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner, retry = race(app, monkeypatch, "race-2", rows=3)
    assert retry.status_code == 202, retry.get_json()
    assert retry.get_json()["id"] == winner.get_json()["id"]


def job(**changes: Any) -> Job:
    now = time.time()
    running = Job(
        id="j",
        owner="o",
        model=MODEL,
        status="running",
        total=100_000,
        done=50_000,
        failed=0,
        error=None,
        created_at=now - 100,
        started_at=now - 100,
        finished_at=None,
        compute_s=100.0,
        request={},
    )
    return dataclasses.replace(running, **changes)


def document(app: Flask, **changes: Any) -> dict[str, Any]:
    with app.test_request_context():
        return _document(job(**changes))


def test_fraction_is_one_only_when_every_row_is_done(app: Flask) -> None:
    assert document(app, done=99_999)["progress"]["fraction"] == 0.9999
    assert document(app, done=99_999, total=99_999)["progress"]["fraction"] == 1.0
    assert document(app, done=29, total=100)["progress"]["fraction"] == 0.29
    assert document(app, done=1, total=3)["progress"]["fraction"] == 0.3333
    assert document(app, done=0)["progress"]["fraction"] == 0.0


def test_rate_and_eta_count_compute_time_not_time_since_start(app: Flask) -> None:
    # 50,000 rows in 100 s of compute, the server down for 10 hours in between: the rate is
    # 500 rows per second and the 50,000 rows left take about 100 s, not 20 hours.
    resumed = document(app, started_at=time.time() - 36_100)
    assert resumed["timings"]["rows_per_s"] == 500.0
    assert resumed["eta_s"] == 100.0
    assert resumed["timings"]["elapsed_s"] == pytest.approx(36_100, abs=5)  # wall time still
    # Four actors in parallel: 400 s of compute in 100 s of wall time; the wall time counts.
    parallel = document(app, started_at=time.time() - 100, compute_s=400.0)
    assert parallel["timings"]["rows_per_s"] == pytest.approx(500.0, rel=0.05)
    finished = document(app, status="completed", done=100_000, finished_at=time.time())
    assert finished["eta_s"] is None
    assert document(app, done=0, compute_s=0.0)["eta_s"] is None
    queued = document(app, status="queued", done=0, compute_s=0.0, started_at=None)
    assert queued["eta_s"] is None and queued["timings"]["rows_per_s"] is None
