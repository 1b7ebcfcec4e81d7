"""Fixtures for the notebook tests: the venv's Jupyter kernel and a shared live server.

`notebook_support` imports `notebooks/_support.py` (the helpers the notebooks use).
`kernel_env` installs a `python3` kernelspec for THIS interpreter (the venv's) into a
temporary JUPYTER_PATH, so that a kernelspec in the user's global Jupyter config can never
be picked instead; nothing is written outside the temporary directory. `notebook_server`
starts one `explainer serve` of the zoo on a free port for the whole session.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL_NAME = "python3"


def notebook_module(name: str) -> ModuleType:
    """Import a module that lives in `notebooks/` (`_support`, `strip_outputs`)."""
    if str(NOTEBOOKS) not in sys.path:
        sys.path.insert(0, str(NOTEBOOKS))
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def notebook_support() -> ModuleType:
    """The notebooks' helper module `_support`."""
    return notebook_module("_support")


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for kernels: JUPYTER_PATH first names a kernelspec of sys.executable."""
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ipykernel",
            "install",
            "--prefix",
            str(prefix),
            "--name",
            KERNEL_NAME,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    jupyter_path = str(prefix / "share" / "jupyter")
    with pytest.MonkeyPatch.context() as patch:
        # The kernel manager of this process looks the spec up in JUPYTER_PATH first.
        patch.setenv("JUPYTER_PATH", jupyter_path)
        yield {**os.environ, "JUPYTER_PATH": jupyter_path}


@pytest.fixture(scope="session")
def notebook_server(notebook_support: ModuleType) -> Iterator[str]:
    """Base URL of a live server of the zoo, shared by the notebooks; stopped at the end."""
    server = notebook_support.start_server()
    try:
        yield server.url
    finally:
        server.stop()
