"""The audit runner: explain a data set chunk by chunk, checkpointing each chunk in the store.

Every row is explained with its own seed, derived from (job seed, row index), in its own
`explain` call (float32 kernels may round differently for other batch sizes), so a row's
result is the same whatever the audit's chunking, the engine (local or Ray) or the number of
restarts: bit for bit where the processes run the model with the same chunk size and torch
thread count, else equal up to float32 rounding (SHAP values were seen to differ by 1e-10
between one and two threads). Audits bypass the explanation cache, which is for interactive
requests. A chunk (64 rows by default) is decoded at once and stored in one transaction; a
restarted job explains only the rows not stored yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from explainer.audit.store import AuditStore, Job, LeaseLost, database_busy
from explainer.engine import Engine
from explainer.explain import available_methods, check_methods, explain, predict
from explainer.options import METHODS, ExplainOptions
from explainer.render import instance_document, prediction_document
from explainer.targets import resolve_target
from models.errors import ErrorItem, InvalidInput, ModelOutputNotFinite, ServiceError
from models.handle import ModelHandle

log = logging.getLogger(__name__)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # a Parquet int64 column's range
IndexedRow = tuple[int, Any]  # (row index in the data set, the row as submitted)
# Seconds to wait before each new try of a checkpoint that found the database locked (by
# another process, past SQLite's busy timeout); after the last, the job fails.
CHECKPOINT_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
Progress = Callable[[int, int], None]  # (rows done, total)


class AuditSpec(BaseModel):
    """What to audit and how: the job's request as stored."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: StrictStr
    methods: Annotated[list[StrictStr], Field(min_length=1)] | None = Field(
        default=None, description="default: the model's five standard methods"
    )
    target: StrictStr | StrictInt | None = Field(
        default=None,
        description='a class index or label, or "predicted"; default: the model\'s adverse '
        'class when it declares one, else "predicted"',
    )
    options: ExplainOptions = Field(default_factory=ExplainOptions)
    seed: Annotated[StrictInt, Field(ge=0, le=2**32 - 1)] = 0
    segment_by: StrictStr | None = Field(
        default=None, description="a feature or an extra column to summarise the audit by"
    )
    chunk_size: Annotated[StrictInt, Field(ge=1, le=1024)] = 64


def row_seed(seed: int, index: int) -> int:
    """Row `index`'s seed, derived from the job's seed alone (independent of chunking)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def audit_methods(handle: ModelHandle, spec: AuditSpec) -> list[str]:
    """The requested methods, checked, else the model's standard methods."""
    supported = available_methods(handle)
    return check_methods(handle, spec.methods or [m for m in METHODS if m in supported])


def audit_target(handle: ModelHandle, spec: AuditSpec) -> str | int:
    """The requested target, else the adverse class, else "predicted"."""
    if spec.target is not None:
        return spec.target
    tabular = handle.spec.tabular
    if tabular is not None and tabular.adverse_class is not None:
        return tabular.adverse_class
    return "predicted"


def _model_row(handle: ModelHandle, row: Any) -> Any:
    """The model's features of a row (extra columns dropped)."""
    if isinstance(row, dict):
        return {name: row[name] for name in handle.feature_names if name in row}
    return row


def validate(handle: ModelHandle, spec: AuditSpec, rows: Sequence[Any]) -> None:
    """Check a job before queuing it: model, methods, target, every row, the segment column."""
    if handle.is_image:
        raise InvalidInput(
            "audits support tabular models", [ErrorItem(("model",), "is an image model")]
        )
    audit_methods(handle, spec)
    resolve_target(handle, audit_target(handle, spec))
    for start in range(0, len(rows), 1024):
        chunk = [_model_row(handle, row) for row in rows[start : start + 1024]]
        try:
            handle.decode(chunk)
        except InvalidInput as exc:  # report locations in the whole data set

            def in_data(k: int, offset: int = start) -> tuple[str | int, ...]:
                return ("data", k + offset)

            items = [item.about_instance(in_data) for item in exc.errors]
            raise InvalidInput(exc.detail, items) from None
    column = spec.segment_by
    if column is not None and column not in handle.feature_names:
        _check_segment_column(column, rows)


def _check_segment_column(column: str, rows: Sequence[Any]) -> None:
    """A 422 at the first row without the (non-feature) segment column, or whose value the
    results cannot hold as one CSV or Parquet cell: only null, text, booleans, finite
    numbers and 64-bit integers are."""
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or column not in row:
            raise InvalidInput(
                "the segment column is missing",
                [ErrorItem(("data", index, column), "segment_by column not in this row")],
            )
        problem = _segment_value_problem(row[column])
        if problem is not None:
            raise InvalidInput(
                "a segment value cannot be used",
                [ErrorItem(("data", index, column), problem)],
            )


