"""Acceptance 3: the same audit on a local Ray instance gives the local engine's per-row
results, through the runner and through `explainer audit --engine ray`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from explainer import Engine
from explainer.audit import AuditSpec, AuditStore, LocalExecutor, run_job
from explainer.audit.ray_engine import RayExecutor
from explainer.cli import main
from models import ModelHandle, ModelRepository
from tests.audit.conftest import CHEAP_OPTIONS, MODEL, credit_rows
from tests.audit.test_runner import queue_unusable_options, without_timings
from tests.audit.test_unexplained_rows import SPEC, banded_rows, write_banded_model
from tests.helpers import UNSTABLE

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

ROWS = 12


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def run(store: AuditStore, spec: AuditSpec, rows: list, execute) -> list[dict]:
    job, _ = store.submit("me", MODEL, spec.model_dump(mode="json"), rows)
    finished = run_job(store, store.claim_next("w"), "w", execute)
    assert finished.status == "completed", finished.error
    return list(store.results(job.id))


def test_ray_results_equal_local_results(
    local_ray: None, credit_repo: Path, credit: ModelHandle, engine: Engine, tmp_path: Path
) -> None:
    spec = AuditSpec(model=MODEL, options=CHEAP_OPTIONS, seed=5, chunk_size=4)
    rows = credit_rows(ROWS, seed=21)
    local = run(
        AuditStore(f"sqlite:///{tmp_path / 'l.db'}").create_tables(),
        spec,
        rows,
        LocalExecutor(credit, engine),
    )
    on_ray = run(
        AuditStore(f"sqlite:///{tmp_path / 'r.db'}").create_tables(),
        spec,
        rows,
        RayExecutor(credit_repo, MODEL, chunk_size=engine.chunk_size),  # the same chunk
    )
    assert [d["row"] for d in on_ray] == list(range(ROWS))
    assert without_timings(on_ray) == without_timings(local)

    # The CLI on the same Ray instance (chunked differently): the same rows again.
    data = tmp_path / "rows.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    out = tmp_path / "cli"
    options = json.dumps(CHEAP_OPTIONS)
    argv = ["audit", MODEL, str(data), "--out", str(out), "--engine", "ray", "--seed", "5"]
    argv += ["--options", options, "--chunk-size", "7", "--model-repo", str(credit_repo)]
    assert main(argv) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert without_timings([json.loads(line) for line in lines]) == without_timings(local)


def test_rows_not_explained_come_back_from_the_actors_as_recorded_locally(
    local_ray: None, tmp_path: Path
) -> None:
    repo = write_banded_model(tmp_path / "repo")
    handle = ModelRepository(repo).load("cpu").get(UNSTABLE)
    rows = banded_rows()
    stores = [AuditStore(f"sqlite:///{tmp_path / name}").create_tables() for name in "lr"]
    executors = [
        LocalExecutor(handle, Engine("cpu", chunk_size=256, cache_entries=0)),
        RayExecutor(repo, UNSTABLE, actors=1, chunk_size=256),
    ]
    results = []
    for store, execute in zip(stores, executors, strict=True):
        job, _ = store.submit("me", UNSTABLE, SPEC.model_dump(mode="json"), rows)
        finished = run_job(store, store.claim_next("w"), "w", execute)
        assert (finished.status, finished.failed) == ("completed", 2), finished.error
        results.append(without_timings(list(store.results(job.id))))
    assert results[1] == results[0]
    assert [("error" in d) for d in results[1]] == [False, True, False, True, False]


def test_a_failing_row_on_ray_gives_the_actors_reason_not_rays_traceback(
    local_ray: None, credit_repo: Path, tmp_path: Path
) -> None:
    store = queue_unusable_options(tmp_path / "u.db")
    execute = RayExecutor(credit_repo, MODEL, actors=1, chunk_size=256)
    failed = run_job(store, store.claim_next("w"), "w", execute)
    assert failed.status == "failed"
    assert failed.error == "InvalidInput: row 0: baseline 'blur' is for image models"
