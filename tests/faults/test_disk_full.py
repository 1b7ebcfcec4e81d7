"""A full disk during an audit: the job stops with a reason or pauses, the database stays intact.

The job store lives on a 512 KiB tmpfs (mounting needs root; skipped otherwise), so SQLite
meets a real ENOSPC half-way through the audit. Once space is back, a paused job resumes
and completes with every row stored exactly once.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from explainer import Engine
from explainer.audit import AuditStore, AuditWorker
from models import ModelRepository
from tests.api.repo import TABULAR, build_repository

ROWS = 4000


def _mount(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["mount", *args], capture_output=True, check=False)


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted at a temporary directory."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if _mount("-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])


def test_a_full_disk_stops_the_audit_and_leaves_the_database_intact(
    tiny_disk: Path, tmp_path: Path
) -> None:
    repository = ModelRepository(build_repository(tmp_path / "models")).load("cpu")
    handle, engine = repository.get(TABULAR), Engine("cpu")
    database = tiny_disk / "audits.db"
    store = AuditStore(f"sqlite:///{database}", lease_s=0.5).create_tables()
    rows = np.random.default_rng(0).normal(size=(ROWS, 4)).round(3).tolist()
    request = {"model": TABULAR, "methods": ["saliency"], "chunk_size": 50}
    job, _ = store.submit("owner", TABULAR, request, rows)
    worker = AuditWorker(store, lambda _name: (handle, engine))

    try:  # recording the failure may itself fail on the full disk
        worker.run_once()
    except OperationalError as error:
        assert "full" in str(error)
    stopped = store.get(job.id)
    assert 0 < stopped.done < ROWS
    assert stopped.status in ("failed", "running")
    if stopped.status == "failed":
        assert stopped.error is not None and "full" in stopped.error
    assert integrity(database) == "ok"
    assert len(store.stored_rows(job.id)) == stopped.done

    if stopped.status == "running":  # paused: its lease expires and it resumes
        assert _mount("-o", "remount,size=64m", str(tiny_disk)).returncode == 0
        while (finished := worker.run_once()) is None:
            pass
        assert finished.status == "completed"
        assert store.stored_rows(job.id) == set(range(ROWS))
        assert integrity(database) == "ok"
