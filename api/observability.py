"""Request ids and one structured log line per request (route template, status, time).

Log lines never hold input values: the route is logged as its template
(`/v1/models/<name>/explain`), not the path, and bodies are never logged.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

log = logging.getLogger("api.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's request id is kept only when it is a UUID (with or without its dashes) or a
# 32-digit hex trace id: free text could carry a patient number, a card number or a name
# into the logs.
_HEX = "[0-9a-fA-F]"
_RANDOM_ID = re.compile(rf"{_HEX}{{8}}(-?){_HEX}{{4}}\1{_HEX}{{4}}\1{_HEX}{{4}}\1{_HEX}{{12}}")
UNMATCHED = "unmatched"  # the route of a request that matches none


def settled_request_id(given: str) -> str:
    """The client's request id when it is a random id (safe to echo and log), else a new one."""
    return given if _RANDOM_ID.fullmatch(given) else uuid.uuid4().hex


def _start() -> None:
    g.request_id = settled_request_id(request.headers.get(REQUEST_ID_HEADER, ""))
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "-")
    rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    log.info(
        "request_id=%s method=%s route=%s status=%d ms=%.1f",
        g.get("request_id", "-"),
        request.method,
        rule,
        response.status_code,
        elapsed_ms,
    )
    return response


def install_request_logging(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