def _segment_value_problem(value: Any) -> str | None:
    if value is None or isinstance(value, str | bool):
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else "integer out of the 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite"
    return "must be a string, a number, a boolean or null"


def rehearse(handle: ModelHandle, engine: Engine, spec: AuditSpec, row: Any) -> None:
    """Explain a data set's first row as the job will, before queuing it.

    Options this model cannot use (an image baseline, a SHAP algorithm, too few
    `max_evals`) then fail the request with their 422, instead of failing the job at its
    first row. A row whose outputs are not finite is left for the job to record.
    """
    instance = handle.decode([_model_row(handle, row)])
    methods, target = audit_methods(handle, spec), audit_target(handle, spec)
    seed = row_seed(spec.seed, 0)
    with contextlib.suppress(ModelOutputNotFinite):
        explain(handle, instance, methods, target, spec.options, seed, engine, use_cache=False)


def given_values(handle: ModelHandle, row: Any) -> dict[str, float | str]:
    """A decoded row's features as given, categories by name: the numbers exactly as in the
    data (the model receives them rounded to float32; 0.271 would read 0.2709999978542328)."""
    tabular = handle.spec.tabular
    assert tabular is not None
    given = row if isinstance(row, dict) else dict(zip(tabular.features, row, strict=True))
    out: dict[str, float | str] = {}
    for name in tabular.features:
        value, categories = given[name], tabular.categorical.get(name)
        if categories is None:
            out[name] = float(value)
        else:
            out[name] = value if isinstance(value, str) else categories[int(value)]
    return out


def explain_chunk(
    handle: ModelHandle, engine: Engine, spec: AuditSpec, chunk: Sequence[IndexedRow]
) -> list[dict[str, Any]]:
    """One document per row: input, prediction, every method's explanation, seed, segment.

    A row whose model outputs (or gradients) are NaN or infinite, for the row itself or for
    its perturbations, is not explained: its document holds an `error` instead of the
    explanations, and its prediction when that is finite. Any other error fails the chunk,
    naming the row.
    """
    methods = audit_methods(handle, spec)
    target = audit_target(handle, spec)
    inputs = handle.decode([_model_row(handle, row) for _, row in chunk])  # (n, F)
    documents = []
    for k, (index, row) in enumerate(chunk):
        seed = row_seed(spec.seed, index)
        instance = inputs[k : k + 1]
        try:  # the job's reason must say which row to look at
            values = given_values(handle, _model_row(handle, row))
            document: dict[str, Any] = {"row": index, "seed": seed, "input": values}
            try:
                result = explain(
                    handle, instance, methods, target, spec.options, seed, engine, use_cache=False
                )
            except ModelOutputNotFinite as error:
                document.update(unexplained_document(handle, engine, instance, error))
            else:
                document.update(instance_document(handle, index, result[0]))
            if spec.segment_by is not None:
                column = spec.segment_by
                document["segment"] = values[column] if column in values else row[column]
        except ServiceError as error:
            raise dataclasses.replace(error, detail=f"row {index}: {error.detail}") from error
        except Exception as error:
            raise RowFailed(index, type(error).__name__, first_line(error)) from error
        documents.append(document)
    return documents


def unexplained_document(
    handle: ModelHandle, engine: Engine, instance: torch.Tensor, error: ServiceError
) -> dict[str, Any]:
    """Why a row was not explained (`error`), and its prediction when that is finite."""
    document: dict[str, Any] = {}
    with contextlib.suppress(ModelOutputNotFinite):
        document["prediction"] = prediction_document(predict(handle, instance, engine)[0])
    document["error"] = {"title": error.title, "detail": error.detail}
    return document


# The first line of an error raised inside a TorchScript model; the scripted model's
# traceback follows, and the original error's `Type: message` comes last.
_TORCHSCRIPT_FAILURE = "The following operation failed in the TorchScript interpreter."


def first_line(error: BaseException) -> str:
    """An exception's message without traceback text: its first line.

    For an error raised in a TorchScript model, the original message (the last line, after
    the scripted traceback). SQLAlchemy's errors, for another, carry the statement and its
    parameters (a row's values) after the first line.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0] == _TORCHSCRIPT_FAILURE:
        kind, _, message = lines[-1].partition(": ")
        return message if kind == type(error).__name__ and message else lines[-1]
    return lines[0]


class RowFailed(Exception):
    """An unexpected error (not a ServiceError) explaining one row of an audit.

    It names the row and the error's type and first line only, so that the job's reason
    holds no traceback text; it pickles by its arguments (Ray hands it to the driver).
    """

    def __init__(self, row: int, kind: str, message: str) -> None:
        super().__init__(row, kind, message)
        self.row, self.kind, self.message = row, kind, message

    def reason(self) -> str:
        """`<ExceptionType>: row N: <first line>`, as a ServiceError's reason reads."""
        return _joined(self.kind, f"row {self.row}", self.message)

    def __str__(self) -> str:
        return self.reason()


