"""`explainer audit`: results in three formats and a report; `--resume` after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from explainer import Engine
from explainer.audit import AuditStore, explain_chunk
from explainer.audit.io import read_file
from explainer.cli import AUDIT_OWNER, _audit_spec, build_parser, main
from models import ModelHandle
from tests.audit.conftest import CHEAP_OPTIONS, MODEL, credit_rows
from tests.audit.test_runner import without_timings

ROWS = 20
METHODS = ["saliency", "integrated_gradients", "shap"]


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    path = tmp_path / "applicants.csv"
    frame = pd.DataFrame(credit_rows(ROWS)).assign(region=["north", "south"] * (ROWS // 2))
    frame.to_csv(path, index=False)
    return path


def argv(data: Path, out: Path, repo: Path, *extra: str) -> list[str]:
    return [
        "audit",
        MODEL,
        str(data),
        "--out",
        str(out),
        "--model-repo",
        str(repo),
        "--methods",
        *METHODS,
        "--segment-by",
        "region",
        "--chunk-size",
        "8",
        "--options",
        json.dumps(CHEAP_OPTIONS),
        *extra,
    ]


def test_audit_writes_results_and_report(credit_repo: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(argv(data, out, credit_repo)) == 0
    assert len(pd.read_csv(out / "results.csv")) == ROWS
    assert len(pd.read_parquet(out / "results.parquet")) == ROWS
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["segment"] for line in lines[:2]] == ["north", "south"]
    report = (out / "report.html").read_text()
    assert 'id="segments"' in report and "Segments and disparities by region" in report
    assert main(argv(data, out, credit_repo)) == 2  # an audit is there: --resume or elsewhere
    assert main(argv(data, out, credit_repo, "--resume")) == 0  # finished: exported again


def test_resume_after_a_crash(
    credit_repo: Path, credit: ModelHandle, engine: Engine, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    arguments = argv(data, out, credit_repo, "--resume")
    spec = _audit_spec(build_parser().parse_args(arguments))
    rows = read_file(data)
    # A first run that died (SIGKILL) after its first chunk, still holding its lease.
    store = AuditStore(f"sqlite:///{out / 'audit.db'}").create_tables()
    job, _ = store.submit(AUDIT_OWNER, MODEL, spec.model_dump(mode="json"), rows)
    store.claim_next("dead-worker")
    first = explain_chunk(credit, engine, spec, list(enumerate(rows))[:8])
    store.checkpoint(job.id, "dead-worker", first, compute_s=1.0)

    assert main(arguments) == 0
    finished = store.get(job.id)
    assert (finished.status, finished.done) == ("completed", ROWS)
    documents = list(store.results(job.id))
    assert [d["row"] for d in documents] == list(range(ROWS))
    reference = explain_chunk(credit, engine, spec, list(enumerate(rows)))
    assert without_timings(documents) == without_timings(reference)


def test_bad_usage(credit_repo: Path, data: Path, tmp_path: Path) -> None:
    assert main(argv(tmp_path / "missing.csv", tmp_path / "a", credit_repo)) == 2
    assert main(argv(data, tmp_path / "b", credit_repo, "--resume")) == 2
    assert main([*argv(data, tmp_path / "c", credit_repo), "--options", "{"]) == 2
    assert main(argv(data, tmp_path / "d", credit_repo, "--segment-by", "nope")) == 2
