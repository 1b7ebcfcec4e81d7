"""Health, readiness, model listings, the OpenAPI spec, the docs page, the viewer hook.

Also request ids, on every response including the overload gate's 503 and 504.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flask.testing import FlaskClient

from api.app import create_app
from api.config import ApiConfig
from tests.api.conftest import AppFactory, app_factory
from tests.api.repo import FEATURES, IMAGE, TABULAR, TABULAR_ROW
from tests.faults.faulty import NAME as FAULTY
from tests.faults.faulty import SLOW_VALUE, write_faulty_model
from tests.helpers import LogisticModel, NanAboveThree, write_torchscript_model


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["models"] == [TABULAR, IMAGE]


def test_not_ready_when_the_repository_fails(make_app: AppFactory, tmp_path: Path) -> None:
    """A repository gone after the configuration checked it: 503 with the reason in `detail`."""
    repo = tmp_path / "models"
    repo.mkdir()
    values = {"model_repo": repo, "database_url": f"sqlite:///{tmp_path / 'explainer.db'}"}
    config = ApiConfig.from_env(values, environ={})
    repo.rmdir()
    client = create_app(config).test_client()
    assert client.get("/healthz").status_code == 200
    for url in ("/readyz", "/v1/models"):
        response = client.get(url)
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"]
        detail = response.get_json()["detail"]
        assert detail.startswith("the model repository failed to load: FileNotFoundError: ")
        assert f"{repo} is not a directory" in detail


def test_an_empty_repository_is_ready_with_no_models(make_app: AppFactory, tmp_path: Path) -> None:
    ready = make_app(model_repo=tmp_path).test_client().get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["models"] == []


def test_the_longest_time_limits_work(make_app: AppFactory) -> None:
    """The largest accepted time limits reach lock and future waits (inf or more raised
    OverflowError there: a 500)."""
    longest = threading.TIMEOUT_MAX
    client = make_app(request_timeout_s=longest, queue_timeout_s=longest).test_client()
    response = client.post(f"/v1/models/{TABULAR}/predict", json={"instances": [TABULAR_ROW]})
    assert response.status_code == 200
    explained = client.post(
        f"/v1/models/{TABULAR}/explain", json={"instances": [TABULAR_ROW], "methods": ["saliency"]}
    )
    assert explained.status_code == 200


def _tabular_model(root: Path, name: str, module: torch.nn.Module, **spec: Any) -> None:
    """A two-class model (on `FEATURES` unless `spec` says otherwise) with a background that
    fits its spec, written under `root/name`."""
    full = {
        "name": name,
        "modality": "tabular",
        "classes": ["no", "yes"],
        "output": "logits",
        "tabular": {"features": FEATURES},
        **spec,
    }
    width = len(full["tabular"]["features"])
    background = np.random.default_rng(0).normal(size=(16, width)).astype(np.float32)
    write_torchscript_model(root / name, module, full, background)


def _assert_not_ready(client: FlaskClient, name: str, reason: str) -> None:
    """The failed model's routes answer 503 with its reason."""
    for response in (
        client.get(f"/v1/models/{name}"),
        client.post(f"/v1/models/{name}/predict", json={"instances": [[0.0] * len(FEATURES)]}),
        client.post(f"/v1/models/{name}/explain", json={"instances": [[0.0] * len(FEATURES)]}),
    ):
        assert response.status_code == 503 and response.mimetype == "application/problem+json"
        problem = response.get_json()
        assert problem["title"] == "Model not ready" and reason in problem["detail"]


@pytest.mark.parametrize("warm_up", [False, True])
def test_one_bad_model_does_not_stop_the_others(
    make_app: AppFactory, tmp_path: Path, warm_up: bool
) -> None:
    """An unreadable background and a spec that does not fit the artifact fail only their
    model, with or without warm-up."""
    good = LogisticModel([-1.0, 2.0, 0.5, 1.5], -0.2)
    _tabular_model(tmp_path, "good", good)
    _tabular_model(tmp_path, "noise", good)
    (tmp_path / "noise" / "background.npz").write_text("not an npz file")
    _tabular_model(tmp_path, "narrow", good, tabular={"features": FEATURES[:3]})
    client = make_app(model_repo=tmp_path, warm_up=warm_up).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["models"] == ["good"] and set(body["errors"]) == {"noise", "narrow"}
    assert "background.npz" in body["errors"]["noise"]
    narrow = body["errors"]["narrow"]  # the load check's batch: a zero row and background rows
    assert "'tabular.features'" in narrow and re.search(r"input of shape \(\d+, 3\)", narrow)
    assert [m["name"] for m in client.get("/v1/models").get_json()["models"]] == ["good"]
    predicted = client.post("/v1/models/good/predict", json={"instances": [TABULAR_ROW]})
    assert predicted.status_code == 200 and len(predicted.get_json()["predictions"]) == 1
    for name in ("noise", "narrow"):
        _assert_not_ready(client, name, body["errors"][name])


