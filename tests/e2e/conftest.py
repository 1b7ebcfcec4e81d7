"""`live_server`: a real `explainer serve` (gunicorn) on a free port with a temporary database.

It serves the built-in zoo (or `EXPLAINER_E2E_MODEL_REPO`), waits for /readyz, yields the
base URL (e.g. "http://127.0.0.1:40123") and stops the server at the end of the session.
The server's log is kept in the temporary directory and printed if it fails to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

STARTUP_TIMEOUT_S = 300  # workers load the zoo and warm SHAP up before /readyz turns 200
EXPLAINER = Path(sys.executable).with_name("explainer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"explainer serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"explainer serve was not ready after {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a live server; stopped (SIGTERM, then SIGKILL) after the session."""
    directory = tmp_path_factory.mktemp("live-server")
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("EXPLAINER_") or key == "EXPLAINER_DEVICE"
    }
    env["EXPLAINER_DATABASE_URL"] = f"sqlite:///{directory / 'explainer.db'}"
    repo = os.environ.get("EXPLAINER_E2E_MODEL_REPO")
    command = [str(EXPLAINER), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if repo:
        command += ["--model-repo", repo]
    log = directory / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=directory
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
