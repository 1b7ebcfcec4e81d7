"""The runner: per-row seeds make results independent of chunking; a killed job resumes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from explainer import Engine
from explainer.audit import AuditSpec, AuditStore, LocalExecutor, explain_chunk, row_seed, run_job
from explainer.audit.runner import IndexedRow
from models import ModelHandle
from tests.audit.conftest import CHEAP_OPTIONS, MODEL, credit_rows


def without_timings(documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "timings_ms"} for d in documents]


def test_row_seeds_depend_on_the_job_seed_and_row_only() -> None:
    assert row_seed(0, 5) == row_seed(0, 5)
    assert len({row_seed(0, i) for i in range(100)}) == 100
    assert row_seed(1, 5) != row_seed(0, 5)


def test_results_do_not_depend_on_chunking(credit: ModelHandle, engine: Engine) -> None:
    spec = AuditSpec(model=MODEL, options=CHEAP_OPTIONS, segment_by="age_band")
    rows = list(enumerate(credit_rows(6)))
    whole = explain_chunk(credit, engine, spec, rows)
    pieces = explain_chunk(credit, engine, spec, rows[:2]) + explain_chunk(
        credit, engine, spec, rows[2:]
    )
    assert without_timings(whole) == without_timings(pieces)
    first = whole[0]
    assert first["row"] == 0 and first["seed"] == row_seed(0, 0)
    assert first["target"]["label"] == "default"  # the adverse class by default
    assert first["segment"] == rows[0][1]["age_band"]
    assert first["input"] == rows[0][1]


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, the job stays leased."""


class CrashAfter:
    """An executor that dies after `chunks` chunks."""

    def __init__(self, execute: LocalExecutor, chunks: int) -> None:
        self.execute, self.chunks = execute, chunks

    def __call__(
        self, spec: AuditSpec, chunks: Sequence[Sequence[IndexedRow]]
    ) -> Iterator[tuple[list[dict[str, Any]], float]]:
        for count, item in enumerate(self.execute(spec, chunks)):
            if count == self.chunks:
                raise Crash
            yield item


def test_a_crashed_job_resumes_without_losing_or_repeating_rows(
    credit: ModelHandle, engine: Engine, tmp_path: Path
) -> None:
    now = [0.0]
    store = AuditStore(f"sqlite:///{tmp_path / 'a.db'}", lease_s=10, clock=lambda: now[0])
    store.create_tables()
    spec = AuditSpec(model=MODEL, methods=["integrated_gradients", "lime"], chunk_size=4)
    rows = credit_rows(10)
    job, _ = store.submit("me", MODEL, spec.model_dump(mode="json"), rows)
    executor = LocalExecutor(credit, engine)
    with pytest.raises(Crash):
        run_job(store, store.claim_next("w1"), "w1", CrashAfter(executor, chunks=2))
    assert store.get(job.id).done == 8
    now[0] += 11  # the dead worker's lease expires
    progress: list[int] = []
    finished = run_job(
        store, store.claim_next("w2"), "w2", executor, lambda done, _: progress.append(done)
    )
    assert finished.status == "completed" and finished.done == 10
    assert progress == [8, 10]  # only the last chunk was explained again
    stored = list(store.results(job.id))
    assert [d["row"] for d in stored] == list(range(10))
    reference = explain_chunk(credit, engine, spec, list(enumerate(rows)))
    assert without_timings(stored) == without_timings(reference)


def test_an_error_fails_the_job_with_its_reason(
    credit: ModelHandle, engine: Engine, tmp_path: Path
) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'b.db'}").create_tables()
    spec = AuditSpec(model=MODEL, methods=["saliency"])
    store.submit("me", MODEL, spec.model_dump(mode="json"), [{"income": 1.0}])
    failed = run_job(store, store.claim_next("w"), "w", LocalExecutor(credit, engine))
    assert failed.status == "failed"
    assert "missing feature" in (failed.error or "") or "match" in (failed.error or "")


def queue_unusable_options(path: Path) -> AuditStore:
    """A store holding a credit-risk job whose IG baseline is for images only: it fails at
    row 0 (`rehearse` would have refused it at submission)."""
    store = AuditStore(f"sqlite:///{path}").create_tables()
    options = {"integrated_gradients": {"baseline": "blur"}}
    spec = AuditSpec(model=MODEL, methods=["integrated_gradients"], options=options)
    store.submit("me", MODEL, spec.model_dump(mode="json"), credit_rows(3))
    return store


def test_an_error_that_is_not_the_rows_own_fails_the_job_naming_the_row(
    credit: ModelHandle, engine: Engine, tmp_path: Path
) -> None:
    store = queue_unusable_options(tmp_path / "c.db")
    failed = run_job(store, store.claim_next("w"), "w", LocalExecutor(credit, engine))
    assert failed.status == "failed" and failed.done == 0
    assert failed.error == "InvalidInput: row 0: baseline 'blur' is for image models"


@pytest.mark.parametrize("as_list", [False, True])
def test_inputs_are_kept_as_given(credit: ModelHandle, engine: Engine, as_list: bool) -> None:
    """The model receives float32, but a row's `input` and numeric segment hold the numbers
    given (0.271, not 0.2709999978542328), categories by name even when given by index."""
    row = {**credit_rows(1)[0], "debt_to_income": 0.271, "income": 28000.1, "age_band": 2}
    spec = AuditSpec(model=MODEL, methods=["saliency"], segment_by="debt_to_income")
    given = [row[name] for name in credit.feature_names] if as_list else row
    [document] = explain_chunk(credit, engine, spec, [(0, given)])
    assert document["input"] == {**row, "age_band": "36-50"}
    assert list(document["input"]) == credit.feature_names
    assert document["segment"] == 0.271
