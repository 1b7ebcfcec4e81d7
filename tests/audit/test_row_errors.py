"""An unexpected error (not a ServiceError) fails the job naming the row, the error's type
and the first line of its message: no traceback text, no input values, in the job's
`error` or in the log."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from explainer import Engine
from explainer.audit import AuditSpec, AuditStore, LocalExecutor, run_job
from explainer.audit.runner import RowFailed, failure_reason
from models import ModelHandle, ModelRepository
from tests.helpers import binary_tabular_spec, write_torchscript_model

LOOKUP = "lookup"
BAD_ROW = 5
MARKER = 0.123456789  # a value of the bad row: it must not reach the job's error or the log


class Lookup(torch.nn.Module):
    """An embedding of an integer code (feature 0) plus a linear term: a code out of range
    makes the scripted model raise a RuntimeError whose message holds its traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(4, 1)
        self.w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.emb(x[:, 0].long()).squeeze(1) + x[:, 1:] @ self.w
        return torch.stack([-z, z], dim=1)


@pytest.fixture(scope="module")
def lookup(tmp_path_factory: pytest.TempPathFactory) -> ModelHandle:
    root = tmp_path_factory.mktemp("lookup")
    torch.manual_seed(0)
    spec = binary_tabular_spec(LOOKUP, ["code", "a", "b"])
    background = np.array([[0, 0.0, 0.0], [1, 1.0, 0.0], [2, 0.0, 1.0], [3, 1.0, 1.0]] * 8)
    write_torchscript_model(root / LOOKUP, Lookup(), spec, background.astype(np.float32))
    repository = ModelRepository(root).load("cpu")
    assert not repository.errors, repository.errors
    return repository.get(LOOKUP)


def test_an_unexpected_error_names_the_row_without_its_traceback(
    lookup: ModelHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'a.db'}").create_tables()
    rows = [{"code": float(i % 4), "a": 0.1 * i, "b": 0.0} for i in range(BAD_ROW)]
    rows.append({"code": 7.0, "a": MARKER, "b": 0.0})  # code 7: out of the embedding's range
    spec = AuditSpec(model=LOOKUP, methods=["saliency"], chunk_size=2)
    store.submit("me", LOOKUP, spec.model_dump(mode="json"), rows)
    engine = Engine("cpu", cache_entries=0)
    with caplog.at_level(logging.INFO, logger="explainer.audit.runner"):
        failed = run_job(store, store.claim_next("w"), "w", LocalExecutor(lookup, engine))
    assert failed.status == "failed"
    assert failed.done == 4  # the chunks before the bad row's are kept
    assert failed.error == f"RuntimeError: row {BAD_ROW}: index out of range in self"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"row {BAD_ROW}" in logged
    for text in (failed.error, logged):
        assert "TorchScript" not in text and "<--- HERE" not in text
        assert str(MARKER) not in text
    assert all(record.exc_info is None for record in caplog.records)


def test_a_row_failure_crosses_processes_as_it_is() -> None:
    """Ray pickles the actor's exception to hand it to the driver."""
    error = pickle.loads(pickle.dumps(RowFailed(3, "KeyError", "'code'")))
    assert isinstance(error, RowFailed)
    assert failure_reason(error) == "KeyError: row 3: 'code'"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RuntimeError("first line\n  second line"), "RuntimeError: first line"),
        (
            RuntimeError(
                "The following operation failed in the TorchScript interpreter.\n"
                "Traceback of TorchScript (most recent call last):\n  ...\n"
                "RuntimeError: index out of range in self\n"
            ),
            "RuntimeError: index out of range in self",
        ),
        (AssertionError(), "AssertionError"),
        (RowFailed(0, "ZeroDivisionError", ""), "ZeroDivisionError: row 0"),
    ],
)
def test_failure_reasons_keep_the_first_line_only(error: Exception, reason: str) -> None:
    assert failure_reason(error) == reason
