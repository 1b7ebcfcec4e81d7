"""`fault_server`: a live server on a repository holding only tests/faults/faulty.py's model.

Its request time limit is short (TIME_LIMIT_S) so a hung forward is cut off quickly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.liveserver import LiveServer, running_server
from tests.faults.faulty import write_faulty_model

ROOT = Path(__file__).parents[2]
TIME_LIMIT_S = 1.5


@pytest.fixture(scope="session")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    repo = write_faulty_model(tmp_path_factory.mktemp("fault-models"))
    settings = {
        "PYTHONPATH": str(ROOT),  # the server imports the model's factory from tests/
        "EXPLAINER_REQUEST_TIMEOUT_S": str(TIME_LIMIT_S),
        "EXPLAINER_DEVICE": "cpu",
    }
    with running_server(tmp_path_factory.mktemp("fault-server"), repo, settings) as server:
        yield server
