"""Start `explainer serve` (gunicorn) on a free loopback port for benchmarks and tests.

`running_server` yields a `LiveServer` (base URL, process, log file) once /readyz is 200,
and stops the server (SIGTERM, then SIGKILL) when the block ends. stdout and stderr go to
one log file, so callers can check what the server logged.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

EXPLAINER = Path(sys.executable).with_name("explainer")
STARTUP_TIMEOUT_S = 300.0


class ServerFailed(RuntimeError):
    """The server exited or did not become ready; the message holds its log."""


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's child processes."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: LiveServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"exited with {server.process.returncode}:\n{server.log_text()}")
        try:
            if requests.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # starting, or busy loading
            pass
        time.sleep(0.3)
    raise ServerFailed(f"not ready after {timeout_s} s:\n{server.log_text()}")


@contextmanager
def running_server(
    workdir: Path,
    model_repo: Path | None = None,
    settings: Mapping[str, str] | None = None,
    workers: int = 1,
    threads: int = 4,
) -> Iterator[LiveServer]:
    """A live server with a fresh SQLite database in `workdir`; `settings` are EXPLAINER_*."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAINER_")}
    env["EXPLAINER_DATABASE_URL"] = f"sqlite:///{workdir / 'explainer.db'}"
    env.update(settings or {})
    port = free_port()
    command = [str(EXPLAINER), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--threads", str(threads)]
    if model_repo is not None:
        command += ["--model-repo", str(model_repo)]
    log = workdir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=workdir
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server, STARTUP_TIMEOUT_S)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
