"""Requests gunicorn refuses before the app sees them are answered as problem+json too.

A request line over 4094 bytes, a header line without a colon, too many header fields or
one too large: gunicorn answers these itself (`api.worker.ProblemThreadWorker`). The answer
is our documented problem body with gunicorn's status, and neither it nor the server's log
repeats a byte of what was sent (a canary stands in for a patient number).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.liveserver import LiveServer, running_server
from tests.api.repo import build_repository

pytestmark = pytest.mark.e2e

CANARY = "PATIENT-4711-CANARY"
PROBLEM_MIME = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server on the tiny test repository (it starts in seconds)."""
    repo = build_repository(tmp_path_factory.mktemp("models"))
    settings = {"EXPLAINER_DEVICE": "cpu"}
    with running_server(tmp_path_factory.mktemp("server"), repo, settings) as live:
        yield live


def exchange(server: LiveServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a fresh connection; the status, headers (lower-case) and body."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def request(first_line: str, *header_lines: str) -> bytes:
    lines = [first_line, "Host: 127.0.0.1", *header_lines, "", ""]
    return "\r\n".join(lines).encode("latin-1")


CASES: list[tuple[str, bytes, int, str, str]] = [
    (
        "request line over 4094 bytes",
        request(f"GET /v1/models?note={CANARY}{'x' * 5000} HTTP/1.1"),
        414,
        "URI Too Long",
        "the request line is longer than 4094 bytes",
    ),
    (
        "header line without a colon",
        request("GET /healthz HTTP/1.1", f"X-Patient {CANARY}"),
        400,
        "Bad Request",
        "a request header field is malformed",
    ),
    (
        "malformed header name",
        request("GET /healthz HTTP/1.1", f"X-{CANARY}(name): 1"),
        400,
        "Bad Request",
        "a request header field name is malformed",
    ),
    (
        "too many header fields",
        request("GET /healthz HTTP/1.1", *[f"X-Field-{i}: {CANARY}" for i in range(150)]),
        431,
        "Request Header Fields Too Large",
        "too many request header fields (at most 100), or a header field larger than 8190 bytes",
    ),
    (
        "header field too large",
        request("GET /healthz HTTP/1.1", f"X-Note: {CANARY}{'y' * 9000}"),
        431,
        "Request Header Fields Too Large",
        "too many request header fields (at most 100), or a header field larger than 8190 bytes",
    ),
    (
        "malformed method",
        request(f"G{CANARY}(T) /healthz HTTP/1.1"),
        400,
        "Bad Request",
        "the request method is malformed",
    ),
]


@pytest.mark.parametrize(
    ("raw", "status", "title", "detail"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_gunicorn_errors_are_problems(
    server: LiveServer, raw: bytes, status: int, title: str, detail: str
) -> None:
    got, headers, body = exchange(server, raw)
    assert got == status, body
    assert headers["content-type"] == PROBLEM_MIME
    assert int(headers["content-length"]) == len(body)
    assert len(headers["x-request-id"]) == 32
    problem: dict[str, Any] = json.loads(body)
    slug = title.lower().replace(" ", "-")
    assert problem == {
        "type": f"urn:explainer:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [],
    }
    assert CANARY.encode() not in body
    assert b"Traceback" not in body
    log = Path(server.log).read_text(errors="replace")
    assert CANARY not in log
    assert "Traceback" not in log
    assert f"{status} {title}" in log  # logged, by status and the exception's class


def test_the_server_still_answers_after_them(server: LiveServer) -> None:
    status, headers, body = exchange(server, request("GET /healthz HTTP/1.1", "Connection: close"))
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")


def test_a_body_over_the_limit_closes_the_connection_saying_so(server: LiveServer) -> None:
    """The app answers 413 without reading the body; gunicorn then discards at most 64 KiB
    of it and closes the connection, so the answer must not announce keep-alive (a client
    would send its next request on a connection about to close, and get no answer)."""
    host, port = server.url.removeprefix("http://").split(":")
    head = request(
        "POST /v1/models/anything/explain HTTP/1.1",
        "Content-Type: application/json",
        f"Content-Length: {16 * 1024 * 1024 + 1}",  # one byte over the default limit
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"[" + b" " * 256 * 1024)  # the rest is never sent
        received = b""
        while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
            received += chunk
    status_line, *lines = received.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    assert status_line.split(" ")[1] == "413"
    assert headers["connection"] == "close"
