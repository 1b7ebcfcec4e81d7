"""Acceptance 2: a real server (`explainer serve`, gunicorn) killed with SIGKILL midway through
an audit is restarted on the same database; the job completes with exactly N rows, none
duplicated, each equal to an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from explainer import Engine
from explainer.audit import AuditSpec, AuditStore, explain_chunk
from explainer.audit.store import results
from models import ModelHandle
from tests.audit.conftest import CHEAP_OPTIONS, MODEL, credit_rows
from tests.audit.test_runner import without_timings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 120
EXPLAINER = Path(sys.executable).parent / "explainer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`explainer serve` in its own process group, logging to a file."""

    def __init__(self, repo: Path, database: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "EXPLAINER_DATABASE_URL": f"sqlite:///{database}",
            "OMP_NUM_THREADS": "1",  # the same single thread as the reference run
            "EXPLAINER_CHUNK_SIZE": "256",  # restart faster: no chunk tuning, no warm-up
            "EXPLAINER_WARM_UP": "false",
        }
        env.pop("EXPLAINER_API_KEYS", None)
        command = [str(EXPLAINER), "serve", "--port", str(self.port), "--model-repo", str(repo)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server exited"
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError("the server did not become ready")

    def kill(self) -> None:
        """SIGKILL the whole process group: gunicorn's master and its workers."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture()
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.kill()


def poll(url: str, until: Any, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = requests.get(url, timeout=10).json()
        if until(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"timed out: {status}")


def test_sigkill_midway_then_restart_completes_exactly(
    credit_repo: Path,
    credit: ModelHandle,
    engine: Engine,
    tmp_path: Path,
    servers: list[Server],
) -> None:
    database = tmp_path / "explainer.db"
    rows = credit_rows(ROWS, seed=11)
    request = {"model": MODEL, "instances": rows, "options": CHEAP_OPTIONS, "chunk_size": 8}
    servers.append(Server(credit_repo, database, tmp_path / "server.log"))
    response = requests.post(f"{servers[0].url}/v1/audits", json=request, timeout=30)
    assert response.status_code == 202, response.text
    location = response.headers["Location"]

    poll(servers[0].url + location, lambda s: s["progress"]["done"] >= 24, timeout_s=120)
    servers[0].kill()
    store = AuditStore(f"sqlite:///{database}")
    at_kill = store.get(response.json()["id"])
    assert at_kill.status == "running" and 24 <= at_kill.done < ROWS

    servers.append(Server(credit_repo, database, tmp_path / "server.log"))
    final = poll(servers[1].url + location, lambda s: s["status"] != "running", timeout_s=150)
    assert final["status"] == "completed", final
    assert final["progress"]["done"] == ROWS

    lines = requests.get(f"{servers[1].url}{location}/results", timeout=30).text.splitlines()
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
