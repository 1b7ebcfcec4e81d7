"""`fuzz_server`: a live server on tests/api/repo.py's tiny models with small cost limits.

The limits keep every generated explain request cheap (a few milliseconds), so hundreds of
examples per operation finish in about a minute on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.liveserver import LiveServer, running_server
from tests.api.repo import build_repository

SMALL_LIMITS = {
    "EXPLAINER_MAX_INSTANCES": "2",
    "EXPLAINER_MAX_N_STEPS": "8",
    "EXPLAINER_MAX_NUM_SAMPLES": "100",
    "EXPLAINER_MAX_DEPTH": "3",
    "EXPLAINER_MAX_IMAGE_PIXELS": str(64 * 64),
    "EXPLAINER_MAX_BODY_BYTES": str(256 * 1024),
    "EXPLAINER_REQUEST_TIMEOUT_S": "30",
}


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    repo = build_repository(tmp_path_factory.mktemp("fuzz-models"))
    workdir = tmp_path_factory.mktemp("fuzz-server")
    with running_server(workdir, repo, SMALL_LIMITS, threads=8) as server:
        yield server
