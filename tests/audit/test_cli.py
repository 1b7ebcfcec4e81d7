"""`explainer audit`: results in three formats and a report; `--resume` after a crash."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import explainer.audit
from explainer import Engine
from explainer.audit import AuditSpec, AuditStore, explain_chunk
from explainer.audit.io import read_file
from explainer.audit.runner import ChunkExecutor, IndexedRow
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


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_resume_a_failed_or_cancelled_audit(
    credit_repo: Path,
    credit: ModelHandle,
    engine: Engine,
    data: Path,
    tmp_path: Path,
    status: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    arguments = argv(data, out, credit_repo)
    spec = _audit_spec(build_parser().parse_args(arguments))
    rows = read_file(data)
    # A first run that stored its first chunk, then failed (or was cancelled).
    store = AuditStore(f"sqlite:///{out / 'audit.db'}").create_tables()
    job, _ = store.submit(AUDIT_OWNER, MODEL, spec.model_dump(mode="json"), rows)
    store.claim(job.id, "first-run")
    first = explain_chunk(credit, engine, spec, list(enumerate(rows))[:8])
    store.checkpoint(job.id, "first-run", [{**d, "kept": True} for d in first], compute_s=1.0)
    if status == "failed":
        store.finish(job.id, "first-run", "failed", "RuntimeError: row 8: boom")
    else:
        store.cancel(job.id, AUDIT_OWNER)

    assert main(arguments) == 2  # an audit is there: --resume or another --out
    assert status in capsys.readouterr().err
    assert main([*arguments, "--resume"]) == 0
    finished = store.get(job.id)
    assert (finished.status, finished.done, finished.error) == ("completed", ROWS, None)
    documents = list(store.results(job.id))
    assert [d["row"] for d in documents] == list(range(ROWS))
    assert [d.pop("kept", False) for d in documents] == [True] * 8 + [False] * (ROWS - 8)
    reference = explain_chunk(credit, engine, spec, list(enumerate(rows)))
    assert without_timings(documents) == without_timings(reference)
    assert len(pd.read_csv(out / "results.csv")) == ROWS


def test_ctrl_c_exits_130_and_resume_continues(
    credit_repo: Path,
    data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_job = explainer.audit.run_job

    def interrupted_run(
        store: AuditStore, job: Any, worker: str, execute: ChunkExecutor, *rest: Any
    ) -> Any:
        def first_chunk_then_ctrl_c(
            spec: AuditSpec, chunks: Sequence[Sequence[IndexedRow]]
        ) -> Iterator[tuple[list[dict[str, Any]], float]]:
            yield next(iter(execute(spec, chunks)))
            raise KeyboardInterrupt

        return run_job(store, job, worker, first_chunk_then_ctrl_c, *rest)

    out = tmp_path / "out"
    monkeypatch.setattr(explainer.audit, "run_job", interrupted_run)
    assert main(argv(data, out, credit_repo)) == 130
    assert "interrupted; resume with --resume" in capsys.readouterr().err
    monkeypatch.setattr(explainer.audit, "run_job", run_job)
    assert main(argv(data, out, credit_repo, "--resume")) == 0
    store = AuditStore(f"sqlite:///{out / 'audit.db'}")
    (job,) = store.jobs_of(AUDIT_OWNER)
    assert (job.status, job.done) == ("completed", ROWS)
    assert [d["row"] for d in store.results(job.id)] == list(range(ROWS))


def test_inputs_are_checked_before_out_is_made(
    credit_repo: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv(tmp_path / "missing.csv", tmp_path / "a", credit_repo)) == 2
    assert not (tmp_path / "a").exists()
    assert main(argv(data, tmp_path / "b", credit_repo, "--device", "bogus")) == 2
    assert "--device" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(argv(data, data, credit_repo)) == 2  # --out is a file
    assert f"--out {data}: exists and is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (["--chunk-size", "0"], "  at chunk_size: Input should be greater than or equal to 1"),
        (["--options", "[]"], "  at options: Input should be a valid dictionary"),
        (["--options", '{"lime": {"num_samples": "x"}}'], "  at options.lime.num_samples: "),
    ],
    ids=["chunk-size", "options-list", "options-field"],
)
def test_bad_arguments_are_listed_without_values(
    credit_repo: Path,
    data: Path,
    tmp_path: Path,
    extra: list[str],
    line: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*argv(data, tmp_path / "out", credit_repo), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("explainer: error: bad audit arguments\n") and line in err
    assert "input_value" not in err and "pydantic.dev" not in err


def test_bad_usage(credit_repo: Path, data: Path, tmp_path: Path) -> None:
    assert main(argv(tmp_path / "missing.csv", tmp_path / "a", credit_repo)) == 2
    assert main(argv(data, tmp_path / "b", credit_repo, "--resume")) == 2
    assert main([*argv(data, tmp_path / "c", credit_repo), "--options", "{"]) == 2
    assert main(argv(data, tmp_path / "d", credit_repo, "--segment-by", "nope")) == 2


def test_progress_after_resume_counts_only_the_rows_of_this_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """92 of 100 rows were stored by a first run; this one explains 4 rows per 10 seconds.
    The bar's rate is 4 rows in 10 s (not 96), and its ETA the 4 rows left at that rate."""
    import tqdm.std

    from explainer import cli

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}").create_tables()
    spec = AuditSpec(model=MODEL, methods=["saliency"], chunk_size=4)
    job, _ = store.submit(
        AUDIT_OWNER, MODEL, spec.model_dump(mode="json"), [[i] for i in range(100)]
    )
    store.claim(job.id, "first-run")
    store.checkpoint(job.id, "first-run", [{"row": i} for i in range(92)], compute_s=1.0)
    now = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])  # the bar's clock
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)

    def ten_seconds_a_chunk(
        spec: AuditSpec, chunks: Sequence[Sequence[IndexedRow]]
    ) -> Iterator[tuple[list[dict[str, Any]], float]]:
        for chunk in chunks:
            now[0] += 10.0
            yield [{"row": index} for index, _ in chunk], 10.0

    monkeypatch.setattr(cli, "_executor", lambda *_: ten_seconds_a_chunk)
    resumed = store.claim(job.id, "second-run")
    handle = argparse.Namespace(name=MODEL)
    finished = cli._run_audit(argparse.Namespace(), store, resumed, handle, None, "second-run")
    assert (finished.status, finished.done) == ("completed", 100)
    shown = re.split(r"[\r\n]", capsys.readouterr().err)
    after_one_chunk = next(line for line in shown if "96/100" in line)
    assert after_one_chunk.endswith("96/100 [00:10<00:10,  2.50s/row]")
    assert shown[-2].endswith("100/100 [00:20<00:00,  2.50s/row]")
