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
from models import ModelHandle
from tests.audit.conftest import CHEAP_OPTIONS, MODEL, credit_rows
from tests.audit.test_runner import unstable_rows, without_timings
from tests.helpers import UNSTABLE, NanAboveThree, write_unstable_model

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


def test_a_failing_row_on_ray_gives_the_actors_reason_not_rays_traceback(
    local_ray: None, tmp_path: Path
) -> None:
    write_unstable_model(tmp_path / "repo", NanAboveThree())
    store = AuditStore(f"sqlite:///{tmp_path / 'u.db'}").create_tables()
    spec = AuditSpec(model=UNSTABLE, methods=["saliency"], chunk_size=2)
    store.submit("me", UNSTABLE, spec.model_dump(mode="json"), unstable_rows())
    execute = RayExecutor(tmp_path / "repo", UNSTABLE, actors=1, chunk_size=256)
    failed = run_job(store, store.claim_next("w"), "w", execute)
    assert failed.status == "failed"
    assert (failed.error or "").startswith("ModelOutputNotFinite: row 3: the model returned")
    assert "Traceback" not in (failed.error or "")
