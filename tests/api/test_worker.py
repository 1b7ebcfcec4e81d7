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