def test_a_model_that_fails_its_warm_up_does_not_stop_the_others(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """A model whose outputs on its own example are NaN fails at warm-up; the others serve."""
    _tabular_model(tmp_path, "good", LogisticModel([-1.0, 2.0, 0.5, 1.5], -0.2))
    _tabular_model(tmp_path, "unstable", NanAboveThree(), example=dict.fromkeys(FEATURES, 1.0))
    client = make_app(model_repo=tmp_path, warm_up=True).test_client()
    body = client.get("/readyz").get_json()
    assert body["models"] == ["good"]
    reason = body["errors"]["unstable"]
    assert "'unstable'" in reason and "warm-up" in reason and "ModelOutputNotFinite" in reason
    explained = client.post(
        "/v1/models/good/explain", json={"instances": [TABULAR_ROW], "methods": ["saliency"]}
    )
    assert explained.status_code == 200
    _assert_not_ready(client, "unstable", reason)


def test_list_and_describe_models(client: FlaskClient) -> None:
    listed = client.get("/v1/models").get_json()["models"]
    assert [m["name"] for m in listed] == [TABULAR, IMAGE]
    tabular = client.get(f"/v1/models/{TABULAR}").get_json()
    assert tabular["features"] == FEATURES and tabular["modality"] == "tabular"
    assert "gradcam" not in tabular["methods"] and tabular["limits"]["max_instances"] == 16
    image = client.get(f"/v1/models/{IMAGE}").get_json()
    assert image["image"] == {"height": 16, "width": 16, "channels": 3}
    assert "gradcam" not in image["methods"]  # TorchScript hides layers from Grad-CAM hooks
    assert image["default_methods"] == ["saliency", "integrated_gradients", "shap", "lime", "tree"]


def test_openapi_spec_documents_every_endpoint(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert {
        "/healthz",
        "/readyz",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/explain",
        "/v1/models/{name}:predict",
        "/v1/models/{name}:explain",
        "/v1/explanations/{id}",
        "/v1/explanations/{id}/{index}/{method}.png",
    } <= set(spec["paths"])
    explain = spec["paths"]["/v1/models/{name}/explain"]["post"]
    assert {"application/json", "multipart/form-data"} == set(explain["requestBody"]["content"])
    schemas = spec["components"]["schemas"]
    assert {"ExplainRequest", "ExplainResponse", "ExplainOptions", "Problem"} <= set(schemas)
    assert schemas["LimeOptions"]["properties"]["num_samples"]["maximum"] == 20000
    for path in spec["paths"].values():
        for operation in path.values():
            assert list(operation["responses"]["422"]["content"]) == ["application/problem+json"]


def test_docs_page_loads_nothing_from_elsewhere(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "openapi.json" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_viewer_is_registered_when_present(client: FlaskClient) -> None:
    assert client.get("/").status_code == 200


CLIENT_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize("given", [CLIENT_ID, CLIENT_ID.replace("-", "").upper()])
def test_a_random_request_id_is_echoed(client: FlaskClient, given: str) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given


@pytest.mark.parametrize(
    "given", ["<script>", "4111111111111111", "MRN-0012345", "jane.doe", "abc-123"]
)
def test_any_other_request_id_is_replaced_and_never_logged(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, given: str
) -> None:
    """Free text could carry a card number, a patient number or a name into the logs."""
    with caplog.at_level(logging.INFO, logger="api.access"):
        response = client.get("/healthz", headers={"X-Request-ID": given})
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    lines = [record.getMessage() for record in caplog.records if record.name == "api.access"]
    assert any(f"request_id={generated} " in line for line in lines)
    assert not any(given in line for line in lines)


def test_overload_answers_carry_the_request_id(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    repo = write_faulty_model(tmp_path_factory.mktemp("faulty-models"))
    one_slot = app_factory(repo, tmp_path_factory)(
        device="cpu", max_concurrency=1, max_queue=0, request_timeout_s=0.3
    )
    client = one_slot.test_client()
    url = f"/v1/models/{FAULTY}/predict"
    with caplog.at_level(logging.WARNING, logger="api.overload"):
        # A hung forward past the time limit (504) keeps the only slot: the next one is shed.
        late = client.post(
            url, json={"instances": [[SLOW_VALUE, 0.0]]}, headers={"X-Request-ID": CLIENT_ID}
        )
        shed = client.post(url, json={"instances": [[1.0, 0.0]]}, headers={"X-Request-ID": "<x>"})
    assert late.status_code == 504 and late.headers["X-Request-ID"] == CLIENT_ID
    assert shed.status_code == 503
    assert shed.get_json()["detail"] == (
        "this worker's limit of explain or predict requests in flight (1) is reached; retry"
    )
    generated = shed.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    lines = [record.getMessage() for record in caplog.records if record.name == "api.overload"]
    assert len(lines) == 2
    assert f"request_id={CLIENT_ID} " in lines[0] and "status=504" in lines[0]
    route = "method=POST route=/v1/models/<name>/predict "
    assert route in lines[0] and route in lines[1]  # the template, as every log line has it
    assert f"request_id={generated} " in lines[1] and "status=503" in lines[1]
    assert not any(str(SLOW_VALUE) in line for line in lines)
