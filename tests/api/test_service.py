"""Health, readiness, model listings, the OpenAPI spec, the docs page and the viewer hook."""

from __future__ import annotations

import re
from pathlib import Path

from flask.testing import FlaskClient

from tests.api.conftest import AppFactory
from tests.api.repo import FEATURES, IMAGE, TABULAR


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["models"] == [TABULAR, IMAGE]


def test_not_ready_when_the_repository_fails(make_app: AppFactory, tmp_path: Path) -> None:
    client = make_app(model_repo=tmp_path / "missing").test_client()
    assert client.get("/healthz").status_code == 200
    for url in ("/readyz", "/v1/models"):
        response = client.get(url)
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"]


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


def test_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
