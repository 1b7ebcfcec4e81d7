"""The example notebooks: committed without outputs, and each one runs without an error.

Every notebook is executed with nbclient in the venv's `python3` kernel, with the working
directory set to `notebooks/`, a timeout per cell, `EXPLAINER_URL` naming one live server
shared by all of them (notebook 05 starts its own server for its own model repository), and
`EXPLAINER_NOTEBOOK_OUT` pointing the files they write to a temporary directory.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode

from tests.notebooks.conftest import KERNEL_NAME, NOTEBOOKS, notebook_module

NOTEBOOK_PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
EXPECTED = [
    "01-quickstart",
    "02-clinical-heatmaps",
    "03-finance-reason-codes",
    "04-batch-audit",
    "05-bring-your-own-model",
]
CELL_TIMEOUT_S = 300  # a cell that starts a server waits for its models to load
MAX_NOTEBOOK_BYTES = 64 * 1024  # committed notebooks are sources only


def _execute(notebook: NotebookNode, env: dict[str, str]) -> NotebookNode:
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    return client.execute(env=env)


def _errors(notebook: NotebookNode) -> list[str]:
    return [
        f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
        for index, cell in enumerate(notebook.cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def test_every_notebook_is_present() -> None:
    assert [path.stem for path in NOTEBOOK_PATHS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES
    assert notebook.metadata["kernelspec"]["name"] == KERNEL_NAME
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"
        assert "execution" not in cell.metadata, f"cell {index} has execution metadata"


def test_strip_outputs_clears_what_execution_adds(tmp_path: Path) -> None:
    strip_outputs = notebook_module("strip_outputs")
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3)
    cell.outputs = [
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)
    ]
    cell.metadata["execution"] = {"shell.execute_reply": "2026-01-01T00:00:00Z"}
    path = tmp_path / "executed.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    assert strip_outputs.main(["--check", str(path)]) == 1
    assert strip_outputs.main([str(path)]) == 0
    stripped = nbformat.read(path, as_version=4).cells[0]
    assert stripped.outputs == [] and stripped.execution_count is None
    assert "execution" not in stripped.metadata
    assert strip_outputs.main(["--check", str(path)]) == 0


@pytest.mark.e2e
def test_kernel_is_this_venv(kernel_env: dict[str, str]) -> None:
    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert Path(spec.argv[0]) == Path(sys.executable)
    probe = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import sys; print(sys.prefix)")]
    )
    executed = _execute(probe, kernel_env)
    assert executed.cells[0].outputs[0]["text"].strip() == sys.prefix


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_notebook_runs(
    path: Path,
    kernel_env: dict[str, str],
    notebook_server: str,
    tmp_path: Path,
    record_property: Any,
) -> None:
    notebook = nbformat.read(path, as_version=4)
    env = {**kernel_env, "EXPLAINER_URL": notebook_server, "EXPLAINER_NOTEBOOK_OUT": str(tmp_path)}
    started = time.monotonic()
    try:
        executed = _execute(notebook, env)
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}")
    seconds = time.monotonic() - started
    record_property("seconds", round(seconds, 1))
    print(f"{path.name}: {seconds:.1f} s")
    assert _errors(executed) == []
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs), "no figure shown"
