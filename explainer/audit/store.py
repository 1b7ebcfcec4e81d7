"""The audit job store: jobs and per-row results in one SQL database (SQLAlchemy 2).

SQLite (WAL) by default; a Postgres URL works for several API replicas. A job is claimed
with a lease (`lease_owner`, `lease_expires`) that its worker renews; a job whose worker
died is claimed again once the lease expires. Each chunk is checkpointed in one
transaction (its rows and the job's progress together), and the primary key (job, row)
makes a duplicated row impossible.
"""

from __future__ import annotations

import gzip
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from explainer.audit.io import document_json
from models.errors import NotFound

Status = Literal["queued", "running", "completed", "failed", "cancelled"]
ACTIVE: tuple[Status, ...] = ("queued", "running")
STOPPED: tuple[Status, ...] = ("failed", "cancelled")  # ended before every row was done

metadata = MetaData()

jobs = Table(
    "audit_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False, index=True),  # API key hash, or "cli"
    Column("model", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("total", Integer, nullable=False),
    Column("done", Integer, nullable=False, default=0),
    # rows done but not explained (their model outputs were not finite)
    Column("failed", Integer, nullable=False, default=0, server_default="0"),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("compute_s", Float, nullable=False, default=0.0),  # time spent explaining
    Column("lease_owner", String(128)),
    Column("lease_expires", Float),
    Column("idempotency_key", String(128)),
    Column("request", Text, nullable=False),  # the AuditSpec as JSON
    Column("data", LargeBinary, nullable=False),  # gzip JSON list of the input rows
    UniqueConstraint("owner", "idempotency_key", name="uq_audit_owner_key"),
)

results = Table(
    "audit_results",
    metadata,
    Column("job_id", String(32), ForeignKey("audit_jobs.id"), primary_key=True),
    Column("row_index", Integer, primary_key=True),
    Column("result", Text, nullable=False),  # one row's explanation document
)


class LeaseLost(Exception):
    """The job was cancelled, or another worker holds its lease: stop working on it."""


@dataclass(frozen=True)
class Job:
    """One audit job as stored (without its input data)."""

    id: str
    owner: str
    model: str
    status: Status
    total: int
    done: int
    failed: int  # rows done but not explained (their document holds an `error`)
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    compute_s: float
    request: dict[str, Any]


def _pack(rows: Sequence[Any]) -> bytes:
    return gzip.compress(json.dumps(list(rows), allow_nan=False).encode(), mtime=0)


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        owner=row.owner,
        model=row.model,
        status=row.status,
        total=row.total,
        done=row.done,
        failed=row.failed,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        compute_s=row.compute_s,
        request=json.loads(row.request),
    )


_JOB_COLUMNS = [column for column in jobs.c if column.name != "data"]


# How long a SQLite statement waits for another connection's lock before it fails with
# "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    cursor.close()


def database_busy(error: BaseException) -> bool:
    """Whether `error` is SQLite's "database is locked" (or "busy"): another connection held
    a lock past the busy timeout, and the same statement may succeed later."""
    if not isinstance(error, OperationalError):
        return False
    message = str(error.orig if error.orig is not None else error).lower()
    return "database is locked" in message or "database is busy" in message


