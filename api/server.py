"""Run the app under gunicorn (gthread workers), for `explainer serve`.

The master process only prepares the database tables and forks: it never creates the
Engine or touches `torch.cuda`. Each worker builds its own app (Engine, models) in
`load()`, after the fork, and loads the models in a background thread so /healthz answers
at once and /readyz turns 200 when they are ready.

With several workers, Prometheus metrics are kept in prometheus_client's multiprocess mode:
PROMETHEUS_MULTIPROC_DIR names a fresh temporary directory (or the caller's own, which must
start empty), set before any worker imports prometheus_client, and a worker's live gauges
are dropped when it exits.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gunicorn.app.base import BaseApplication

from api.config import ApiConfig, usable_cores
from api.db import create_db_engine, init_db
from api.store import explanations  # noqa: F401 (registers the table on the metadata)

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ExplainerServer(BaseApplication):
    """A gunicorn application whose workers each call `create_app(config)`."""

    def __init__(self, config: ApiConfig, options: dict[str, Any]) -> None:
        self.api_config = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        # Settings this gunicorn version lacks (e.g. the control socket before 25.1) are skipped.
        for key, value in self.options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        from api.app import create_app  # in the worker, after the fork

        return create_app(self.api_config)


def threads_per_worker(workers: int) -> int:
    """The CPU cores this process may use, shared out among the workers (at least one).

    Each worker otherwise starts as many torch threads as there are cores: with two workers
    on two cores, four threads contend and a credit-risk bundle ran 4x slower.
    """
    return max(1, usable_cores() // workers)


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(config: ApiConfig, host: str, port: int, workers: int, threads: int) -> None:
    """Create the tables once, then run gunicorn until it is stopped."""
    init_db(create_db_engine(config.database_url))
    options = {
        "bind": bind_address(host, port),
        "workers": workers,
        "worker_class": "api.worker.ProblemThreadWorker",  # gthread; its own errors as problems
        "threads": threads,
        "timeout": 300,
        "graceful_timeout": 30,
        "preload_app": False,
        "accesslog": None,
        "loglevel": "info",
        # One shared ~/.gunicorn/gunicorn.ctl would clash between servers on one machine.
        "control_socket_disable": True,
        "child_exit": _child_exit,
    }
    with metrics_directory(workers):
        ExplainerServer(worker_config(config, workers), options).run()


@contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """Several workers: PROMETHEUS_MULTIPROC_DIR, a temporary directory unless already set."""
    if workers == 1 or MULTIPROC_ENV in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="explainer-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


def _child_exit(_server: Any, worker: Any) -> None:
    """gunicorn's hook in the master when a worker exits: drop that worker's live gauges."""
    if MULTIPROC_ENV in os.environ:
        from prometheus_client import multiprocess  # only here: the master records no metrics

        multiprocess.mark_process_dead(worker.pid)


def worker_config(config: ApiConfig, workers: int) -> ApiConfig:
    """What each worker runs with: models loaded in the background, its share of the cores."""
    torch_threads = config.torch_threads or threads_per_worker(workers)
    return config.model_copy(update={"background_load": True, "torch_threads": torch_threads})
