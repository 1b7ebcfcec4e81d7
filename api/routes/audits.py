"""Audits: queue a data set for explanation, follow it, fetch its results and report, cancel,
and resume a failed or cancelled one.

Jobs live in the service database (`explainer.audit.store`) and run in a background worker
thread in every worker process, started when this blueprint is registered; an unfinished
job resumes after a crash once its lease expires. Another caller's audit is a 404.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from flask import Flask, Response, current_app, jsonify, request, stream_with_context, url_for
from flask.blueprints import BlueprintSetupState
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.errors import Conflict, UnsupportedMediaType, invalid_input
from api.limits import check_limits, model_limits
from api.openapi import problem_responses, request_body
from api.parsing import JSON_MIME, MULTIPART_MIME, REQUEST_FIELD, multipart_request
from api.runtime import EXTENSION, Runtime, runtime
from api.schemas import Instance
from explainer.audit import (
    AuditSpec,
    AuditStore,
    AuditWorker,
    Job,
    audit_report,
    rehearse,
    validate,
)
from explainer.audit.io import MEDIA_TYPES, export_texts, format_of, read_rows
from explainer.audit.runner import audit_methods
from explainer.audit.store import STOPPED
from models.errors import ErrorItem, InvalidInput, NotFound, NotYet, PayloadTooLarge

bp = APIBlueprint("audits", __name__, abp_tags=[Tag(name="audits")])

STORE = "explainer.audits"  # app.extensions key of the AuditStore
MAX_ROWS = 100_000  # rows per audit
MAX_FILE_BYTES = 64 * 1024 * 1024  # an uploaded data file (the body limit also applies)
DATA_FIELD = "data"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class AuditRequest(AuditSpec):
    """An audit of JSON instances (every key but `model` and `instances` optional)."""

    instances: Annotated[list[Instance], Field(min_length=1)]


class AuditMultipart(BaseModel):
    """multipart/form-data: the data file in `data`, the other keys as JSON in `request`."""

    data: bytes = Field(json_schema_extra={"format": "binary"}, description="CSV, Parquet or JSONL")
    request: str = Field(description="JSON object: AuditRequest without instances")


class AuditPath(BaseModel):
    id: str = Field(description="audit id")


class ResultsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt parameter is a 422, not ignored

    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    row: Annotated[int, Field(ge=0, lt=MAX_ROWS)] | None = Field(
        default=None, description="only this row"
    )


class Progress(BaseModel):
    done: int
    total: int
    fraction: float
    failed: int = Field(
        description="rows done but not explained (NaN or infinite model outputs); their "
        "result rows hold an `error`"
    )


class AuditOut(BaseModel):
    id: str
    model: str
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    progress: Progress
    eta_s: float | None
    timings: dict[str, float | str | None]
    error: str | None
    links: dict[str, str]


class AuditCreated(AuditOut):
    """The queued job, with its URL in `Location`."""

    model_config = ConfigDict(  # flask-openapi3 reads `openapi_extra` for the response
        openapi_extra={  # type: ignore[typeddict-unknown-key]
            "headers": {"Location": {"description": "the job's URL", "schema": {"type": "string"}}}
        }
    )


IDEMPOTENCY_PARAMETER = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": "makes a retried POST (the same request and rows) return the caller's job; "
    "the key reused with a different request is a 422",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}


# ---- the store and the background worker ----


def _store(app: Flask, state: Runtime) -> AuditStore:
    store = app.extensions.get(STORE)
    if store is None:
        store = app.extensions[STORE] = AuditStore(state.db).create_tables()
    return store


def _wait_and_work(app: Flask) -> None:
    """Wait for the models, then run audit jobs in this process until it exits."""
    while (state := app.extensions.get(EXTENSION)) is None or state.status == "loading":
        time.sleep(0.2)
    if state.ready:
        AuditWorker(_store(app, state), state.model).start()


@bp.record_once
def _start_worker(setup: BlueprintSetupState) -> None:
    threading.Thread(target=_wait_and_work, args=(setup.app,), daemon=True).start()


# ---- helpers ----


def _owner() -> str:
    """The caller: a hash of its API key, or "anonymous" when the service has no keys (its
    Authorization header is then ignored; with keys, `api.auth` has checked it)."""
    if not runtime().config.api_keys:
        return "anonymous"
    _, _, token = request.headers.get("Authorization", "").partition(" ")
    return hashlib.sha256(token.strip().encode()).hexdigest()[:32]


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


FRACTION_DIGITS = 4  # progress.fraction's decimals


def _document(job: Job) -> dict[str, Any]:
    now = time.time()
    end = job.finished_at or now
    elapsed = end - job.started_at if job.started_at is not None else None
    # The rate counts the time spent explaining: a job resumed after its server was down
    # for hours has not been that slow (wall time since it started, when none is recorded).
    # Chunks explained in parallel (Ray actors) add up to more compute than wall time.
    spent = min(job.compute_s, elapsed) if job.compute_s > 0 and elapsed else elapsed
    rate = job.done / spent if spent and job.done else None
    eta = (job.total - job.done) / rate if rate and job.status == "running" else None
    # Rounded down, so that 1.0 means every row is done (99,999 of 100,000 is 0.9999).
    scale = 10**FRACTION_DIGITS
    fraction = job.done * scale // job.total / scale
    return {
        "id": job.id,
        "model": job.model,
        "status": job.status,
        "progress": {
            "done": job.done,
            "total": job.total,
            "fraction": fraction,
            "failed": job.failed,
        },
        "eta_s": None if eta is None else round(eta, 1),
        "timings": {
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "elapsed_s": None if elapsed is None else round(elapsed, 3),
            "compute_s": round(job.compute_s, 3),
            "rows_per_s": None if rate is None else round(rate, 2),
        },
        "error": job.error,
        "links": {
            "self": url_for("audits.get_audit", id=job.id),
            "results": url_for("audits.get_results", id=job.id),
            "report": url_for("audits.get_report", id=job.id),
        },
    }


def _read_request(state: Runtime) -> tuple[AuditSpec, list[Any]]:
    """The audit request: JSON with instances, or multipart with a data file."""
    if request.mimetype == JSON_MIME:
        data = request.get_json()
        try:
            body = AuditRequest.model_validate(data, strict=True)
        except ValidationError as error:
            raise invalid_input(error) from None
        return AuditSpec.model_validate(body.model_dump(exclude={"instances"})), body.instances
    if request.mimetype != MULTIPART_MIME:
        raise UnsupportedMediaType(f"send {JSON_MIME} or {MULTIPART_MIME}")
    data = multipart_request({DATA_FIELD})
    uploads = request.files.getlist(DATA_FIELD)
    if not uploads:
        raise InvalidInput("no data file", [ErrorItem((DATA_FIELD,), "field required")])
    if len(uploads) > 1:  # the rows of the others would go unexplained
        raise InvalidInput("more than one data file", [ErrorItem((DATA_FIELD,), "send one file")])
    upload = uploads[0]
    content = upload.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"the data file is larger than {MAX_FILE_BYTES} bytes")
    fmt = format_of(upload.filename or "")
    try:
        spec = AuditSpec.model_validate(data, strict=True)
    except ValidationError as error:
        raise invalid_input(error, (REQUEST_FIELD,)) from None
    handle, _ = state.model(spec.model)  # its numeric features: how to read a CSV file
    tabular = handle.spec.tabular
    numeric = [] if tabular is None else tabular.numeric_features
    return spec, read_rows(content, fmt, MAX_ROWS, numeric)


def _own_job(id_: str) -> tuple[Runtime, AuditStore, Job]:
    state = runtime()
    store = _store(current_app, state)
    return state, store, store.get(id_, _owner())


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 0 < len(key) <= 128:
        raise InvalidInput(
            "bad idempotency key", [ErrorItem((IDEMPOTENCY_HEADER,), "1 to 128 characters")]
        )
    return key


# ---- routes ----


@bp.post(
    "/v1/audits",
    summary="Queue an audit of a data set (JSON instances or an uploaded file)",
    description="Returns 202 with the job and its `Location`. An `Idempotency-Key` header makes "
    "a retried POST (the same request) return the caller's existing job; a different request "
    "with a key already used is a 422.",
    responses={202: AuditCreated, **problem_responses(bp, 400, 401, 404, 413, 415, 422, 503)},
    openapi_extensions={
        **request_body(bp, AuditRequest, AuditMultipart),
        "parameters": [IDEMPOTENCY_PARAMETER],
    },
)
def create_audit() -> Response:
    state = runtime()
    spec, rows = _read_request(state)
    handle, engine = state.model(spec.model)
    limits = replace(model_limits(state.config, handle), max_instances=MAX_ROWS)
    check_limits(limits, len(rows), spec.options, audit_methods(handle, spec))
    validate(handle, spec, rows)
    key = _idempotency_key()
    store = _store(current_app, state)
    submitted = spec.model_dump(mode="json")
    job = store.by_key(_owner(), key) if key is not None else None
    created = False
    if job is None:
        with state.slot():
            rehearse(handle, engine, spec, rows[0])
        # A concurrent POST with the same key may have stored its job since the lookup:
        # then this one is not created, and must be a retry of that one.
        job, created = store.submit(_owner(), handle.name, submitted, rows, key)
    if not created and not store.submitted_as(job, submitted, rows):
        raise InvalidInput(
            "this Idempotency-Key was used for a different audit request",
            [ErrorItem((IDEMPOTENCY_HEADER,), "already used with another request body")],
        )
    response = jsonify(_document(job))
    response.status_code = 202
    response.headers["Location"] = url_for("audits.get_audit", id=job.id)
    return response


@bp.get(
    "/v1/audits/<id>",
    summary="An audit's status, progress {done, total}, ETA and timings",
    responses={200: AuditOut, **problem_responses(bp, 401, 404)},
)
def get_audit(path: AuditPath) -> Response:
    _, _, job = _own_job(path.id)
    return jsonify(_document(job))


@bp.delete(
    "/v1/audits/<id>",
    summary="Cancel an audit (a finished one is left as it is)",
    responses={200: AuditOut, **problem_responses(bp, 401, 404)},
)
def cancel_audit(path: AuditPath) -> Response:
    store = _store(current_app, runtime())
    return jsonify(_document(store.cancel(path.id, _owner())))


@bp.post(
    "/v1/audits/<id>/resume",
    summary="Queue a failed or cancelled audit again; the rows already stored are kept",
    description="Returns 202 with the job (queued again, its error cleared) and its `Location`, "
    "as `POST /v1/audits` does; only the rows not stored yet are explained. An audit that is "
    "queued, running or completed is a 409.",
    responses={202: AuditCreated, **problem_responses(bp, 401, 404, 409)},
)
def resume_audit(path: AuditPath) -> Response:
    _, store, job = _own_job(path.id)  # another caller's audit: a 404
    if job.status in STOPPED:
        try:
            job = store.requeue(job.id, _owner())
        except NotFound:  # resumed by a concurrent request since it was read
            job = store.get(job.id, _owner())
        else:
            response = jsonify(_document(job))
            response.status_code = 202
            response.headers["Location"] = url_for("audits.get_audit", id=job.id)
            return response
    raise Conflict(f"the audit is {job.status}: only a failed or cancelled audit can be resumed")


@bp.get(
    "/v1/audits/<id>/results",
    summary="Per-row results so far: JSONL (one explanation document per line), CSV or Parquet",
    responses={
        200: {
            "description": "the rows",
            "content": {t: {"schema": {}} for t in MEDIA_TYPES.values()},
        },
        **problem_responses(bp, 401, 404, 422),
    },
)
def get_results(path: AuditPath, query: ResultsQuery) -> Response:
    state, store, job = _own_job(path.id)
    handle, _ = state.model(job.model)
    classes = list(handle.spec.classes)
    mimetype = MEDIA_TYPES[query.format]
    if query.row is not None:  # one row shows inline
        texts = list(store.result_texts(job.id, query.row))
        if not texts:
            raise NotFound("no such row in this audit's results")
        parts = export_texts(lambda: texts, query.format, classes)
        return Response(b"".join(parts), mimetype=mimetype)
    # The whole set downloads as a file, streamed from the database (100,000 rows of
    # documents would take gigabytes held at once).
    parts = export_texts(lambda: store.result_texts(job.id), query.format, classes)
    response = Response(stream_with_context(parts), mimetype=mimetype)
    filename = f"audit-{job.id}.{query.format}"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get(
    "/v1/audits/<id>/report",
    summary="The audit's HTML report (self-contained, plots embedded)",
    responses={
        200: {"description": "HTML", "content": {"text/html": {"schema": {}}}},
        **problem_responses(bp, 401, 404, 409),
    },
)
def get_report(path: AuditPath) -> Response:
    state, store, job = _own_job(path.id)
    documents = store.results(job.id)  # read once, a batch at a time, by the summary
    first = next(documents, None)
    if first is None:
        later = "try again once its first rows are stored"
        ended = "there is nothing to report"
        reason = later if job.status in ("queued", "running") else ended
        raise NotYet(f"the audit has no rows stored (status {job.status}): {reason}")
    handle, _ = state.model(job.model)
    html = audit_report(
        handle,
        itertools.chain([first], documents),
        title=f"Audit {job.id} of {job.model}",
        status=job.status,
        total=job.total,
        segment_by=job.request.get("segment_by"),
        row_link=lambda row: url_for("audits.get_results", id=job.id, row=row),
    )
    return Response(html, mimetype="text/html")
