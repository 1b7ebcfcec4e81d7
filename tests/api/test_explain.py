"""Successful requests: response shape (DESIGN 3.2), determinism, aliases, storage, PNGs."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image

from api.schemas import ExplainResponse
from explainer.render import heatmap_size
from tests.api.conftest import png_bytes
from tests.api.repo import FEATURES, IMAGE, IMAGE_SIDE, TABULAR, TABULAR_ROW

FIVE = ["saliency", "integrated_gradients", "shap", "lime", "tree"]
FAST = {"lime": {"num_samples": 200}}


def numbers(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The explanations without what legitimately differs between calls (id, timings,
    whether the cache answered)."""
    out = []
    for instance in response["explanations"]:
        methods = {
            name: {k: v for k, v in result.items() if k not in ("heatmap_url", "cached")}
            for name, result in instance["methods"].items()
        }
        out.append({**instance, "methods": methods, "timings_ms": sorted(instance["timings_ms"])})
    return out


@pytest.fixture(scope="module")
def tabular_response(app: Any) -> dict[str, Any]:
    response = app.test_client().post(
        f"/v1/models/{TABULAR}/explain", json={"instances": [TABULAR_ROW], "options": FAST}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def image_response(app: Any) -> dict[str, Any]:
    body = {"instances": [{"b64": base64.b64encode(png_bytes()).decode()}], "options": FAST}
    response = app.test_client().post(f"/v1/models/{IMAGE}/explain", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def test_tabular_response_has_the_documented_shape(tabular_response: dict[str, Any]) -> None:
    ExplainResponse.model_validate(tabular_response)
    assert set(tabular_response["model"]) == {"name", "version", "sha256"}
    instance = tabular_response["explanations"][0]
    assert set(instance["prediction"]) == {"label", "index", "probabilities"}
    assert set(instance["target"]) == {"label", "index"}
    assert list(instance["methods"]) == FIVE
    for result in instance["methods"].values():
        assert len(result["attributions"]) == len(FEATURES)
        assert result["units"] and "quality" in result and result["heatmap_url"]
    methods = instance["methods"]
    assert "base_value" in methods["shap"] and "additivity_error" in methods["shap"]["quality"]
    assert "intercept" in methods["lime"] and "local_r2" in methods["lime"]["quality"]
    assert {"rules", "leaf_value", "tree"} <= set(methods["tree"])
    assert "convergence_delta" in methods["integrated_gradients"]["quality"]
    assert set(instance["timings_ms"]) == set(FIVE)


def test_provenance_allows_a_replay(tabular_response: dict[str, Any]) -> None:
    provenance = tabular_response["provenance"]
    assert {"torch", "captum", "shap", "lime", "sklearn"} <= set(provenance["versions"])
    assert provenance["seed"] == 0 and provenance["device"] == "cpu"
    assert provenance["target"] == "predicted" and provenance["methods"] == FIVE
    assert provenance["options"]["lime"]["num_samples"] == 200
    assert provenance["options"]["integrated_gradients"]["baseline"] == "zeros"


def test_reason_codes_push_toward_the_adverse_class(tabular_response: dict[str, Any]) -> None:
    instance = tabular_response["explanations"][0]
    codes = instance["reason_codes"]
    assert codes["method"] == "shap"
    assert codes["adverse_class"] == {"index": 1, "label": "decline"}
    shap = instance["methods"]["shap"]["attributions"]
    sign = 1 if instance["target"]["index"] == 1 else -1
    contributions = [c["contribution"] for c in codes["codes"]]
    assert contributions == sorted(contributions, reverse=True) and min(contributions) > 0
    for code in codes["codes"]:
        assert code["contribution"] == pytest.approx(sign * shap[FEATURES.index(code["feature"])])
    texts = {c["feature"]: c["reason"] for c in codes["codes"]}
    assert texts.get("debt", "Debt too high") == "Debt too high"


def test_reason_codes_fall_back_to_integrated_gradients(client: FlaskClient) -> None:
    body = {"instances": [TABULAR_ROW], "methods": ["saliency", "integrated_gradients"]}
    instance = client.post(f"/v1/models/{TABULAR}/explain", json=body).get_json()
    assert instance["explanations"][0]["reason_codes"]["method"] == "integrated_gradients"
    body["methods"] = ["saliency"]
    instance = client.post(f"/v1/models/{TABULAR}/explain", json=body).get_json()
    assert "reason_codes" not in instance["explanations"][0]


@pytest.mark.parametrize("target", [0, 1, "approve", "decline"])
def test_explicit_targets(client: FlaskClient, target: int | str) -> None:
    body = {"instances": [TABULAR_ROW], "methods": ["saliency"], "target": target}
    response = client.post(f"/v1/models/{TABULAR}/explain", json=body).get_json()
    explained = response["explanations"][0]["target"]
    assert target in (explained["index"], explained["label"])


def test_identical_requests_give_identical_numbers(
    client: FlaskClient, tabular_response: dict[str, Any], image_response: dict[str, Any]
) -> None:
    again = client.post(
        f"/v1/models/{TABULAR}/explain", json={"instances": [TABULAR_ROW], "options": FAST}
    ).get_json()
    assert numbers(again) == numbers(tabular_response)
    assert again["id"] != tabular_response["id"]
    # The repeat comes from the explanation cache, and says so.
    for first, repeated in zip(
        tabular_response["explanations"], again["explanations"], strict=True
    ):
        assert all("cached" not in method for method in first["methods"].values())
        assert all(method["cached"] is True for method in repeated["methods"].values())
    body = {"instances": [{"b64": base64.b64encode(png_bytes()).decode()}], "options": FAST}
    again = client.post(f"/v1/models/{IMAGE}/explain", json=body).get_json()
    assert numbers(again) == numbers(image_response)


def test_kserve_alias_gives_the_same_numbers(
    client: FlaskClient, tabular_response: dict[str, Any]
) -> None:
    alias = client.post(
        f"/v1/models/{TABULAR}:explain", json={"instances": [TABULAR_ROW], "options": FAST}
    ).get_json()
    assert numbers(alias) == numbers(tabular_response)
    plain = client.post(f"/v1/models/{TABULAR}/predict", json={"instances": [TABULAR_ROW]})
    kserve = client.post(f"/v1/models/{TABULAR}:predict", json={"instances": [TABULAR_ROW]})
    assert plain.status_code == kserve.status_code == 200
    assert plain.get_json() == kserve.get_json()
    prediction = plain.get_json()["predictions"][0]
    assert prediction == tabular_response["explanations"][0]["prediction"]


def test_image_response_has_maps_at_the_model_size(image_response: dict[str, Any]) -> None:
    ExplainResponse.model_validate(image_response)
    methods = image_response["explanations"][0]["methods"]
    assert list(methods) == FIVE
    for result in methods.values():
        assert len(result["attributions"]) == IMAGE_SIDE
        assert all(len(row) == IMAGE_SIDE for row in result["attributions"])
    assert "segments" in methods["lime"]


def test_multipart_upload_equals_base64_json(
    client: FlaskClient, image_response: dict[str, Any]
) -> None:
    data = {
        "instances": (io.BytesIO(png_bytes()), "image.png", "image/png"),
        "request": '{"options": {"lime": {"num_samples": 200}}}',
    }
    response = client.post(f"/v1/models/{IMAGE}/explain", data=data)
    assert response.status_code == 200, response.get_json()
    assert numbers(response.get_json()) == numbers(image_response)


@pytest.mark.parametrize("as_file", [False, True], ids=["form-field", "file"])
def test_multipart_request_part_as_form_field_or_file(client: FlaskClient, as_file: bool) -> None:
    for target in ("plain", "striped"):  # one of them is not the predicted class
        options = json.dumps({"methods": ["saliency"], "target": target})
        part = (io.BytesIO(options.encode()), "request.json") if as_file else options
        data = {"instances": (io.BytesIO(png_bytes()), "image.png"), "request": part}
        response = client.post(f"/v1/models/{IMAGE}/explain", data=data)
        assert response.status_code == 200, response.get_json()
        explained = response.get_json()["explanations"][0]
        assert list(explained["methods"]) == ["saliency"]
        assert explained["target"]["label"] == target


def test_stored_explanation_is_the_response(
    client: FlaskClient, tabular_response: dict[str, Any]
) -> None:
    stored = client.get(f"/v1/explanations/{tabular_response['id']}")
    assert stored.status_code == 200
    assert stored.get_json() == tabular_response


@pytest.mark.parametrize("style", ["overlay", "map"])
def test_image_heatmaps(client: FlaskClient, image_response: dict[str, Any], style: str) -> None:
    for method, result in image_response["explanations"][0]["methods"].items():
        response = client.get(f"{result['heatmap_url']}?style={style}&alpha=0.4")
        assert response.status_code == 200 and response.mimetype == "image/png"
        image = Image.open(io.BytesIO(response.data))
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == heatmap_size(IMAGE_SIDE, IMAGE_SIDE) == (256, 296)
        assert image.text["model"] == IMAGE and image.text["method"] == method  # type: ignore[attr-defined]
        assert image.text["style"] == style  # type: ignore[attr-defined]


def test_tabular_heatmap_is_a_bar_chart(
    client: FlaskClient, tabular_response: dict[str, Any]
) -> None:
    url = tabular_response["explanations"][0]["methods"]["shap"]["heatmap_url"]
    response = client.get(url + "?colormap=coolwarm")
    image = Image.open(io.BytesIO(response.data))
    assert response.status_code == 200 and image.mode == "RGB" and image.width == 640
    assert image.text["target"] == tabular_response["explanations"][0]["target"]["label"]  # type: ignore[attr-defined]


def test_heatmap_of_a_method_not_computed_is_404(
    client: FlaskClient, tabular_response: dict[str, Any]
) -> None:
    response = client.get(f"/v1/explanations/{tabular_response['id']}/0/gradcam.png")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    response = client.get(f"/v1/explanations/{tabular_response['id']}/5/shap.png")
    assert response.status_code == 404


def test_heatmaps_false_leaves_out_urls(client: FlaskClient) -> None:
    body = {"instances": [TABULAR_ROW], "methods": ["saliency"], "heatmaps": False}
    response = client.post(f"/v1/models/{TABULAR}/explain", json=body).get_json()
    assert "heatmap_url" not in response["explanations"][0]["methods"]["saliency"]


def test_extra_methods(client: FlaskClient) -> None:
    body = {
        "instances": [{"b64": base64.b64encode(png_bytes()).decode()}],
        "methods": ["smoothgrad", "occlusion"],  # gradcam needs a safetensors model (e2e)
    }
    response = client.post(f"/v1/models/{IMAGE}/explain", json=body)
    assert response.status_code == 200, response.get_json()
    assert list(response.get_json()["explanations"][0]["methods"]) == body["methods"]


def test_predict(client: FlaskClient) -> None:
    response = client.post(f"/v1/models/{TABULAR}/predict", json={"instances": [TABULAR_ROW] * 3})
    predictions = response.get_json()["predictions"]
    assert len(predictions) == 3
    assert sum(predictions[0]["probabilities"]) == pytest.approx(1.0)
    assert predictions[0]["label"] in ("approve", "decline")


def test_another_process_serves_the_stored_explanation(
    make_app: Any, app: Any, tabular_response: dict[str, Any]
) -> None:
    """Two apps (as two gunicorn workers) on one database: no per-worker memory."""
    other = make_app(database_url=app.extensions["explainer"].config.database_url)
    client = other.test_client()
    url = tabular_response["explanations"][0]["methods"]["shap"]["heatmap_url"]
    assert client.get(f"/v1/explanations/{tabular_response['id']}").get_json() == tabular_response
    assert client.get(url).status_code == 200
