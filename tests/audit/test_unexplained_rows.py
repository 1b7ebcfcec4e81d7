"""Rows whose model outputs are NaN or infinite are recorded, not fatal: the job completes,
each such row keeps its input, its prediction (when that is finite) and the reason, and the
exports, the job's progress, the report and the command line show them apart."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from explainer import Engine
from explainer.audit import (
    AuditSpec,
    AuditStore,
    Job,
    LocalExecutor,
    audit_report,
    explain_chunk,
    run_job,
)
from explainer.audit.io import export
from explainer.cli import main
from models import ModelHandle, ModelRepository
from tests.api.conftest import app_factory
from tests.audit.test_api import wait_for
from tests.audit.test_runner import without_timings
from tests.helpers import UNSTABLE, NanBetweenOneAndTwo, write_unstable_model

OPTIONS: dict[str, Any] = {"integrated_gradients": {"baseline": "zeros"}}
SPEC = AuditSpec(
    model=UNSTABLE, methods=["saliency", "integrated_gradients"], options=OPTIONS, chunk_size=2
)
CROSSING, UNPREDICTABLE = 1, 3  # the rows that cannot be explained


def banded_rows() -> list[dict[str, float]]:
    """Five rows for `NanBetweenOneAndTwo`: row 1 sums to 3 (its prediction is finite, its
    integrated-gradients path is not), row 3 to 1.5 (its prediction is NaN)."""
    rows = [{"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.1}] * 5
    rows[CROSSING] = {"a": 3.0, "b": 0.0, "c": 0.0, "d": 0.0}
    rows[UNPREDICTABLE] = {"a": 1.0, "b": 0.5, "c": 0.0, "d": 0.0}
    return rows


def write_banded_model(root: Path) -> Path:
    write_unstable_model(root, NanBetweenOneAndTwo())
    return root


@pytest.fixture(scope="module")
def banded(tmp_path_factory: pytest.TempPathFactory) -> ModelHandle:
    root = write_banded_model(tmp_path_factory.mktemp("banded"))
    return ModelRepository(root).load("cpu").get(UNSTABLE)


@pytest.fixture(scope="module")
def audited(
    banded: ModelHandle, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Job, list[dict[str, Any]]]:
    store = AuditStore(f"sqlite:///{tmp_path_factory.mktemp('db') / 'a.db'}").create_tables()
    job, _ = store.submit("me", UNSTABLE, SPEC.model_dump(mode="json"), banded_rows())
    engine = Engine("cpu", cache_entries=0)
    finished = run_job(store, store.claim_next("w"), "w", LocalExecutor(banded, engine))
    return finished, list(store.results(job.id))


def test_the_job_completes_and_counts_the_rows_it_could_not_explain(
    audited: tuple[Job, list[dict[str, Any]]],
) -> None:
    job, documents = audited
    assert job.status == "completed", job.error
    assert (job.done, job.failed, job.error) == (5, 2, None)
    assert [("error" in d) for d in documents] == [False, True, False, True, False]


def test_an_unexplained_row_keeps_its_input_prediction_and_reason(
    audited: tuple[Job, list[dict[str, Any]]],
) -> None:
    _, documents = audited
    crossing, unpredictable = documents[CROSSING], documents[UNPREDICTABLE]
    assert set(crossing) == {"row", "seed", "input", "prediction", "error"}
    assert crossing["input"] == banded_rows()[CROSSING]
    assert crossing["prediction"]["label"] == "yes"  # logits [0, 3]
    assert crossing["error"]["title"] == "Model output not finite"
    assert crossing["error"]["detail"].startswith("the integrated_gradients explanation is not")
    assert set(unpredictable) == {"row", "seed", "input", "error"}  # no finite prediction
    assert unpredictable["error"]["detail"].startswith("the model returned NaN or infinite")


def test_the_other_rows_are_explained_as_if_alone(
    banded: ModelHandle, audited: tuple[Job, list[dict[str, Any]]]
) -> None:
    _, documents = audited
    rows = banded_rows()
    good = [0, 2, 4]
    engine = Engine("cpu", cache_entries=0)
    alone = explain_chunk(banded, engine, SPEC, [(i, rows[i]) for i in good])
    assert without_timings([documents[i] for i in good]) == without_timings(alone)


def test_exports_keep_every_row_and_put_the_reason_last(
    audited: tuple[Job, list[dict[str, Any]]],
) -> None:
    _, documents = audited
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        frame = read(io.BytesIO(export(documents, fmt, ["no", "yes"])))
        assert frame["row"].tolist() == [0, 1, 2, 3, 4]
        assert frame.columns[-1] == "error"
        assert frame["error"].isna().tolist() == [True, False, True, False, True]
        assert frame.loc[CROSSING, "prediction"] == "yes"
        assert pd.isna(frame.loc[UNPREDICTABLE, "prediction"])
        assert pd.isna(frame.loc[CROSSING, "integrated_gradients.a"])
        assert frame.loc[CROSSING, "error"].startswith("Model output not finite: the integrated")
    lines = export(documents, "jsonl", ["no", "yes"]).decode().splitlines()
    assert [json.loads(line) for line in lines] == documents


def test_the_report_lists_them_apart_and_summarises_the_rest(
    banded: ModelHandle, audited: tuple[Job, list[dict[str, Any]]]
) -> None:
    _, documents = audited
    html = audit_report(
        banded,
        documents,
        title="t",
        status="completed",
        total=5,
        row_link=lambda row: f"/r?row={row}",
    )
    assert "<td>rows explained</td><td>3 of 5</td>" in html
    assert "<td>rows not explained</td><td>2</td>" in html
    unexplained = html[html.index('<section id="unexplained">') :]
    unexplained = unexplained[: unexplained.index("</section>")]
    assert 'href="/r?row=1"' in unexplained and 'href="/r?row=3"' in unexplained
    assert 'href="/r?row=0"' not in unexplained
    assert '<section id="importance">' in html and '<section id="flagged">' in html


def test_a_report_with_no_explained_row_has_the_summary_and_the_reasons(
    banded: ModelHandle, audited: tuple[Job, list[dict[str, Any]]]
) -> None:
    _, documents = audited
    failed = [documents[CROSSING], documents[UNPREDICTABLE]]
    html = audit_report(banded, failed, title="t", status="completed", total=2)
    assert "<td>rows explained</td><td>0 of 2</td>" in html
    assert '<section id="unexplained">' in html and 'id="row-3"' in html
    assert '<section id="importance">' not in html


def test_the_command_line_completes_and_says_how_many_rows_were_not_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    repo = write_banded_model(tmp_path / "repo")
    data = tmp_path / "rows.csv"
    pd.DataFrame(banded_rows()).to_csv(data, index=False)
    out = tmp_path / "out"
    argv = ["audit", UNSTABLE, str(data), "--out", str(out), "--model-repo", str(repo)]
    argv += ["--methods", "saliency", "integrated_gradients", "--options", json.dumps(OPTIONS)]
    assert main(argv) == 0
    assert "2 of 5 rows not explained" in capsys.readouterr().err
    assert "2 of 5 rows not explained (model outputs not finite)" in caplog.text  # operators
    frame = pd.read_csv(out / "results.csv")
    assert frame["error"].notna().tolist() == [False, True, False, True, False]
    assert '<section id="unexplained">' in (out / "report.html").read_text()


def test_over_http_the_status_counts_them_and_the_results_and_report_show_them(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client = app_factory(write_banded_model(tmp_path / "repo"), tmp_path_factory)().test_client()
    body = {"instances": banded_rows(), **SPEC.model_dump(mode="json")}
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.get_json()
    final = wait_for(client, response.headers["Location"], timeout_s=60)[-1]
    assert final["status"] == "completed" and final["error"] is None
    assert final["progress"] == {"done": 5, "total": 5, "fraction": 1.0, "failed": 2}
    results = client.get(final["links"]["results"], query_string={"format": "csv"})
    frame = pd.read_csv(io.BytesIO(results.get_data()))
    assert frame["error"].notna().tolist() == [False, True, False, True, False]
    report = client.get(final["links"]["report"]).get_data(as_text=True)
    assert f'href="{final["links"]["results"]}?row=3"' in report
