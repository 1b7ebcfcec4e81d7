"""`AuditStore.requeue`, for `explainer audit --resume`: a failed or cancelled job is queued
again with its stored rows kept and its error cleared; nothing else is requeued."""

from __future__ import annotations

from pathlib import Path

import pytest

from explainer.audit import AuditStore
from models.errors import NotFound


@pytest.fixture()
def store(tmp_path: Path) -> AuditStore:
    return AuditStore(f"sqlite:///{tmp_path / 'jobs.db'}").create_tables()


def half_done(store: AuditStore) -> str:
    """A 4-row job of owner "cli" with rows 0 and 1 stored, still leased to worker w1."""
    job, _ = store.submit("cli", "m", {"model": "m"}, [[i] for i in range(4)])
    store.claim(job.id, "w1")
    store.checkpoint(job.id, "w1", [{"row": 0}, {"row": 1, "error": {}}], compute_s=1.0)
    return job.id


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_stopped_job_is_queued_again_with_its_rows(store: AuditStore, status: str) -> None:
    job_id = half_done(store)
    if status == "failed":
        store.finish(job_id, "w1", "failed", "RuntimeError: row 2: boom")
    else:
        store.cancel(job_id, "cli")
    queued = store.requeue(job_id, "cli")
    assert (queued.status, queued.error, queued.finished_at) == ("queued", None, None)
    assert (queued.done, queued.failed, queued.compute_s) == (2, 1, 1.0)
    assert store.stored_rows(job_id) == {0, 1}
    assert store.claim(job_id, "w2").status == "running"
    store.checkpoint(job_id, "w2", [{"row": 2}, {"row": 3}], compute_s=1.0)
    store.finish(job_id, "w2")
    finished = store.get(job_id)
    assert (finished.status, finished.done, finished.error) == ("completed", 4, None)


def test_only_the_owners_stopped_jobs_are_requeued(store: AuditStore) -> None:
    job_id = half_done(store)
    with pytest.raises(NotFound):  # still running
        store.requeue(job_id, "cli")
    store.finish(job_id, "w1", "failed", "boom")
    with pytest.raises(NotFound):
        store.requeue(job_id, "someone-else")
    store.requeue(job_id, "cli")
    store.claim(job_id, "w2")
    store.finish(job_id, "w2")
    with pytest.raises(NotFound):  # completed
        store.requeue(job_id, "cli")
    assert store.get(job_id).status == "completed"
