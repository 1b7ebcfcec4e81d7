"""The audits API on the real app (in-process), its background worker and the zoo's credit-risk.

`test_two_thousand_rows` is acceptance 1: a 2,000-row audit with the five methods completes
with progress updates, and its results in JSONL, CSV and Parquet have exactly 2,000 rows.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask.testing import FlaskClient

from api.routes import audits as audits_route
from api.runtime import EXTENSION
from explainer.audit import runner
from explainer.audit.runner import rehearse
from tests.api.conftest import AppFactory, app_factory
from tests.audit.conftest import CHEAP_OPTIONS, MODEL, credit_rows

KEYS = ("alice-key", "bob-key")


@pytest.fixture(scope="module")
def make_app(credit_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> AppFactory:
    return app_factory(credit_repo, tmp_path_factory)


@pytest.fixture(scope="module")
def keyed(make_app: AppFactory) -> FlaskClient:
    """A client of an app that requires API keys (alice's and bob's)."""
    return make_app(api_keys=KEYS).test_client()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for(client: FlaskClient, location: str, timeout_s: float, **kwargs: Any) -> list[dict]:
    """Poll an audit until it finishes; every status seen, in order."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.append(client.get(location, **kwargs).get_json())
        if seen[-1]["status"] not in ("queued", "running"):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"audit not finished after {timeout_s} s: {seen[-1]}")


@pytest.mark.slow
def test_two_thousand_rows(make_app: AppFactory) -> None:
    client = make_app().test_client()
    started = time.monotonic()
    body = {"model": MODEL, "instances": credit_rows(2000), "options": CHEAP_OPTIONS}
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.get_json()
    location = response.headers["Location"]
    assert location == f"/v1/audits/{response.get_json()['id']}"

    seen = wait_for(client, location, timeout_s=170)
    final = seen[-1]
    assert final["status"] == "completed", final
    assert final["progress"] == {"done": 2000, "total": 2000, "fraction": 1.0, "failed": 0}
    progress = [s["progress"]["done"] for s in seen]
    assert progress == sorted(progress)
    assert len({p for p in progress if 0 < p < 2000}) >= 3, progress  # updates along the way
    assert any(s["eta_s"] is not None for s in seen if s["status"] == "running")
    assert final["timings"]["rows_per_s"] > 0

    download = client.get(f"{location}/results?format=jsonl")
    assert download.is_streamed  # read from the database a batch at a time
    lines = download.get_data().splitlines()
    documents = [json.loads(line) for line in lines]
    assert [d["row"] for d in documents] == list(range(2000))
    one = client.get(f"{location}/results?format=jsonl&row=1999").get_data()
    assert json.loads(one) == documents[1999]
    assert set(documents[0]["methods"]) == {
        "saliency",
        "integrated_gradients",
        "shap",
        "lime",
        "tree",
    }
    csv = pd.read_csv(io.BytesIO(client.get(f"{location}/results?format=csv").get_data()))
    parquet = pd.read_parquet(
        io.BytesIO(client.get(f"{location}/results?format=parquet").get_data())
    )
    for frame in (csv, parquet):
        assert len(frame) == 2000
        assert frame["row"].tolist() == list(range(2000))
        assert "shap.income" in frame.columns
    print(f"2,000-row audit: {time.monotonic() - started:.1f} s")


def test_another_callers_audit_is_not_found(keyed: FlaskClient) -> None:
    body = {"model": MODEL, "instances": credit_rows(3), "methods": ["saliency"]}
    response = keyed.post("/v1/audits", json=body, headers=auth("alice-key"))
    assert response.status_code == 202
    location = response.headers["Location"]
    assert keyed.get(location, headers=auth("alice-key")).status_code == 200
    for suffix in ("", "/results", "/report"):
        answer = keyed.get(location + suffix, headers=auth("bob-key"))
        assert answer.status_code == 404
        assert answer.mimetype == "application/problem+json"
    assert keyed.delete(location, headers=auth("bob-key")).status_code == 404
    assert keyed.get(location).status_code == 401


