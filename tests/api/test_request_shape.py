"""Requests whose shape is wrong before their content is read: a known query parameter given
twice (422 naming it, where its first value was used silently) and a multipart body cut
short or without its boundary (400, where it parsed as no fields: "field required")."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import png_bytes
from tests.api.repo import FEATURES, IMAGE, TABULAR, TABULAR_ROW

PROBLEM_MIME = "application/problem+json"
BOUNDARY = "test-boundary-7f3a"


def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data()[:500]
    assert response.mimetype == PROBLEM_MIME
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    return body


@pytest.fixture(scope="module")
def heatmap_url(app: Any) -> str:
    response = app.test_client().post(
        f"/v1/models/{IMAGE}/explain",
        data={
            "instances": (io.BytesIO(png_bytes()), "image.png"),
            "request": '{"methods": ["saliency"]}',
        },
    )
    assert response.status_code == 200, response.get_json()
    url: str = response.get_json()["explanations"][0]["methods"]["saliency"]["heatmap_url"]
    return url


@pytest.fixture(scope="module")
def audit_url(app: Any) -> str:
    """A completed one-row audit of the tabular model."""
    client = app.test_client()
    body = {"model": TABULAR, "instances": [TABULAR_ROW], "methods": ["saliency"]}
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.get_json()
    location: str = response.headers["Location"]
    deadline = time.monotonic() + 60
    while client.get(location).get_json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the audit did not finish"
        time.sleep(0.2)
    assert client.get(location).get_json()["status"] == "completed"
    return location


# ---- a query parameter given twice ----


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("style=map&style=overlay", ["style"]),
        ("colormap=viridis&colormap=magma", ["colormap"]),
        ("alpha=0.2&style=map&alpha=0.9", ["alpha"]),
        ("alpha=0.2&style=map&alpha=0.9&style=map", ["alpha", "style"]),
    ],
)
def test_a_heatmap_parameter_given_twice_is_a_422_naming_it(
    client: FlaskClient, heatmap_url: str, query: str, names: list[str]
) -> None:
    body = problem_of(client.get(f"{heatmap_url}?{query}"), 422)
    assert body["detail"] == "query parameters given more than once"
    assert [item["loc"] for item in body["errors"]] == [[name] for name in names]
    assert client.get(f"{heatmap_url}?style=map&alpha=0.9").status_code == 200


@pytest.mark.parametrize(
    ("query", "name"), [("format=csv&format=jsonl", "format"), ("row=0&row=0", "row")]
)
def test_an_audit_results_parameter_given_twice_is_a_422_naming_it(
    client: FlaskClient, audit_url: str, query: str, name: str
) -> None:
    body = problem_of(client.get(f"{audit_url}/results?{query}"), 422)
    assert body["errors"] == [{"loc": [name], "msg": "given more than once: send it once"}]
    once = client.get(f"{audit_url}/results?format=csv&row=0")
    assert once.status_code == 200 and once.mimetype == "text/csv"


def test_an_unknown_parameter_given_twice_is_still_unknown(
    client: FlaskClient, audit_url: str
) -> None:
    body = problem_of(client.get(f"{audit_url}/results?fromat=csv&fromat=csv"), 422)
    assert [item["loc"] for item in body["errors"]] == [["fromat"]]


def test_parameters_of_routes_without_a_query_model_are_left_alone(client: FlaskClient) -> None:
    assert client.get("/v1/models?x=1&x=2").status_code == 200


# ---- a multipart body cut short ----


def multipart_body(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """(name, filename or None for a form field, content) parts, closed by the boundary."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


IMAGE_PARTS = [
    ("request", None, b'{"methods": ["saliency"]}'),
    ("instances", "image.png", png_bytes()),
]
AUDIT_PARTS = [
    ("request", None, json.dumps({"model": TABULAR, "methods": ["saliency"]}).encode()),
    ("data", "rows.csv", f"{','.join(FEATURES)}\n0.1,0.2,0.3,0.4\n".encode()),
]
UPLOADS = {
    "image": (f"/v1/models/{IMAGE}/explain", IMAGE_PARTS),
    "audit": ("/v1/audits", AUDIT_PARTS),
}


@pytest.mark.parametrize("upload", UPLOADS)
@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_a_truncated_multipart_body_is_a_400(client: FlaskClient, upload: str, keep: float) -> None:
    url, parts = UPLOADS[upload]
    whole = multipart_body(parts)
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    # The whole body is accepted (the parts are valid) ...
    assert client.post(url, data=whole, content_type=content_type).status_code in (200, 202)
    # ... cut short, with a Content-Length that matches what is sent, it is malformed.
    cut = whole[: int(len(whole) * keep)]
    response = client.post(url, data=cut, content_type=content_type)
    assert int(response.request.headers["Content-Length"]) == len(cut)
    body = problem_of(response, 400)
    assert body["title"] == "Malformed request"
    assert body["detail"] == "the multipart body is malformed or truncated"
    assert body["errors"] == [{"loc": ["body"], "msg": "malformed multipart/form-data"}]


def test_a_multipart_body_without_a_boundary_is_a_400(client: FlaskClient) -> None:
    whole = multipart_body(IMAGE_PARTS)
    response = client.post(
        f"/v1/models/{IMAGE}/explain", data=whole, content_type="multipart/form-data"
    )
    assert problem_of(response, 400)["detail"] == "the multipart body is malformed or truncated"
