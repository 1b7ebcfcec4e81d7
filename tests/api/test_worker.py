"""`api.worker.ProblemThreadWorker.handle_error`, on a socket pair: gunicorn's status, our
problem body, and log lines without the request's bytes (tests/e2e/test_server_errors.py
sends the real requests to a live server)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http import errors as http

from api.worker import ProblemThreadWorker

CANARY = "PATIENT-4711-CANARY"


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, level: str) -> Any:
        def record(message: str, *args: Any, **kwargs: Any) -> None:
            self.lines.append(f"{level} {message % args if args else message} {kwargs}")

        return record


def answer(exc: BaseException) -> tuple[str, dict[str, Any], list[str]]:
    worker = object.__new__(ProblemThreadWorker)  # only cfg and log are used
    worker.cfg = Config()
    worker.log = RecordingLog()
    server, client = socket.socketpair()
    with server, client:
        worker.handle_error(None, server, ("127.0.0.1", 5000), exc)
        server.close()
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head.decode("latin-1"), json.loads(body), worker.log.lines


@pytest.mark.parametrize(
    ("exc", "status", "detail"),
    [
        (http.LimitRequestLine(5000, 4094), 414, "the request line is longer than 4094 bytes"),
        (http.InvalidHeader(f"X-Patient {CANARY}"), 400, "a request header field is malformed"),
        (
            http.UnsupportedTransferCoding(CANARY),
            501,
            "the request's transfer coding is not supported",
        ),
        (http.ExpectationFailed(CANARY), 417, "the request's Expect header cannot be met"),
        (http.InvalidChunkSize(CANARY.encode()), 400, "the chunked request body is malformed"),
    ],
)
def test_client_errors(exc: BaseException, status: int, detail: str) -> None:
    head, problem, lines = answer(exc)
    assert head.startswith(f"HTTP/1.1 {status} ")
    assert "Content-Type: application/problem+json" in head
    assert (problem["status"], problem["detail"], problem["errors"]) == (status, detail, [])
    assert problem["type"].startswith("urn:explainer:problem:")
    assert len(lines) == 1 and lines[0].startswith("warning invalid request: ")
    assert type(exc).__name__ in lines[0]
    assert CANARY not in head + json.dumps(problem) + "".join(lines)


def test_a_server_side_failure_is_a_500_logged_without_its_message() -> None:
    try:
        raise http.InvalidResponseHeader(CANARY)  # the app sent a bad header: not the client
    except http.InvalidResponseHeader as error:
        exc = error
    head, problem, lines = answer(exc)
    assert head.startswith("HTTP/1.1 500 ")
    assert problem["detail"] == "the server failed to handle the request"
    assert problem["title"] == "Internal Server Error"
    (line,) = lines
    assert line.startswith("error error handling a request: InvalidResponseHeader")
    assert "test_worker.py" in line  # the stack, for whoever debugs it
    assert CANARY not in head + json.dumps(problem) + line


# ---- a response that leaves the request body unread closes the connection, saying so ----


def respond_without_reading(head: bytes, sent: bytes, read: int = 0) -> Any:
    """gunicorn's Response to a request whose app answers 413 after reading `read` bytes
    of its body, through `ProblemThreadWorker`'s WSGI app."""
    from gunicorn.http import wsgi
    from gunicorn.http.parser import RequestParser

    from api.worker import CloseWhenBodyLeft

    cfg = Config()
    server, client = socket.socketpair()
    with server, client:
        client.sendall(head + sent)
        req = next(RequestParser(cfg, server, ("127.0.0.1", 5000)))
        resp, environ = wsgi.create(req, server, ("127.0.0.1", 5000), ("127.0.0.1", 8000), cfg)

        def app(environ: Any, start_response: Any) -> list[bytes]:
            environ["wsgi.input"].read(read)
            start_response("413 Request Entity Too Large", [("Content-Length", "0")])
            return [b""]

        for _ in CloseWhenBodyLeft(app)(environ, resp.start_response):
            pass
        return resp


def post(length: int, *extra: bytes) -> bytes:
    lines = [b"POST /v1/models/m/explain HTTP/1.1", b"Host: a", *extra]
    lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join([*lines, b"", b""])


def test_a_large_unread_body_closes_the_connection() -> None:
    # gunicorn would drain at most 64 KiB of it, then close a connection it had announced
    # as kept alive: the client's next request on it would fail without an answer.
    resp = respond_without_reading(post(300_000), b"a" * 20_000)
    assert resp.should_close()
    assert "Connection: close" in "".join(resp.default_headers())


def test_a_small_or_read_body_keeps_the_connection() -> None:
    assert not respond_without_reading(post(1_000), b"a" * 1_000).should_close()
    read = respond_without_reading(post(100_000), b"a" * 100_000, read=100_000)
    assert not read.should_close()
    assert "Connection: keep-alive" in "".join(read.default_headers())


def test_an_unfinished_chunked_body_closes_the_connection() -> None:
    head = b"POST /v1/models/m/explain HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert respond_without_reading(head, b"400\r\n" + b"a" * 1024 + b"\r\n").should_close()