def failure_reason(error: BaseException) -> str:
    """A failed job's `error`: the exception's type (the original one for a row's) and the
    first line of its message."""
    if isinstance(error, RowFailed):
        return error.reason()
    return _joined(type(error).__name__, first_line(error))


def _joined(*parts: str) -> str:
    return ": ".join(part for part in parts if part)


class ChunkExecutor(Protocol):
    """Explains chunks (in any order) and yields each chunk's documents and compute seconds."""

    def __call__(
        self, spec: AuditSpec, chunks: Sequence[Sequence[IndexedRow]]
    ) -> Iterator[tuple[list[dict[str, Any]], float]]: ...


class LocalExecutor:
    """Explains chunks in this process, one after another, on the given Engine."""

    def __init__(self, handle: ModelHandle, engine: Engine) -> None:
        self.handle = handle
        self.engine = engine

    def __call__(
        self, spec: AuditSpec, chunks: Sequence[Sequence[IndexedRow]]
    ) -> Iterator[tuple[list[dict[str, Any]], float]]:
        for chunk in chunks:
            started = time.perf_counter()
            documents = explain_chunk(self.handle, self.engine, spec, chunk)
            yield documents, time.perf_counter() - started


class Heartbeat:
    """Renews a job's lease in a daemon thread; `lost` is set when the lease is gone."""

    def __init__(self, store: AuditStore, job_id: str, worker: str) -> None:
        self.store, self.job_id, self.worker = store, job_id, worker
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.store.lease_s / 3):
            try:
                self.store.heartbeat(self.job_id, self.worker)
            except LeaseLost:
                self.lost.set()
                return
            except Exception:  # a transient database error: the next beat retries
                log.warning("audit %s: heartbeat failed", self.job_id, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _frames(error: BaseException) -> str:
    """The stack of the innermost cause: files, lines and code, without the messages."""
    while error.__cause__ is not None:
        error = error.__cause__
    return "".join(traceback.format_tb(error.__traceback__)).rstrip()


def pending_chunks(store: AuditStore, job: Job, size: int) -> list[list[IndexedRow]]:
    """The rows not stored yet, in chunks of `size`."""
    rows = store.rows(job.id)
    stored = store.stored_rows(job.id)
    pending = [i for i in range(job.total) if i not in stored]
    return [[(i, rows[i]) for i in pending[s : s + size]] for s in range(0, len(pending), size)]


def _checkpoint(
    store: AuditStore,
    job_id: str,
    worker: str,
    documents: Sequence[dict[str, Any]],
    seconds: float,
) -> None:
    """Store a chunk, trying again (with growing delays) while the database is locked.

    A checkpoint is one transaction, rolled back when it fails, so a retry stores each row
    once. Any other error (or a lock past the last delay) is raised: it fails the job.
    """
    for delay in (*CHECKPOINT_RETRY_DELAYS_S, None):
        try:
            store.checkpoint(job_id, worker, documents, seconds)
            return
        except Exception as exc:
            if delay is None or not database_busy(exc):
                raise
            log.warning(
                "audit %s: the database is locked; storing %d rows again in %gs",
                job_id,
                len(documents),
                delay,
            )
            time.sleep(delay)


def run_job(
    store: AuditStore,
    job: Job,
    worker: str,
    execute: ChunkExecutor,
    on_progress: Progress | None = None,
) -> Job:
    """Explain a leased job's pending rows, checkpointing each chunk; returns the job as stored.

    Stops early (leaving the job to whoever holds it) when it was cancelled or taken over;
    marks it failed, with the reason, when explaining raises.
    """
    spec = AuditSpec.model_validate(job.request)
    chunks = pending_chunks(store, job, spec.chunk_size)
    done = job.total - sum(len(chunk) for chunk in chunks)
    if on_progress is not None:
        on_progress(done, job.total)
    with Heartbeat(store, job.id, worker) as heartbeat:
        try:
            for documents, seconds in execute(spec, chunks):
                if heartbeat.lost.is_set():
                    raise LeaseLost(job.id)
                _checkpoint(store, job.id, worker, documents, seconds)
                done += len(documents)
                if on_progress is not None:
                    on_progress(done, job.total)
        except LeaseLost:
            log.info("audit %s: cancelled or taken over; stopping", job.id)
            return store.get(job.id)
        except Exception as exc:
            reason = failure_reason(exc)
            # The reason and where it was raised; never the messages in full (see first_line).
            log.error("audit %s failed: %s\n%s", job.id, reason, _frames(exc))
            store.finish(job.id, worker, "failed", reason)
            return store.get(job.id)
    store.finish(job.id, worker)
    finished = store.get(job.id)
    if finished.failed:
        log.warning(
            "audit %s: %d of %d rows not explained (model outputs not finite)",
            job.id,
            finished.failed,
            finished.total,
        )
    return finished