def database_engine(url: str) -> Engine:
    """An engine for a database URL; SQLite files in WAL mode with a busy timeout."""
    # hide_parameters: database errors (logged, or an audit's reason) never hold input values.
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class AuditStore:
    """Jobs and results in one database: an Engine (the API passes its own) or a URL."""

    def __init__(
        self,
        database: Engine | str,
        lease_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = database_engine(database) if isinstance(database, str) else database
        self.lease_s = lease_s
        self.clock = clock

    def create_tables(self) -> AuditStore:
        """Create the tables if missing, and columns added since a database was made (safe
        when several processes race to do it)."""
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except (OperationalError, ProgrammingError):  # another process created them first
            metadata.create_all(self.engine, checkfirst=True)
        self._add_missing_columns()
        return self

    def _add_missing_columns(self) -> None:
        """Add the `failed` column to a jobs table from before it existed (zero for old jobs)."""
        if self._has_failed_column():
            return
        statement = text(f"ALTER TABLE {jobs.name} ADD COLUMN failed INTEGER NOT NULL DEFAULT 0")
        try:
            with self.engine.begin() as connection:
                connection.execute(statement)
        except (OperationalError, ProgrammingError):  # another process added it first
            if not self._has_failed_column():
                raise

    def _has_failed_column(self) -> bool:
        columns = inspect(self.engine).get_columns(jobs.name)
        return any(column["name"] == "failed" for column in columns)

    # ---- submitting and reading ----

    def submit(
        self,
        owner: str,
        model: str,
        request: dict[str, Any],
        rows: Sequence[Any],
        idempotency_key: str | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job; `(job, created)`. An owner's repeated idempotency key returns its job."""
        if idempotency_key is not None:
            existing = self.by_key(owner, idempotency_key)
            if existing is not None:
                return existing, False
        id_ = secrets.token_hex(16)
        values = {
            "id": id_,
            "owner": owner,
            "model": model,
            "status": "queued",
            "total": len(rows),
            "done": 0,
            "failed": 0,
            "created_at": self.clock(),
            "compute_s": 0.0,
            "idempotency_key": idempotency_key,
            "request": json.dumps(request, allow_nan=False),
            "data": _pack(rows),
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(jobs.insert().values(**values))
        except IntegrityError:  # a concurrent POST with the same key won the race
            existing = self.by_key(owner, idempotency_key or "")
            if existing is None:
                raise
            return existing, False
        return self.get(id_), True

    def by_key(self, owner: str, key: str) -> Job | None:
        """The owner's job submitted with idempotency key `key`, if any."""
        query = select(*_JOB_COLUMNS).where(jobs.c.owner == owner, jobs.c.idempotency_key == key)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _job(row)

    def submitted_as(self, job: Job, request: dict[str, Any], rows: Sequence[Any]) -> bool:
        """Whether `job` was submitted with this request and these rows (a retry of it)."""
        same_rows = self._data(job.id) == _pack(rows)  # `_pack` is deterministic
        return same_rows and job.request == json.loads(json.dumps(request))

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job `job_id` (only if `owner` owns it, when given), else NotFound."""
        query = select(*_JOB_COLUMNS).where(jobs.c.id == job_id)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise NotFound("no such audit")
        return _job(row)

    def jobs_of(self, owner: str) -> list[Job]:
        query = select(*_JOB_COLUMNS).where(jobs.c.owner == owner).order_by(jobs.c.created_at)
        with self.engine.connect() as connection:
            return [_job(row) for row in connection.execute(query)]

    def count_by_status(self) -> dict[str, int]:
        """How many jobs are in each status (one GROUP BY; statuses without jobs are absent)."""
        query = select(jobs.c.status, func.count()).group_by(jobs.c.status)
        with self.engine.connect() as connection:
            return {status: int(count) for status, count in connection.execute(query)}

    def rows(self, job_id: str) -> list[Any]:
        """The job's input rows, as submitted."""
        rows: list[Any] = json.loads(gzip.decompress(self._data(job_id)))
        return rows

    def _data(self, job_id: str) -> bytes:
        with self.engine.connect() as connection:
            blob = connection.execute(select(jobs.c.data).where(jobs.c.id == job_id)).scalar_one()
        return bytes(blob)

    def stored_rows(self, job_id: str) -> set[int]:
        """Indices of the rows whose results are stored."""
        query = select(results.c.row_index).where(results.c.job_id == job_id)
        with self.engine.connect() as connection:
            return set(connection.execute(query).scalars())

    def results(self, job_id: str, row: int | None = None) -> Iterator[dict[str, Any]]:
        """Stored row documents in row order (only row `row` when given)."""
        return (json.loads(text) for text in self.result_texts(job_id, row))

    def result_texts(self, job_id: str, row: int | None = None) -> Iterator[str]:
        """Stored row documents as their `document_json` text, in row order, read from the
        database a batch at a time (only row `row` when given)."""
        query = select(results.c.result).where(results.c.job_id == job_id)
        if row is not None:
            query = query.where(results.c.row_index == row)
        streamed = query.order_by(results.c.row_index).execution_options(yield_per=1000)
        with self.engine.connect() as connection:
            yield from connection.execute(streamed).scalars()

    # ---- working on a job ----

    def _claimable(self, now: float) -> Any:
        expired = and_(jobs.c.status == "running", jobs.c.lease_expires < now)
        return or_(jobs.c.status == "queued", expired)

    def claim_next(self, worker: str) -> Job | None:
        """Lease the oldest queued job, or a running one whose lease expired."""
        now = self.clock()
        query = select(jobs.c.id).where(self._claimable(now)).order_by(jobs.c.created_at).limit(10)
        with self.engine.connect() as connection:
            candidates = list(connection.execute(query).scalars())
        for job_id in candidates:
            if self._lease(job_id, worker, self._claimable(now)):
                return self.get(job_id)
        return None

    def claim(self, job_id: str, worker: str) -> Job:
        """Take the job over whoever holds it (the CLI's `--resume`); NotFound if finished."""
        if not self._lease(job_id, worker, jobs.c.status.in_(ACTIVE)):
            raise NotFound("no unfinished audit to resume")
        return self.get(job_id)

    def requeue(self, job_id: str, owner: str) -> Job:
        """Queue the owner's failed or cancelled job again (the CLI's `--resume`), keeping its
        stored rows and clearing its error; NotFound if it is not theirs or did not stop so."""
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.owner == owner, jobs.c.status.in_(STOPPED))
            .values(status="queued", error=None, finished_at=None, lease_owner=None)
        )
        with self.engine.begin() as connection:
            if connection.execute(statement).rowcount != 1:
                raise NotFound("no failed or cancelled audit to requeue")
        return self.get(job_id)

    def _lease(self, job_id: str, worker: str, condition: Any) -> bool:
        now = self.clock()
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id, condition)
            .values(
                status="running",
                lease_owner=worker,
                lease_expires=now + self.lease_s,
                started_at=func.coalesce(jobs.c.started_at, now),
            )
        )
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def _held(self, job_id: str, worker: str) -> Any:
        return and_(jobs.c.id == job_id, jobs.c.lease_owner == worker, jobs.c.status == "running")

    def heartbeat(self, job_id: str, worker: str) -> None:
        """Renew the lease; LeaseLost when the job was cancelled or taken over."""
        statement = (
            update(jobs)
            .where(self._held(job_id, worker))
            .values(lease_expires=self.clock() + self.lease_s)
        )
        with self.engine.begin() as connection:
            if connection.execute(statement).rowcount != 1:
                raise LeaseLost(job_id)

    def checkpoint(
        self, job_id: str, worker: str, documents: Sequence[dict[str, Any]], compute_s: float
    ) -> None:
        """Store one chunk's rows and the job's progress in one transaction."""
        statement = (
            update(jobs)
            .where(self._held(job_id, worker))
            .values(
                done=jobs.c.done + len(documents),
                failed=jobs.c.failed + sum("error" in document for document in documents),
                compute_s=jobs.c.compute_s + compute_s,
                lease_expires=self.clock() + self.lease_s,
            )
        )
        rows = [
            {
                "job_id": job_id,
                "row_index": document["row"],
                "result": document_json(document),
            }
            for document in documents
        ]
        with self.engine.begin() as connection:
            if connection.execute(statement).rowcount != 1:
                raise LeaseLost(job_id)
            if rows:
                connection.execute(results.insert(), rows)

    def finish(
        self, job_id: str, worker: str, status: Status = "completed", error: str | None = None
    ) -> None:
        """End a job this worker holds: completed, or failed with a reason."""
        statement = (
            update(jobs)
            .where(self._held(job_id, worker))
            .values(status=status, error=error, finished_at=self.clock(), lease_owner=None)
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def cancel(self, job_id: str, owner: str) -> Job:
        """Cancel the owner's queued or running job; returns it (NotFound if not theirs)."""
        self.get(job_id, owner)
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.owner == owner, jobs.c.status.in_(ACTIVE))
            .values(status="cancelled", finished_at=self.clock(), lease_owner=None)
        )
        with self.engine.begin() as connection:
            connection.execute(statement)
        return self.get(job_id, owner)
