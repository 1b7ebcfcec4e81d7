"""GET /metrics: Prometheus text with requests by route template, the explanation cache, the
models and the audit jobs, and never an input value or an id; summed over gunicorn workers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import ExplainerApp
from api.routes.audits import STORE
from benchmarks.liveserver import running_server
from models.repository import ZOO_DIR
from tests.api.conftest import AppFactory
from tests.api.repo import build_repository

CREDIT = "credit-risk"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    """Every sample of a metrics page, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_of(samples: Samples, route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return value(samples, "explainer_http_requests_total", **labels)


@pytest.fixture(scope="module")
def zoo_app(make_app: AppFactory) -> ExplainerApp:
    return make_app(model_repo=ZOO_DIR)


@pytest.fixture()
def zoo_client(zoo_app: ExplainerApp) -> FlaskClient:
    return zoo_app.test_client()


def get_metrics(client: FlaskClient, **kwargs: object) -> str:
    response = client.get("/metrics", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return response.get_data(as_text=True)


def test_requests_cache_and_models(zoo_client: FlaskClient) -> None:
    example = zoo_client.get(f"/v1/models/{CREDIT}").get_json()["example"]
    before = scrape(get_metrics(zoo_client))
    body = {"instances": [example], "methods": ["saliency"]}
    predicted = zoo_client.post(f"/v1/models/{CREDIT}/predict", json={"instances": [example]})
    first = zoo_client.post(f"/v1/models/{CREDIT}/explain", json=body)
    again = zoo_client.post(f"/v1/models/{CREDIT}/explain", json=body)
    assert (predicted.status_code, first.status_code, again.status_code) == (200, 200, 200)
    stored_id = first.get_json()["id"]
    assert zoo_client.get(f"/v1/explanations/{stored_id}").status_code == 200
    text = get_metrics(zoo_client)
    after = scrape(text)

    for route in ("/v1/models/<name>/predict", "/v1/models/<name>/explain"):
        counted = requests_of(after, route, "POST", "200") - requests_of(
            before, route, "POST", "200"
        )
        assert counted == (2 if route.endswith("explain") else 1)
    assert requests_of(after, "/v1/explanations/<id>", "GET", "200") >= 1
    seconds = value(
        after,
        "explainer_http_request_duration_seconds_count",
        route="/v1/models/<name>/explain",
        method="POST",
    )
    assert seconds >= 2
    assert stored_id not in text
    hits = "explainer_explanation_cache_hits_total"
    assert value(after, hits) >= value(before, hits) + 1
    assert value(after, "explainer_explanation_cache_misses_total") >= 1
    assert value(after, "explainer_explanation_cache_entries") >= 1
    assert value(after, "explainer_models_loaded") == len(list(ZOO_DIR.glob("*/model.toml")))
    assert value(after, "explainer_models_failed") == 0
    assert value(after, "process_cpu_seconds_total") > 0


def test_warm_up_is_no_cache_traffic(make_app: AppFactory) -> None:
    """Models warmed up at load: the cache has neither served nor missed anything yet."""
    client = make_app(warm_up=True).test_client()
    samples = scrape(get_metrics(client))
    assert value(samples, "explainer_models_loaded") == 2
    for name in ("hits_total", "misses_total", "entries"):
        assert value(samples, f"explainer_explanation_cache_{name}") == 0


def test_unmatched_paths_are_counted_without_the_path(zoo_client: FlaskClient) -> None:
    secret = "patient-4711-no-such-route"
    assert zoo_client.get(f"/{secret}").status_code == 404
    assert zoo_client.delete("/healthz").status_code == 405
    text = get_metrics(zoo_client)
    samples = scrape(text)
    assert requests_of(samples, "unmatched", "GET", "404") >= 1
    assert requests_of(samples, "unmatched", "DELETE", "405") >= 1
    assert secret not in text


def test_audit_jobs_by_status(zoo_app: ExplainerApp, zoo_client: FlaskClient) -> None:
    deadline = time.monotonic() + 30
    while STORE not in zoo_app.extensions:  # the audit worker makes the store once ready
        assert time.monotonic() < deadline
        time.sleep(0.1)
    example = zoo_client.get(f"/v1/models/{CREDIT}").get_json()["example"]
    body = {"model": CREDIT, "instances": [example], "methods": ["saliency"]}
    created = zoo_client.post("/v1/audits", json=body)
    assert created.status_code == 202
    text = get_metrics(zoo_client)
    samples = scrape(text)
    statuses = ("queued", "running", "completed", "failed", "cancelled")
    assert sum(value(samples, "explainer_audit_jobs", status=s) for s in statuses) == 1
    assert created.get_json()["id"] not in text


def test_metrics_is_not_in_the_openapi_spec(client: FlaskClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").get_json()["paths"]


def test_metrics_needs_a_key_when_keys_are_set(make_app: AppFactory) -> None:
    client = make_app(api_keys="k1").test_client()
    assert client.get("/metrics").status_code == 401
    text = get_metrics(client, headers={"Authorization": "Bearer k1"})
    assert requests_of(scrape(text), "/metrics", "GET", "401") == 1


@pytest.mark.e2e
def test_two_workers_are_summed(tmp_path: Path) -> None:
    """Under gunicorn with two workers, every scrape answers for both (multiprocess mode)."""
    repo = build_repository(tmp_path / "repo")
    shared = tmp_path / "metrics"
    shared.mkdir()
    settings = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    with running_server(tmp_path / "server", repo, settings, workers=2) as server:
        for _ in range(20):
            assert requests.get(f"{server.url}/healthz", timeout=30).status_code == 200
        pids = server.worker_pids()
        assert len(pids) == 2
        assert {f"counter_{pid}.db" for pid in pids} <= {path.name for path in shared.iterdir()}
        deadline = time.monotonic() + 30
        while True:  # each worker copies its model count into the files every few seconds
            samples = scrape(requests.get(f"{server.url}/metrics", timeout=30).text)
            loaded = value(samples, "explainer_models_loaded")  # the fewest of both workers
            if loaded == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert loaded == 2
    assert requests_of(samples, "/healthz", "GET", "200") == 20
