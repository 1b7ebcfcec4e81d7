"""A background audit worker: claims queued or stale jobs from the store and runs them.

The API starts one per process (each gunicorn worker); together they share the jobs
through the database. A job whose process died is claimed again when its lease expires,
and resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from explainer.audit.runner import LocalExecutor, run_job
from explainer.audit.store import AuditStore, Job
from explainer.engine import Engine
from models.errors import ServiceError
from models.handle import ModelHandle

log = logging.getLogger(__name__)

# Model name -> the loaded model and the Engine to run it on.
ModelResolver = Callable[[str], tuple[ModelHandle, Engine]]


def worker_id() -> str:
    """A name unique to this process and call: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class AuditWorker:
    """Runs audit jobs one at a time, polling the store when there is none."""

    def __init__(self, store: AuditStore, resolve: ModelResolver, poll_s: float = 1.0) -> None:
        self.store = store
        self.resolve = resolve
        self.poll_s = poll_s
        self.id = worker_id()

    def start(self) -> AuditWorker:
        """Run jobs in a daemon thread until the process exits."""
        threading.Thread(target=self._loop, name="audit-worker", daemon=True).start()
        return self

    def run_once(self) -> Job | None:
        """Claim and run one job; None when there was none to claim."""
        job = self.store.claim_next(self.id)
        if job is None:
            return None
        log.info("audit %s: %d rows of %s claimed by %s", job.id, job.total, job.model, self.id)
        try:
            handle, engine = self.resolve(job.model)
        except ServiceError as exc:
            self.store.finish(job.id, self.id, "failed", exc.detail)
            return self.store.get(job.id)
        return run_job(self.store, job, self.id, LocalExecutor(handle, engine))

    def _loop(self) -> None:
        while True:
            try:
                idle = self.run_once() is None
            except Exception:  # a database hiccup: log it and poll again
                log.exception("audit worker %s: claiming failed", self.id)
                idle = True
            if idle:
                time.sleep(self.poll_s)
