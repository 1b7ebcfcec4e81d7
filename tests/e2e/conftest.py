"""`live_server`: a real `explainer serve` (gunicorn) on a free port with a temporary database.

It serves the built-in zoo (or `EXPLAINER_E2E_MODEL_REPO`), waits for /readyz, yields the
base URL (e.g. "http://127.0.0.1:40123") and stops the server at the end of the session.
The server's log is kept in the temporary directory and shown if it fails to start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from benchmarks.liveserver import running_server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a live server; stopped (SIGTERM, then SIGKILL) after the session."""
    with running_server(
        tmp_path_factory.mktemp("live-server"),
        os.environ.get("EXPLAINER_E2E_MODEL_REPO") or None,
        threads=None,
        inherit=["EXPLAINER_DEVICE"],
    ) as server:
        yield server.url