def test_a_keyless_server_ignores_the_authorization_header(make_app: AppFactory) -> None:
    """Without API keys every caller is the same one, header or not (it keyed audits)."""
    client = make_app().test_client()
    body = {"model": MODEL, "instances": credit_rows(1), "methods": ["saliency"]}
    response = client.post("/v1/audits", json=body, headers=auth("anything"))
    assert response.status_code == 202
    location = response.headers["Location"]
    for headers in ({}, auth("anything"), auth("something-else")):
        assert client.get(location, headers=headers).status_code == 200
    assert client.delete(location).status_code == 200


def test_idempotency_key_returns_the_existing_job(
    keyed: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rehearsed: list[int] = []

    def counted_rehearsal(*args: Any) -> None:
        rehearsed.append(1)
        rehearse(*args)

    monkeypatch.setattr(audits_route, "rehearse", counted_rehearsal)
    body = {"model": MODEL, "instances": credit_rows(3), "methods": ["saliency"]}
    headers = {**auth("alice-key"), "Idempotency-Key": "batch-42"}
    first = keyed.post("/v1/audits", json=body, headers=headers)
    again = keyed.post("/v1/audits", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert len(rehearsed) == 1  # a retry does not explain the first row again
    other = keyed.post(
        "/v1/audits", json=body, headers={**auth("bob-key"), "Idempotency-Key": "batch-42"}
    )
    assert other.get_json()["id"] != first.get_json()["id"]  # keys are unique per caller


@pytest.mark.parametrize(
    "change", [{"instances": credit_rows(4)}, {"methods": ["integrated_gradients"]}, {"seed": 7}]
)
def test_an_idempotency_key_used_for_another_request_is_refused(
    keyed: FlaskClient, change: dict[str, Any]
) -> None:
    body = {"model": MODEL, "instances": credit_rows(3), "methods": ["saliency"]}
    headers = {**auth("alice-key"), "Idempotency-Key": f"reused-{sorted(change)[0]}"}
    assert keyed.post("/v1/audits", json=body, headers=headers).status_code == 202
    reused = keyed.post("/v1/audits", json={**body, **change}, headers=headers)
    assert reused.status_code == 422
    assert reused.mimetype == "application/problem+json"
    problem = reused.get_json()
    assert "used for a different audit request" in problem["detail"]
    assert [error["loc"] for error in problem["errors"]] == [["Idempotency-Key"]]


def test_cancel(keyed: FlaskClient) -> None:
    body = {"model": MODEL, "instances": credit_rows(400), "options": CHEAP_OPTIONS}
    location = keyed.post("/v1/audits", json=body, headers=auth("alice-key")).headers["Location"]
    cancelled = keyed.delete(location, headers=auth("alice-key")).get_json()
    assert cancelled["status"] == "cancelled"
    time.sleep(1.5)  # the worker stops at its next checkpoint or heartbeat
    done = keyed.get(location, headers=auth("alice-key")).get_json()["progress"]["done"]
    time.sleep(1.5)
    later = keyed.get(location, headers=auth("alice-key")).get_json()
    assert later["status"] == "cancelled"
    assert later["progress"]["done"] == done < 400


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_upload(keyed: FlaskClient, fmt: str) -> None:
    frame = pd.DataFrame(credit_rows(5)).assign(region=list("nnsse"))
    if fmt == "csv":
        content = frame.to_csv(index=False).encode()
    elif fmt == "parquet":
        content = frame.to_parquet(index=False)
    else:
        content = frame.to_json(orient="records", lines=True).encode()
    request = {
        "model": MODEL,
        "methods": ["saliency", "integrated_gradients"],
        "segment_by": "region",
    }
    response = keyed.post(
        "/v1/audits",
        data={"data": (io.BytesIO(content), f"applicants.{fmt}"), "request": json.dumps(request)},
        headers=auth("alice-key"),
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_json()
    location = response.headers["Location"]
    assert wait_for(keyed, location, 60, headers=auth("alice-key"))[-1]["status"] == "completed"
    row = keyed.get(f"{location}/results?row=3", headers=auth("alice-key")).get_data()
    assert json.loads(row)["segment"] == "s"
    report = keyed.get(f"{location}/report", headers=auth("alice-key"))
    assert report.mimetype == "text/html"
    assert b'id="segments"' in report.get_data()


BAD_REQUESTS = [
    ({"model": "nope", "instances": [{}]}, 404, None),
    ({"model": MODEL, "instances": []}, 422, ["instances"]),
    ({"model": MODEL, "instances": [{"income": 1.0}]}, 422, ["data", 0, "debt_to_income"]),
    ({"model": MODEL, "instances": credit_rows(1), "methods": ["gradcam"]}, 422, ["methods", 0]),
    (
        {"model": MODEL, "instances": credit_rows(1), "segment_by": "region"},
        422,
        ["data", 0, "region"],
    ),
    ({"model": MODEL, "instances": credit_rows(1), "unknown": 1}, 422, ["unknown"]),
    (
        {"model": MODEL, "instances": credit_rows(1), "options": {"lime": {"num_samples": 10**4}}},
        422,
        ["options", "lime", "num_samples"],
    ),
    # Refused when the first row is rehearsed, instead of failing the queued job.
    (
        {
            "model": MODEL,
            "instances": credit_rows(1),
            "options": {"integrated_gradients": {"baseline": "blur"}},
        },
        422,
        ["options", "integrated_gradients", "baseline"],
    ),
    (
        {
            "model": MODEL,
            "instances": credit_rows(1),
            "options": {"shap": {"algorithm": "partition"}},
        },
        422,
        ["options", "shap", "algorithm"],
    ),
]


@pytest.mark.parametrize(("body", "status", "loc"), BAD_REQUESTS)
def test_bad_requests(keyed: FlaskClient, body: dict, status: int, loc: list | None) -> None:
    response = keyed.post("/v1/audits", json=body, headers=auth("alice-key"))
    assert response.status_code == status
    problem = response.get_json()
    if loc is not None:
        assert loc in [item["loc"] for item in problem["errors"]], problem


ONE_ROW_CSV = pd.DataFrame(credit_rows(1)).to_csv(index=False).encode()
REQUEST = json.dumps({"model": MODEL, "methods": ["saliency"]})
# Multipart parts: bytes are sent as a file, str as a form field, a list as repeated parts.
Parts = dict[str, str | bytes | list[str | bytes]]
MULTIPART_BAD_REQUESTS: list[tuple[Parts, int, list | None]] = [
    ({"data": ONE_ROW_CSV, "request": REQUEST, "extra": "1"}, 422, ["extra"]),
    ({"data": ONE_ROW_CSV, "request": REQUEST, "extra": b"1"}, 422, ["extra"]),
    ({"data": ONE_ROW_CSV.decode(), "request": REQUEST}, 422, ["data"]),
    ({"data": ONE_ROW_CSV, "request": [REQUEST, REQUEST.encode()]}, 422, ["request"]),
    # the request part as a file is read like the form field
    ({"data": ONE_ROW_CSV, "request": b"{"}, 400, ["request"]),
    ({"data": ONE_ROW_CSV, "request": b'{"model": "nope"}'}, 404, None),
    ({"data": ONE_ROW_CSV, "request": b'{"model": "credit-risk", "x": 1}'}, 422, ["request", "x"]),
    (
        {"data": ONE_ROW_CSV, "request": b'{"model": "credit-risk", "segment_by": "region"}'},
        422,
        ["data", 0, "region"],
    ),
]


def multipart(parts: Parts) -> dict[str, Any]:
    """Test-client data for `parts` (files named after their part)."""

    def part(name: str, value: str | bytes) -> Any:
        suffix = "csv" if name == "data" else "json"
        return value if isinstance(value, str) else (io.BytesIO(value), f"{name}.{suffix}")

    return {
        name: [part(name, v) for v in value] if isinstance(value, list) else part(name, value)
        for name, value in parts.items()
    }


@pytest.mark.parametrize(("parts", "status", "loc"), MULTIPART_BAD_REQUESTS)
def test_bad_multipart_requests(
    keyed: FlaskClient, parts: Parts, status: int, loc: list | None
) -> None:
    response = keyed.post(
        "/v1/audits",
        data=multipart(parts),
        headers=auth("alice-key"),
        content_type="multipart/form-data",
    )
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"
    if loc is not None:
        assert loc in [item["loc"] for item in response.get_json()["errors"]]


def test_request_part_as_a_file(keyed: FlaskClient) -> None:
    parts: Parts = {"data": ONE_ROW_CSV, "request": REQUEST.encode()}
    response = keyed.post(
        "/v1/audits",
        data=multipart(parts),
        headers=auth("alice-key"),
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["model"] == MODEL


def test_too_many_rows(keyed: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("api.routes.audits.MAX_ROWS", 2)
    content = pd.DataFrame(credit_rows(3)).to_csv(index=False).encode()
    response = keyed.post(
        "/v1/audits",
        data={"data": (io.BytesIO(content), "rows.csv"), "request": json.dumps({"model": MODEL})},
        headers=auth("alice-key"),
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert response.get_json()["errors"][0] == {"loc": ["data"], "msg": "at most 2 rows"}


def test_a_report_before_any_row_is_stored_is_a_409(make_app: AppFactory) -> None:
    app = make_app()
    client = app.test_client()
    store = audits_route._store(app, app.extensions[EXTENSION])
    # A job no worker can run (no such model): queued, then failed, never with a row.
    job, _ = store.submit("anonymous", "ghost", {"model": "ghost"}, [[0.0]])
    report = client.get(f"/v1/audits/{job.id}/report")
    assert report.status_code == 409, report.get_json()
    assert report.mimetype == "application/problem+json"
    assert "has no rows stored" in report.get_json()["detail"]
    assert client.get("/v1/audits/0123456789abcdef/report").status_code == 404


# ---- POST /v1/audits/{id}/resume ----

RESUME_SEED = 4242  # marks the chunks of the resume tests' jobs (other apps' workers run too)


def results_by_row(client: FlaskClient, location: str, **kwargs: Any) -> dict[int, bytes]:
    """The stored JSONL lines by row; fails if a row is stored twice."""
    lines = client.get(f"{location}/results?format=jsonl", **kwargs).get_data().splitlines()
    rows = [json.loads(line)["row"] for line in lines]
    assert len(rows) == len(set(rows)), rows
    return dict(zip(rows, lines, strict=True))


def test_a_failed_audit_resumes_without_redoing_its_rows(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    explained: list[int] = []  # rows explained, chunk by chunk
    failures = [4]  # the chunk holding row 4 fails, once
    real_chunk = runner.explain_chunk

    def flaky_chunk(handle: Any, engine: Any, spec: Any, chunk: Any) -> Any:
        documents = real_chunk(handle, engine, spec, chunk)
        if spec.seed == RESUME_SEED:
            rows = [index for index, _ in chunk]
            if failures and failures[0] in rows:
                failures.clear()
                raise RuntimeError("simulated failure")
            explained.extend(rows)
        return documents

    monkeypatch.setattr(runner, "explain_chunk", flaky_chunk)
    client = make_app().test_client()
    body = {
        "model": MODEL,
        "instances": credit_rows(8),
        "methods": ["saliency", "integrated_gradients"],
        "seed": RESUME_SEED,
        "chunk_size": 2,
    }
    location = client.post("/v1/audits", json=body).headers["Location"]
    failed = wait_for(client, location, 60)[-1]
    assert failed["status"] == "failed", failed
    assert failed["progress"]["done"] == 4 and "RuntimeError" in failed["error"]
    before = results_by_row(client, location)
    assert sorted(before) == [0, 1, 2, 3]

    resumed = client.post(f"{location}/resume")
    assert resumed.status_code == 202, resumed.get_json()
    assert resumed.headers["Location"] == location
    job = resumed.get_json()
    assert (job["status"], job["error"], job["progress"]["done"]) == ("queued", None, 4)

    final = wait_for(client, location, 60)[-1]
    assert final["status"] == "completed", final
    assert final["progress"] == {"done": 8, "total": 8, "fraction": 1.0, "failed": 0}
    after = results_by_row(client, location)
    assert sorted(after) == list(range(8))  # every row exactly once
    assert {row: after[row] for row in before} == before  # rows 0-3 as stored, not redone
    assert sorted(explained) == list(range(8)), explained  # each row explained once

    again = client.post(f"{location}/resume")  # completed: nothing to resume
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    assert again.get_json()["detail"] == (
        "the audit is completed: only a failed or cancelled audit can be resumed"
    )


def test_a_cancelled_audit_resumes_and_completes_every_row_once(keyed: FlaskClient) -> None:
    body = {
        "model": MODEL,
        "instances": credit_rows(40),
        "methods": ["saliency"],
        "seed": RESUME_SEED + 1,
        "chunk_size": 4,
    }
    headers = auth("alice-key")
    location = keyed.post("/v1/audits", json=body, headers=headers).headers["Location"]
    assert keyed.delete(location, headers=headers).get_json()["status"] == "cancelled"
    time.sleep(1.5)  # the worker stops at its next checkpoint or heartbeat
    done = keyed.get(location, headers=headers).get_json()["progress"]["done"]
    assert done < 40

    resumed = keyed.post(f"{location}/resume", headers=headers)
    assert resumed.status_code == 202, resumed.get_json()
    assert resumed.headers["Location"] == location
    assert resumed.get_json()["status"] in ("queued", "running")
    final = wait_for(keyed, location, 60, headers=headers)[-1]
    assert final["status"] == "completed", final
    assert final["progress"]["done"] == 40
    assert sorted(results_by_row(keyed, location, headers=headers)) == list(range(40))


def test_resume_is_for_the_owners_stopped_audits(keyed: FlaskClient) -> None:
    body = {"model": MODEL, "instances": credit_rows(2), "methods": ["saliency"]}
    location = keyed.post("/v1/audits", json=body, headers=auth("alice-key")).headers["Location"]
    # Another caller's audit, and one that does not exist: 404, as on the other audit routes.
    for url, key in ((location, "bob-key"), ("/v1/audits/" + "0" * 32, "alice-key")):
        answer = keyed.post(f"{url}/resume", headers=auth(key))
        assert answer.status_code == 404
        assert answer.mimetype == "application/problem+json"
    assert keyed.post(f"{location}/resume").status_code == 401
    # Queued, running or completed: a 409 naming its status; the job is left as it is.
    status = keyed.get(location, headers=auth("alice-key")).get_json()["status"]
    answer = keyed.post(f"{location}/resume", headers=auth("alice-key"))
    assert answer.status_code == 409
    assert answer.mimetype == "application/problem+json"
    problem = answer.get_json()
    assert problem["title"] == "Conflict"
    assert problem["detail"].startswith("the audit is ")
    assert problem["detail"].split()[3].rstrip(":") in ("queued", "running", "completed")
    assert status in ("queued", "running", "completed")
    final = wait_for(keyed, location, 60, headers=auth("alice-key"))[-1]
    assert final["status"] == "completed"


def test_resume_is_in_the_spec(keyed: FlaskClient) -> None:
    spec = keyed.get("/openapi.json", headers=auth("alice-key")).get_json()
    operation = spec["paths"]["/v1/audits/{id}/resume"]["post"]
    assert set(operation["responses"]) >= {"202", "401", "404", "409", "422"}
    assert set(operation["responses"]["202"]["headers"]) == {"Location"}
