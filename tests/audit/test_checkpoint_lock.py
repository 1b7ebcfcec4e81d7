"""A checkpoint that finds the SQLite database locked past the busy timeout (by another
process) is tried again with backoff: the job completes with every row stored once. Other
database errors still fail the job."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from explainer.audit import AuditSpec, AuditStore, run_job
from explainer.audit import store as audit_store
from explainer.audit.runner import IndexedRow
from explainer.audit.store import database_engine

ROWS, CHUNK = 12, 4
BUSY_TIMEOUT_MS = 100  # instead of 10 s: the lock outlasts it at once
LOCK_HELD_S = 1.0  # past the busy timeout, well within the retries' delays


def _short_busy_timeout(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def store_at(path: Path) -> AuditStore:
    """A store on a real SQLite file whose connections wait 100 ms for a lock."""
    engine = database_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", _short_busy_timeout)  # runs after the store's own pragmas
    return AuditStore(engine).create_tables()


class ExclusiveLock:
    """Another process's connection holding the database's write lock for `seconds`."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.path, self.seconds = path, seconds
        self.held, self.released = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            self.held.set()
            self.released.wait(self.seconds)
            connection.execute("ROLLBACK")
        finally:
            connection.close()
            self.released.set()

    def start(self) -> None:
        self._thread.start()
        assert self.held.wait(10), "the lock was not taken"

    def join(self) -> None:
        self.released.set()
        self._thread.join(10)


def fake_documents(chunk: Sequence[IndexedRow]) -> list[dict[str, Any]]:
    return [{"row": index, "value": row[0] * 2} for index, row in chunk]


class LockedBeforeChunk:
    """Yields each chunk's documents; before chunk `locked` (none when None), another
    connection locks the database for LOCK_HELD_S seconds, so that checkpoint finds it
    locked."""

    def __init__(self, path: Path, locked: int | None) -> None:
        self.lock = ExclusiveLock(path, LOCK_HELD_S)
        self.locked = locked

    def __call__(
        self, spec: AuditSpec, chunks: Sequence[Sequence[IndexedRow]]
    ) -> Iterator[tuple[list[dict[str, Any]], float]]:
        for count, chunk in enumerate(chunks):
            if count == self.locked:
                self.lock.start()
            yield fake_documents(chunk), 0.01


def submit(store: AuditStore) -> str:
    spec = AuditSpec(model="m", methods=["saliency"], chunk_size=CHUNK)
    job, _ = store.submit("me", "m", spec.model_dump(mode="json"), [[i] for i in range(ROWS)])
    return job.id


def test_the_lock_outlasts_the_busy_timeout(tmp_path: Path) -> None:
    """The test's premise: without retries, a checkpoint under the lock fails."""
    store = store_at(tmp_path / "jobs.db")
    job_id = submit(store)
    store.claim(job_id, "w")
    lock = ExclusiveLock(tmp_path / "jobs.db", LOCK_HELD_S)
    lock.start()
    try:
        with pytest.raises(OperationalError) as raised:
            store.checkpoint(job_id, "w", [{"row": 0}], compute_s=0.0)
    finally:
        lock.join()
    assert "database is locked" in str(raised.value)


@pytest.mark.parametrize("locked", [0, 1], ids=["first-chunk", "second-chunk"])
def test_a_locked_database_delays_the_checkpoint_without_failing_the_job(
    tmp_path: Path, locked: int
) -> None:
    path = tmp_path / "jobs.db"
    store = store_at(path)
    job_id = submit(store)
    executor = LockedBeforeChunk(path, locked)
    try:
        finished = run_job(store, store.claim(job_id, "w"), "w", executor)
    finally:
        executor.lock.join()
    assert (finished.status, finished.error) == ("completed", None)
    assert finished.done == ROWS
    stored = list(store.results(job_id))
    assert [document["row"] for document in stored] == list(range(ROWS))  # each row once
    assert stored == [{"row": i, "value": i * 2} for i in range(ROWS)]


def test_another_database_error_still_fails_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_at(tmp_path / "jobs.db")
    job_id = submit(store)
    calls: list[int] = []

    def disk_full(*_: Any) -> None:
        calls.append(1)
        error = sqlite3.OperationalError("database or disk is full")
        raise OperationalError("INSERT ...", {}, error)

    monkeypatch.setattr(store, "checkpoint", disk_full)
    executor = LockedBeforeChunk(tmp_path / "jobs.db", locked=None)
    finished = run_job(store, store.claim(job_id, "w"), "w", executor)
    assert (finished.status, len(calls)) == ("failed", 1)  # not tried again
    assert "database or disk is full" in (finished.error or "")


@pytest.mark.parametrize(
    ("message", "busy"),
    [
        ("database is locked", True),
        ("database is busy", True),
        ("database or disk is full", False),
        ("no such table: audit_jobs", False),
    ],
)
def test_only_a_locked_or_busy_database_is_tried_again(message: str, busy: bool) -> None:
    error = OperationalError("UPDATE ...", {}, sqlite3.OperationalError(message))
    assert audit_store.database_busy(error) is busy
