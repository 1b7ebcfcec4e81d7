"""Acceptance 2: a real server (`explainer serve`, gunicorn) killed with SIGKILL midway through
an audit is restarted on the same database; the job completes with exactly N rows, none
duplicated, each equal to an uninterrupted run's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from benchmarks.liveserver import LiveServer, running_server
from explainer import Engine
from explainer.audit import AuditSpec, AuditStore, explain_chunk
from explainer.audit.store import results
from models import ModelHandle
from tests.audit.conftest import CHEAP_OPTIONS, MODEL, credit_rows
from tests.audit.test_runner import without_timings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 120


def audit_server(repo: Path, database: Path, workdir: Path) -> LiveServer:
    """`explainer serve` of `repo` on `database`, with the reference run's single thread."""
    settings = {
        "EXPLAINER_DATABASE_URL": f"sqlite:///{database}",
        "OMP_NUM_THREADS": "1",  # the same single thread as the reference run
        "EXPLAINER_CHUNK_SIZE": "256",  # restart faster: no chunk tuning, no warm-up
        "EXPLAINER_WARM_UP": "false",
    }
    return running_server(
        workdir, repo, settings, threads=None, inherit=["EXPLAINER_DEVICE"], timeout_s=90
    )


def poll(url: str, until: Any, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = requests.get(url, timeout=10).json()
        if until(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"timed out: {status}")


def test_sigkill_midway_then_restart_completes_exactly(
    credit_repo: Path, credit: ModelHandle, engine: Engine, tmp_path: Path
) -> None:
    database = tmp_path / "explainer.db"
    rows = credit_rows(ROWS, seed=11)
    request = {"model": MODEL, "instances": rows, "options": CHEAP_OPTIONS, "chunk_size": 8}
    with audit_server(credit_repo, database, tmp_path / "first") as first:
        response = requests.post(f"{first.url}/v1/audits", json=request, timeout=30)
        assert response.status_code == 202, response.text
        location = response.headers["Location"]
        poll(first.url + location, lambda s: s["progress"]["done"] >= 24, timeout_s=120)
        first.kill()
    store = AuditStore(f"sqlite:///{database}")
    at_kill = store.get(response.json()["id"])
    assert at_kill.status == "running" and 24 <= at_kill.done < ROWS

    with audit_server(credit_repo, database, tmp_path / "second") as second:
        final = poll(second.url + location, lambda s: s["status"] != "running", timeout_s=150)
        assert final["status"] == "completed", final
        assert final["progress"]["done"] == ROWS
        lines = requests.get(f"{second.url}{location}/results", timeout=30).text.splitlines()
    assert len(lines) == ROWS
    with store.engine.connect() as connection:
        count = connection.execute(
            select(func.count()).where(results.c.job_id == at_kill.id)
        ).scalar_one()
    assert count == ROWS  # stored rows: exactly N (the primary key forbids duplicates)
    documents = list(store.results(at_kill.id))
    assert [d["row"] for d in documents] == list(range(ROWS))

    spec = AuditSpec.model_validate({k: v for k, v in request.items() if k != "instances"})
    reference = explain_chunk(credit, engine, spec, list(enumerate(rows)))
    assert without_timings(documents) == without_timings(reference)
