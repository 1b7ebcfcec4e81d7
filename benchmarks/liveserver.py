"""Start `explainer serve` (gunicorn) on a free loopback port for benchmarks, tests, notebooks
and docs/make_screenshots.py.

`running_server` returns a `LiveServer` (base URL, process, log file) once /readyz is 200
and every worker has loaded its models;
`stop()` stops it (SIGTERM, then SIGKILL), as does the end of a `with running_server(...)`
block. stdout and stderr go to one log file, so callers can check what the server logged.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

STARTUP_TIMEOUT_S = 300.0  # workers load their models and warm SHAP up before /readyz is 200
STOP_TIMEOUT_S = 30.0


class ServerFailed(RuntimeError):
    """The server exited or did not become ready; for a server started here, with its log."""


@dataclass(frozen=True)
class LiveServer:
    """A started `explainer serve`: its gunicorn master runs in its own process group."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    workdir: Path
    temporary: bool = False  # `stop()` removes `workdir`

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's child processes."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (gunicorn's graceful stop), then SIGKILL after STOP_TIMEOUT_S."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.temporary:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL the master and its workers at once (the whole process group), as a crash."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def run_clients(clients: int, client: Callable[..., None], *args: Any) -> None:
    """Run `client(*args)` in `clients` threads at once and wait for all of them."""
    threads = [threading.Thread(target=client, args=args) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def explainer_command() -> list[str]:
    """The `explainer` console script of this Python environment (the venv's, in the tests)."""
    script = Path(sys.executable).with_name("explainer")
    if script.is_file():
        return [str(script)]
    found = shutil.which("explainer")
    if found is None:
        raise FileNotFoundError("the `explainer` command is not installed in this environment")
    return [found]


def wait_workers_ready(server: LiveServer, workers: int, timeout_s: float) -> None:
    """Wait until every worker has logged that its models are ready.

    /readyz answers from whichever worker takes the connection, so one 200 does not mean
    that the other workers have finished loading (api.runtime logs "models ready on").
    """
    deadline = time.monotonic() + timeout_s
    while server.log_text().count("models ready on") < workers:
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise ServerFailed(f"not all {workers} workers of {server.url} became ready")
        time.sleep(0.3)


def wait_ready(
    url: str,
    timeout_s: float = STARTUP_TIMEOUT_S,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `url`/readyz until it answers 200; ServerFailed on timeout or if `process` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerFailed(f"explainer serve exited with {process.returncode}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:  # starting, or busy loading
            pass
        time.sleep(0.3)
    raise ServerFailed(f"{url} was not ready after {timeout_s:.0f} s")


def running_server(
    workdir: Path | None = None,
    model_repo: str | Path | None = None,
    settings: Mapping[str, str] | None = None,
    workers: int = 1,
    threads: int | None = 4,
    inherit: Collection[str] = (),
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> LiveServer:
    """Start a server with a fresh SQLite database in `workdir` (its working directory).

    It is returned once /readyz is 200; `stop()` it, or use it as a `with` block's context
    manager. Without `workdir`, a temporary directory that `stop()` removes. `settings` adds
    environment variables (EXPLAINER_* settings, PYTHONPATH for a model's factory); of this
    process's own EXPLAINER_* variables only those named in `inherit` are passed on.
    `threads=None` keeps `explainer serve`'s default. A server not ready within `timeout_s`
    is stopped and ServerFailed carries its log.
    """
    temporary = workdir is None
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="explainer-server-"))
    else:
        workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAINER_") or k in inherit}
    env["EXPLAINER_DATABASE_URL"] = f"sqlite:///{workdir / 'explainer.db'}"
    env.update(settings or {})
    port = free_port()
    command = [*explainer_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers)]
    if threads is not None:
        command += ["--threads", str(threads)]
    if model_repo is not None:
        command += ["--model-repo", str(Path(model_repo).resolve())]
    log = workdir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log, workdir, temporary)
    try:
        wait_ready(server.url, timeout_s, process)
        wait_workers_ready(server, workers, timeout_s)
    except ServerFailed as error:
        output_so_far = server.log_text()
        server.stop()
        raise ServerFailed(f"{error}\n--- server log ---\n{output_so_far}") from None
    return server
