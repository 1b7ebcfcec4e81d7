"""RFC 9457 problem responses for every error, and the handlers that produce them.

Bodies are `{"type", "title", "status", "detail", "errors": [{"loc", "msg"}]}` served as
`application/problem+json`. Details and messages name keys and locations, never the
values sent (inputs may be clinical data), and never carry a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flask import Flask, Response, g, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from models.errors import ErrorItem, InvalidInput, ServiceError

log = logging.getLogger(__name__)

PROBLEM_MIME = "application/problem+json"
TYPE_PREFIX = "urn:explainer:problem:"


class MalformedRequest(ServiceError):
    """The body is not valid JSON, or the request is otherwise unreadable."""

    status = 400
    title = "Malformed request"


class Unauthorized(ServiceError):
    """No or a wrong API key."""

    status = 401
    title = "Unauthorized"


class UnsupportedMediaType(ServiceError):
    """The body's content type is not one the endpoint takes."""

    status = 415
    title = "Unsupported media type"


class Conflict(ServiceError):
    """The resource is not in a state that allows the request (resuming a running audit)."""

    status = 409
    title = "Conflict"


class ServiceBusy(ServiceError):
    """Every explanation slot stayed busy for the queue timeout."""

    status = 503
    title = "Service busy"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def problem_document(
    status: int, title: str, detail: str, errors: Iterable[ErrorItem] = ()
) -> dict[str, Any]:
    """A problem's body (also written by `api.worker`, outside any Flask request)."""
    return {
        "type": TYPE_PREFIX + _slug(title),
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [{"loc": list(item.loc), "msg": item.msg} for item in errors],
    }


def problem(
    status: int,
    title: str,
    detail: str,
    errors: Iterable[ErrorItem] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem+json response."""
    response = jsonify(problem_document(status, title, detail, errors))
    response.status_code = status
    response.mimetype = PROBLEM_MIME
    response.headers.update(headers or {})
    return response


_PYDANTIC_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "field required",
    "json_invalid": "invalid JSON",
}


def validation_items(error: ValidationError, prefix: Sequence[str | int] = ()) -> list[ErrorItem]:
    """pydantic errors -> items with locations and messages, without the input values."""
    items = []
    for entry in error.errors(include_input=False, include_url=False, include_context=False):
        loc = tuple(part for part in entry["loc"] if isinstance(part, str | int))
        msg = _PYDANTIC_MESSAGES.get(entry["type"], entry["msg"])
        items.append(ErrorItem((*prefix, *loc), msg.removeprefix("Value error, ")))
    return items


def invalid_input(error: ValidationError, prefix: Sequence[str | int] = ()) -> InvalidInput:
    """A pydantic error on (a part of) the request body as a 422; `prefix` locates the part."""
    return InvalidInput("the request does not match the schema", validation_items(error, prefix))


def openapi_validation_response(error: ValidationError) -> Response:
    """flask-openapi3's `validation_error_callback`: path and query errors as problems."""
    return problem(
        422, "Invalid input", "the request does not match the schema", validation_items(error)
    )


def _service_error(error: ServiceError) -> Response:
    headers = {"Retry-After": "5"} if error.status == 503 else {}
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="explainer"'
    return problem(error.status, error.title, error.detail, error.errors, headers)


def _http_error(error: HTTPException) -> Response:
    code = error.code or 500
    title = error.name if error.code else "Internal error"
    headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
    detail = {
        404: "no such resource",
        405: "method not allowed on this resource",
        413: "request body larger than the configured limit",
    }.get(code, title.lower())
    return problem(code, title, detail, headers=headers)


def _unexpected(error: Exception) -> Response:
    log.error(
        "unhandled %s in request %s",
        type(error).__name__,
        g.get("request_id", "-"),
        exc_info=error,
    )
    return problem(500, "Internal error", "the server failed to handle the request")


def register_error_handlers(app: Flask) -> None:
    """Every error becomes a problem response."""
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
