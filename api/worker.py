"""gunicorn's gthread worker, answering the errors gunicorn handles itself as problems.

gunicorn answers some requests before the app sees them: a request line over
`limit_request_line` (414), too many header fields or one too large (431), a malformed
request line or header line (400), a transfer coding it does not support (501)... Its own
answer is an HTML page that repeats the offending bytes, and its log line repeats them too.
`ProblemThreadWorker` answers them as `application/problem+json` (the body every other error
has, see `api.errors`) with a detail that names what was wrong, never what was sent (it may
be clinical data), and logs the status and the exception's class only.

The status and reason are gunicorn's own: its `Worker.handle_error` decides them, writing
its page to a stand-in socket that keeps them, with a stand-in logger that drops its lines.

It also closes the connection, saying so (`Connection: close`), after a response that left
much of the request body unread (a 413 for a body over the limit, the overload gate's 503
to an image upload): gunicorn discards at most 64 KiB of an unread body before it closes
the connection, and would otherwise have announced `keep-alive`, so that a client's next
request on that connection failed with the connection reset, without an answer.
"""

from __future__ import annotations

import json
import traceback
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from gunicorn import util
from gunicorn.http import errors as http
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.wsgi import Response
from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import ThreadWorker

from api.errors import PROBLEM_MIME, problem_document
from api.observability import REQUEST_ID_HEADER

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# What was wrong, by gunicorn's exception class (the first match wins); `{...}` fields are
# the worker's settings. None of them holds a byte of the request.
DETAILS: tuple[tuple[type[BaseException], str], ...] = (
    (http.LimitRequestLine, "the request line is longer than {limit_request_line} bytes"),
    (
        http.LimitRequestHeaders,
        "too many request header fields (at most {limit_request_fields}), or a header field "
        "larger than {limit_request_field_size} bytes",
    ),
    (http.InvalidRequestLine, "the request line is malformed"),
    (http.InvalidRequestMethod, "the request method is malformed"),
    (http.InvalidHTTPVersion, "the HTTP version is not supported"),
    (http.ObsoleteFolding, "a request header field is folded over several lines"),
    (http.InvalidHeaderName, "a request header field name is malformed"),
    (http.InvalidHeader, "a request header field is malformed"),
    (http.UnsupportedTransferCoding, "the request's transfer coding is not supported"),
    (http.InvalidChunkSize, "the chunked request body is malformed"),
    (http.ChunkMissingTerminator, "the chunked request body is malformed"),
    (http.InvalidChunkExtension, "the chunked request body is malformed"),
    (http.ExpectationFailed, "the request's Expect header cannot be met"),
    (http.InvalidSchemeHeaders, "the request's scheme headers contradict each other"),
    (http.InvalidProxyLine, "the PROXY protocol line is malformed"),
    (http.ForbiddenProxyRequest, "PROXY protocol requests are not allowed from this address"),
)
UNEXPECTED = "the server failed to handle the request"
# The most of an unread request body gunicorn discards to keep the connection
# (`gunicorn.http.parser._DRAIN_MAX_BYTES`); with more left it closes the connection.
DRAIN_LIMIT = 64 * 1024


class _StatusLine:
    """A stand-in client socket: keeps the status code and reason gunicorn writes."""

    def __init__(self) -> None:
        self.status = 500
        self.reason = "Internal Server Error"

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, _flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        # "HTTP/1.1 414 URI Too Long\r\n..."
        _, status, reason = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        self.status, self.reason = int(status), reason


class _Silent:
    """A stand-in for gunicorn's logger: its lines would repeat the request's bytes."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *args, **kwargs: None


def gunicorn_status(worker: Worker, req: Any, addr: Any, exc: BaseException) -> tuple[int, str]:
    """The status code and reason gunicorn's own `handle_error` answers `exc` with."""
    line = _StatusLine()
    stand_in = SimpleNamespace(cfg=worker.cfg, log=_Silent())
    Worker.handle_error(stand_in, req, line, addr, exc)
    return line.status, line.reason


def server_fault(exc: BaseException, status: int) -> bool:
    """Whether gunicorn's answer is a server error, not the client's (its 501 for a transfer
    coding it does not support is the client's)."""
    return status >= 500 and not isinstance(exc, http.UnsupportedTransferCoding)


def detail_of(exc: BaseException, status: int, reason: str, cfg: Any) -> str:
    """What was wrong, without the request's bytes."""
    if server_fault(exc, status):
        return UNEXPECTED
    for kind, detail in DETAILS:
        if isinstance(exc, kind):
            return detail.format(
                limit_request_line=cfg.limit_request_line,
                limit_request_fields=cfg.limit_request_fields,
                limit_request_field_size=cfg.limit_request_field_size,
            )
    return reason.lower()


def problem_bytes(status: int, reason: str, detail: str) -> bytes:
    """A whole HTTP/1.1 response: the problem, then the connection closes."""
    body = json.dumps(problem_document(status, reason, detail)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_MIME}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{REQUEST_ID_HEADER}: {uuid.uuid4().hex}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def body_left_over(environ: WSGIEnvironment) -> bool:
    """Whether more of the request body is unread than gunicorn discards to keep the
    connection (a chunked body not read to its end counts as too much: its size is unknown)."""
    body = environ.get("wsgi.input")
    reader = getattr(body, "reader", None)
    if isinstance(reader, LengthReader):
        buffered = getattr(body, "buf", None)
        held = len(buffered.getbuffer()) - buffered.tell() if buffered is not None else 0
        return reader.length + held >= DRAIN_LIMIT
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None
    return False


class CloseWhenBodyLeft:
    """WSGI middleware: a response that leaves more of the request body unread than gunicorn
    discards says `Connection: close` (gunicorn would close the connection after it anyway)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            response = getattr(start_response, "__self__", None)  # gunicorn's, bound
            if isinstance(response, Response) and body_left_over(environ):
                response.force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


class ProblemThreadWorker(ThreadWorker):
    """The gthread worker, with gunicorn's own error answers as problem+json."""

    wsgi: Any  # the application, set by `load_wsgi`

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = CloseWhenBodyLeft(self.wsgi)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        addr = addr or ("", -1)  # a unix socket
        status, reason = gunicorn_status(self, req, addr, exc)
        if server_fault(exc, status):
            # Not the client's fault. The class and the stack, without the message or the
            # URI that gunicorn logs.
            stack = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
            self.log.error("error handling a request: %s\n%s", type(exc).__name__, stack)
        else:
            # No client address: the request log names none either (it may identify a site).
            self.log.warning("invalid request: %d %s (%s)", status, reason, type(exc).__name__)
        response = problem_bytes(status, reason, detail_of(exc, status, reason, self.cfg))
        try:
            util.write_nonblock(client, response)
        except Exception:
            self.log.debug("failed to send the error response")
