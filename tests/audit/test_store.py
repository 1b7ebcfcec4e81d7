"""The job store: idempotency, leases, checkpoints, cancellation, on a temporary SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from explainer.audit import AuditStore, LeaseLost
from models.errors import NotFound


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def store(tmp_path: Path, clock: Clock) -> AuditStore:
    return AuditStore(
        f"sqlite:///{tmp_path / 'jobs.db'}", lease_s=10.0, clock=clock
    ).create_tables()


def document(row: int) -> dict:
    return {"row": row, "value": row * 2}


def submit(store: AuditStore, owner: str = "alice", key: str | None = None, rows: int = 4):
    return store.submit(owner, "m", {"model": "m"}, [[i] for i in range(rows)], key)


def test_sqlite_is_in_wal_mode(store: AuditStore) -> None:
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_submit_and_read_back(store: AuditStore) -> None:
    job, created = submit(store)
    assert created and job.status == "queued" and (job.done, job.total) == (0, 4)
    assert store.rows(job.id) == [[0], [1], [2], [3]]
    assert store.get(job.id, "alice") == job
    with pytest.raises(NotFound):
        store.get(job.id, "bob")


def test_idempotency_key_is_unique_per_owner(store: AuditStore) -> None:
    first, _ = submit(store, key="k")
    again, created = submit(store, key="k")
    assert (again.id, created) == (first.id, False)
    other, created = submit(store, owner="bob", key="k")
    assert created and other.id != first.id


def test_a_job_knows_the_request_it_was_submitted_with(store: AuditStore) -> None:
    job, _ = submit(store, key="k")
    assert store.by_key("alice", "k") == job and store.by_key("bob", "k") is None
    assert store.submitted_as(job, {"model": "m"}, [(0,), [1], [2], [3]])  # as JSON stores it
    assert not store.submitted_as(job, {"model": "m"}, [[0], [1], [2]])
    assert not store.submitted_as(job, {"model": "m", "seed": 1}, [[0], [1], [2], [3]])


def test_checkpoint_stores_rows_and_progress_together(store: AuditStore) -> None:
    job, _ = submit(store)
    assert store.claim_next("w1") is not None
    store.checkpoint(job.id, "w1", [document(0), document(1)], compute_s=0.5)
    assert store.get(job.id).done == 2
    assert store.stored_rows(job.id) == {0, 1}
    with pytest.raises(IntegrityError):  # a row is never stored twice
        store.checkpoint(job.id, "w1", [document(1), document(2)], compute_s=0.5)
    assert store.get(job.id).done == 2  # ... and the failed chunk left no progress behind
    assert store.stored_rows(job.id) == {0, 1}
    assert [d["row"] for d in store.results(job.id)] == [0, 1]


def test_checkpoint_counts_the_rows_not_explained(store: AuditStore) -> None:
    job, _ = submit(store)
    store.claim_next("w1")
    unexplained = {"row": 1, "error": {"title": "Model output not finite", "detail": "NaN"}}
    store.checkpoint(job.id, "w1", [document(0), unexplained], compute_s=0.5)
    store.checkpoint(job.id, "w1", [document(2)], compute_s=0.5)
    assert (store.get(job.id).done, store.get(job.id).failed) == (3, 1)


def test_a_database_from_before_the_failed_column_gets_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = AuditStore(url).create_tables()
    job, _ = submit(old)
    with old.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE audit_jobs DROP COLUMN failed")
    with pytest.raises(OperationalError):  # what reading it did before the migration
        old.get(job.id)
    store = AuditStore(url).create_tables()
    assert store.get(job.id).failed == 0
    assert AuditStore(url).create_tables().get(job.id) == store.get(job.id)  # idempotent


def test_a_dead_workers_job_is_claimed_after_its_lease(store: AuditStore, clock: Clock) -> None:
    job, _ = submit(store)
    assert store.claim_next("w1").id == job.id
    assert store.claim_next("w2") is None  # w1's lease holds
    clock.now += 11
    assert store.claim_next("w2").id == job.id
    with pytest.raises(LeaseLost):  # w1 woke up: its checkpoints are refused
        store.checkpoint(job.id, "w1", [document(0)], compute_s=0.1)
    store.checkpoint(job.id, "w2", [document(0)], compute_s=0.1)


def test_heartbeat_keeps_the_lease(store: AuditStore, clock: Clock) -> None:
    job, _ = submit(store)
    store.claim_next("w1")
    for _ in range(3):
        clock.now += 6
        store.heartbeat(job.id, "w1")
    assert store.claim_next("w2") is None


def test_cancel_stops_the_worker(store: AuditStore) -> None:
    job, _ = submit(store)
    store.claim_next("w1")
    assert store.cancel(job.id, "alice").status == "cancelled"
    with pytest.raises(LeaseLost):
        store.heartbeat(job.id, "w1")
    with pytest.raises(LeaseLost):
        store.checkpoint(job.id, "w1", [document(0)], compute_s=0.1)
    assert store.claim_next("w2") is None
    with pytest.raises(NotFound):
        store.cancel(job.id, "bob")


def test_finish(store: AuditStore) -> None:
    job, _ = submit(store)
    store.claim_next("w1")
    store.finish(job.id, "w1", "failed", "boom")
    finished = store.get(job.id)
    assert (finished.status, finished.error) == ("failed", "boom")
    assert finished.finished_at is not None
    with pytest.raises(NotFound):
        store.claim(job.id, "w2")


def test_count_by_status(store: AuditStore) -> None:
    assert store.count_by_status() == {}
    first, _ = submit(store)
    submit(store)
    cancelled, _ = submit(store)
    store.cancel(cancelled.id, "alice")
    store.claim(first.id, "w1")
    assert store.count_by_status() == {"running": 1, "queued": 1, "cancelled": 1}
