"""Bounded concurrency and a time limit for the compute endpoints (explain and predict).

A WSGI middleware around the Flask app, per worker process:

- Admission: at most `max_concurrency + max_queue` explain/predict requests are in flight;
  one more gets 503 problem+json with `Retry-After` at once (it never waits in a queue).
- Time limit: an admitted request runs in a compute thread; when it has not finished after
  `request_timeout_s` the caller gets 504 problem+json and the request thread moves on.
  The late computation is then cancelled (`explainer.cancellation`): it stops before its
  next model call, frees the device and its admission slot, and stores nothing. A model
  call itself cannot be interrupted safely (it is one C++ call), so a hung one keeps its
  slot until it returns: a stuck model sheds load instead of piling it up.

Other routes (health, docs, stored explanations, audits) bypass both. Like every response,
the 503 and 504 carry `X-Request-ID`: the gate settles the request id (the client's safe one,
else a new one) and hands it on to the app in the environ, so the app's log line and
response use the same id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from api.config import ApiConfig
from api.errors import problem
from api.observability import REQUEST_ID_HEADER, settled_request_id
from explainer.cancellation import cancellable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

LIMITED_ENDPOINTS = frozenset(
    {
        "models.predict_route",
        "models.predict_kserve",
        "explanations.explain_route",
        "explanations.explain_kserve",
    }
)
RETRY_AFTER_S = 1
REQUEST_ID_KEY = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")  # its WSGI environ key
Finished = tuple[str, list[tuple[str, str]], bytes]  # status line, headers, body


class ComputeGate:
    """WSGI middleware: admission control and a time limit for `LIMITED_ENDPOINTS`."""

    def __init__(self, app: Flask, capacity: int, timeout_s: float) -> None:
        self.app = app
        self.inner: WSGIApplication = app.wsgi_app
        self.capacity = capacity
        self.timeout_s = timeout_s
        self._permits = threading.BoundedSemaphore(capacity)
        self._pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="compute")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self._limited_route(environ)
        if route is None:
            return self.inner(environ, start_response)
        request_id = _request_id(environ)
        id_header = {REQUEST_ID_HEADER: request_id}
        if not self._permits.acquire(blocking=False):
            log.warning(
                "request_id=%s method=POST route=%s status=503 overloaded: %d in flight",
                request_id,
                route,
                self.capacity,
            )
            detail = (
                f"this worker's limit of explain or predict requests in flight ({self.capacity})"
                " is reached; retry"
            )
            retry = {**id_header, "Retry-After": str(RETRY_AFTER_S)}
            return self._problem(environ, start_response, 503, "Service busy", detail, retry)
        given_up = threading.Event()
        future = self._pool.submit(self._run, environ, given_up)
        try:
            status, headers, body = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            given_up.set()
            log.warning(
                "request_id=%s method=POST route=%s status=504 time limit %.1f s",
                request_id,
                route,
                self.timeout_s,
            )
            detail = f"the request took longer than the {self.timeout_s:g} s time limit"
            return self._problem(
                environ, start_response, 504, "Time limit exceeded", detail, id_header
            )
        start_response(status, headers)
        return [body]

    def _limited_route(self, environ: WSGIEnvironment) -> str | None:
        """The route template of a POST to one of `LIMITED_ENDPOINTS`, else None."""
        if environ.get("REQUEST_METHOD") != "POST":
            return None
        try:
            rule, _ = self.app.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:
            return None
        return str(rule.rule) if rule.endpoint in LIMITED_ENDPOINTS else None

    def _run(self, environ: WSGIEnvironment, given_up: threading.Event) -> Finished:
        """Run the app to the end of its body (in a compute thread); free the permit after.

        Model calls stop once `given_up` is set (the caller has had its 504).
        """
        try:
            started: dict[str, Any] = {}

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                started.update(status=status, headers=headers)
                return lambda _data: None

            with cancellable(given_up):
                chunks = self.inner(environ, start)
                try:
                    body = b"".join(chunks)
                finally:
                    getattr(chunks, "close", lambda: None)()
            return started["status"], started["headers"], body
        finally:
            self._permits.release()

    def _problem(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> Iterable[bytes]:
        with self.app.app_context():
            response = problem(status, title, detail, headers=headers)
        return response(environ, start_response)


def _request_id(environ: WSGIEnvironment) -> str:
    """The request's id, as the app would settle it (the client's when safe, else a new
    one), stored back in `environ` for the app and the gate's own answers to use."""
    environ[REQUEST_ID_KEY] = settled_request_id(str(environ.get(REQUEST_ID_KEY, "")))
    return str(environ[REQUEST_ID_KEY])


def install_overload(app: Flask, config: ApiConfig) -> None:
    """Wrap `app.wsgi_app` in a ComputeGate sized by the config."""
    capacity = config.max_concurrency + config.max_queue
    app.wsgi_app = ComputeGate(app, capacity, config.request_timeout_s)  # type: ignore[method-assign]
