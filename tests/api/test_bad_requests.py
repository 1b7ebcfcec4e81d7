"""A table of bad requests: each gets the right status and an RFC 9457 problem body.

Every case also checks that the body never echoes the sentinel input value and that the
service is still alive afterwards.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import png_bytes
from tests.api.repo import FEATURES, IMAGE, TABULAR

SENTINEL = 98765.4321
ROW = {name: SENTINEL if name == "income" else 0.5 for name in FEATURES}
EXPLAIN = f"/v1/models/{TABULAR}/explain"
IMAGE_EXPLAIN = f"/v1/models/{IMAGE}/explain"
HEATMAP = "/v1/explanations/0123456789abcdef0123456789abcdef/0/saliency.png"


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels, with no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + iend


def request_file(content: bytes) -> dict[str, Any]:
    """Multipart data whose `request` part is a file."""
    return {"request": (io.BytesIO(content), "request.json")}


def image_file() -> tuple[io.BytesIO, str]:
    return io.BytesIO(png_bytes()), "image.png"


def csv_file(name: str) -> tuple[io.BytesIO, str]:
    """An audit data file of one valid row."""
    return io.BytesIO(f"{','.join(FEATURES)}\n0.1,0.2,0.3,0.4\n".encode()), name


@dataclass
class Case:
    status: int
    url: str = EXPLAIN
    json: Any = None
    data: Any = None
    content_type: str | None = None
    method: str = "POST"
    extra: dict[str, Any] = field(default_factory=dict)


def explain(**body: Any) -> dict[str, Any]:
    return {"instances": [ROW], **body}


CASES = {
    # JSON syntax and numbers
    "malformed-json": Case(400, data='{"instances": [', content_type="application/json"),
    "not-json-at-all": Case(400, data="instances=1", content_type="application/json"),
    "nan": Case(422, data='{"instances": [[NaN, 1, 2, 3]]}', content_type="application/json"),
    "infinity": Case(
        422, data='{"instances": [[Infinity, 1, 2, 3]]}', content_type="application/json"
    ),
    "minus-infinity": Case(
        422, data='{"instances": [[-Infinity, 1, 2, 3]]}', content_type="application/json"
    ),
    "float-overflow": Case(
        422, data='{"instances": [[1e999, 1, 2, 3]]}', content_type="application/json"
    ),
    # an integer literal of more digits than Python converts (4300) is out of range too
    "integer-literal-too-long": Case(
        422, data='{"instances": [[' + "9" * 5000 + ", 1, 2, 3]]}", content_type="application/json"
    ),
    # nested past the parser's recursion limit: a 422, not a RecursionError's 500
    "nested-too-deeply": Case(
        422,
        data='{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}",
        content_type="application/json",
    ),
    "multipart-request-nested-too-deeply": Case(
        422,
        url=IMAGE_EXPLAIN,
        content_type="multipart/form-data",
        data={"request": "[" * 50_000 + "]" * 50_000},
    ),
    "audit-nested-too-deeply": Case(
        422, url="/v1/audits", data="[" * 100_000 + "]" * 100_000, content_type="application/json"
    ),
    # schema
    "body-not-object": Case(422, json=[1, 2]),
    "missing-instances": Case(422, json={}),
    "empty-instances": Case(422, json={"instances": []}),
    "instances-not-list": Case(422, json={"instances": ROW}),
    "unknown-field": Case(422, json=explain(colour="red")),
    "unknown-option": Case(422, json=explain(options={"lime": {"bogus": 1}})),
    "unknown-option-method": Case(422, json=explain(options={"magic": {}})),
    "heatmaps-not-bool": Case(422, json=explain(heatmaps="yes")),
    "seed-negative": Case(422, json=explain(seed=-1)),
    "seed-float": Case(422, json=explain(seed=1.5)),
    # option values of the wrong JSON type are refused, not coerced ("64" -> 64, true -> 1)
    "option-int-as-string": Case(
        422, json=explain(options={"integrated_gradients": {"n_steps": "64"}})
    ),
    "option-int-as-float": Case(422, json=explain(options={"lime": {"num_samples": 500.0}})),
    "option-int-as-boolean": Case(422, json=explain(options={"tree": {"max_depth": True}})),
    "option-bool-as-string": Case(422, json=explain(options={"saliency": {"abs": "no"}})),
    "option-bool-as-int": Case(422, json=explain(options={"saliency": {"abs": 0}})),
    "option-float-as-string": Case(422, json=explain(options={"smoothgrad": {"stdev": "0.2"}})),
    "audit-option-int-as-string": Case(
        422,
        url="/v1/audits",
        json={
            "model": TABULAR,
            "instances": [ROW],
            "options": {"integrated_gradients": {"n_steps": "64"}},
        },
    ),
    # methods
    "unknown-method": Case(422, json=explain(methods=["magic"])),
    "image-only-method": Case(422, json=explain(methods=["gradcam"])),
    "empty-methods": Case(422, json=explain(methods=[])),
    # models and paths
    "unknown-model": Case(404, url="/v1/models/nope/explain", json=explain()),
    "path-traversal-encoded": Case(
        404, url="/v1/models/..%2F..%2Fetc%2Fpasswd/explain", json=explain()
    ),
    "path-traversal-dots": Case(404, url="/v1/models/%2e%2e/explain", json=explain()),
    "unknown-route": Case(404, url="/v1/nothing", method="GET"),
    "wrong-method": Case(405, url=EXPLAIN, method="GET"),
    # limits
    "n-steps-over-hard-limit": Case(
        422, json=explain(options={"integrated_gradients": {"n_steps": 100000}})
    ),
    "n-steps-over-service-limit": Case(
        422, json=explain(options={"integrated_gradients": {"n_steps": 1000}})
    ),
    "num-samples-huge": Case(422, json=explain(options={"lime": {"num_samples": 10**7}})),
    "num-samples-over-service-limit": Case(
        422, json=explain(options={"lime": {"num_samples": 19000}})
    ),
    "depth-huge": Case(422, json=explain(options={"tree": {"max_depth": 50}})),
    "depth-over-service-limit": Case(422, json=explain(options={"tree": {"max_depth": 8}})),
    "shap-evals-huge": Case(422, json=explain(options={"shap": {"max_evals": 10**6}})),
    "too-many-instances": Case(422, json={"instances": [ROW] * 17}),
    "body-too-large": Case(
        413, data=b'{"instances": [' + b" " * 300_000 + b"]}", content_type="application/json"
    ),
    # targets
    "target-out-of-range": Case(422, json=explain(target=7)),
    "target-negative": Case(422, json=explain(target=-1)),
    "target-unknown-label": Case(422, json=explain(target="maybe")),
    "target-boolean": Case(422, json=explain(target=True)),
    # tabular instances
    "row-too-short": Case(422, json={"instances": [[SENTINEL, 2.0]]}),
    "unknown-feature": Case(422, json={"instances": [{**ROW, "shoe_size": 3}]}),
    "missing-feature": Case(422, json={"instances": [{"income": SENTINEL}]}),
    "feature-not-number": Case(422, json={"instances": [{**ROW, "debt": "lots"}]}),
    "feature-huge-integer": Case(422, json={"instances": [{**ROW, "debt": 10**400}]}),
    "row-is-string": Case(422, json={"instances": ["income=1"]}),
    # images
    "bad-base64": Case(422, url=IMAGE_EXPLAIN, json={"instances": [{"b64": "!!not base64!!"}]}),
    "b64-not-string": Case(422, url=IMAGE_EXPLAIN, json={"instances": [{"b64": 12}]}),
    "image-extra-key": Case(
        422, url=IMAGE_EXPLAIN, json={"instances": [{**b64(png_bytes()), "x": 1}]}
    ),
    "not-an-image": Case(422, url=IMAGE_EXPLAIN, json={"instances": [b64(b"hello world")]}),
    "gif": Case(422, url=IMAGE_EXPLAIN, json={"instances": [b64(png_bytes(fmt="GIF"))]}),
    "tiff": Case(422, url=IMAGE_EXPLAIN, json={"instances": [b64(png_bytes(fmt="TIFF"))]}),
    "decompression-bomb": Case(
        422, url=IMAGE_EXPLAIN, json={"instances": [b64(png_claiming(10_000, 10_000))]}
    ),
    # Past Pillow's own bomb limit (2 x 89 Mpx) Image.open raises before our header check.
    "decompression-bomb-huge": Case(
        422, url=IMAGE_EXPLAIN, json={"instances": [b64(png_claiming(100_000, 100_000))]}
    ),
    "too-many-pixels": Case(422, url=IMAGE_EXPLAIN, json={"instances": [b64(png_bytes(65))]}),
    "truncated-png": Case(422, url=IMAGE_EXPLAIN, json={"instances": [b64(png_bytes()[:60])]}),
    "jpeg-cut-in-its-header": Case(
        422, url=IMAGE_EXPLAIN, json={"instances": [b64(png_bytes(fmt="JPEG")[:300])]}
    ),
    "tabular-row-for-image": Case(422, url=IMAGE_EXPLAIN, json={"instances": [ROW]}),
    # content types and multipart
    "text-plain": Case(415, data=json.dumps(explain()), content_type="text/plain"),
    "no-content-type": Case(415, data=json.dumps(explain())),
    "form-urlencoded": Case(
        415, data={"instances": "1"}, content_type="application/x-www-form-urlencoded"
    ),
    "multipart-unknown-field": Case(
        422, url=IMAGE_EXPLAIN, content_type="multipart/form-data", data={"other": "1"}
    ),
    "multipart-bad-request-json": Case(
        400, url=IMAGE_EXPLAIN, content_type="multipart/form-data", data={"request": "{"}
    ),
    "multipart-request-not-object": Case(
        422, url=IMAGE_EXPLAIN, content_type="multipart/form-data", data={"request": "[1]"}
    ),
    "multipart-no-files": Case(
        422, url=IMAGE_EXPLAIN, content_type="multipart/form-data", data={"request": "{}"}
    ),
    "multipart-instances-as-text": Case(
        422, url=IMAGE_EXPLAIN, content_type="multipart/form-data", data={"instances": "1"}
    ),
    # the request part sent as a file is read like the form field
    "multipart-request-file-bad-json": Case(
        400, url=IMAGE_EXPLAIN, content_type="multipart/form-data", data=request_file(b"{")
    ),
    "multipart-request-file-not-utf8": Case(
        400,
        url=IMAGE_EXPLAIN,
        content_type="multipart/form-data",
        data=request_file(b'{"a": "\xff"}'),
    ),
    "multipart-request-file-nan": Case(
        422,
        url=IMAGE_EXPLAIN,
        content_type="multipart/form-data",
        data=request_file(b'{"seed": NaN}'),
    ),
    "multipart-request-file-not-object": Case(
        422, url=IMAGE_EXPLAIN, content_type="multipart/form-data", data=request_file(b"[1]")
    ),
    "multipart-request-file-unknown-field": Case(
        422,
        url=IMAGE_EXPLAIN,
        content_type="multipart/form-data",
        data={**request_file(b'{"colour": "red"}'), "instances": image_file()},
    ),
    "audit-multipart-option-int-as-string": Case(
        422,
        url="/v1/audits",
        content_type="multipart/form-data",
        data={
            "data": csv_file("a.csv"),
            "request": json.dumps({"model": TABULAR, "options": {"tree": {"max_depth": "3"}}}),
        },
    ),
    # a second data file would be dropped unexplained
    "audit-two-data-files": Case(
        422,
        url="/v1/audits",
        content_type="multipart/form-data",
        data={
            "data": [csv_file("a.csv"), csv_file("b.csv")],
            "request": json.dumps({"model": TABULAR}),
        },
    ),
    "multipart-request-twice": Case(
        422,
        url=IMAGE_EXPLAIN,
        content_type="multipart/form-data",
        data={"request": ["{}", request_file(b"{}")["request"]], "instances": image_file()},
    ),
    # predict and the KServe aliases share the checks
    "predict-nan": Case(
        422,
        url=f"/v1/models/{TABULAR}/predict",
        data='{"instances": [[NaN, 1, 2, 3]]}',
        content_type="application/json",
    ),
    "kserve-unknown-field": Case(422, url=f"/v1/models/{TABULAR}:explain", json=explain(extra=1)),
    "kserve-predict-unknown-model": Case(
        404, url="/v1/models/nope:predict", json={"instances": [ROW]}
    ),
    # stored explanations and heatmaps
    "unknown-explanation": Case(404, url="/v1/explanations/" + "0" * 32, method="GET"),
    "heatmap-unknown-explanation": Case(404, url=HEATMAP, method="GET"),
    "heatmap-bad-style": Case(422, url=HEATMAP + "?style=sketch", method="GET"),
    "heatmap-bad-colormap": Case(422, url=HEATMAP + "?colormap=jet", method="GET"),
    "heatmap-alpha-too-big": Case(422, url=HEATMAP + "?alpha=2", method="GET"),
    "heatmap-alpha-not-number": Case(422, url=HEATMAP + "?alpha=lots", method="GET"),
    "heatmap-unknown-query": Case(422, url=HEATMAP + "?size=9000", method="GET"),
    # a misspelt parameter of an audit's results is refused, not ignored
    "audit-results-unknown-query": Case(
        422, url="/v1/audits/" + "0" * 32 + "/results?fromat=csv", method="GET"
    ),
}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert set(body) == {"type", "title", "status", "detail", "errors"}
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    for item in body["errors"]:
        assert set(item) == {"loc", "msg"}
        assert isinstance(item["loc"], list) and isinstance(item["msg"], str)
    return body


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_request_is_a_problem(client: FlaskClient, case: Case) -> None:
    kwargs: dict[str, Any] = {"json": case.json} if case.json is not None else {}
    if case.data is not None:
        kwargs["data"] = case.data
    if case.content_type is not None:
        kwargs["content_type"] = case.content_type
    response = client.open(case.url, method=case.method, **kwargs, **case.extra)
    body = assert_problem(response, case.status)
    assert str(SENTINEL) not in response.get_data(as_text=True)
    assert "Traceback" not in body["detail"]
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("as_file", [False, True], ids=["form-field", "file"])
def test_request_part_over_the_form_field_limit_is_413(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, as_file: bool
) -> None:
    # Under the body limit (256 KiB); Werkzeug needs a form limit above its 64 KiB chunks.
    monkeypatch.setitem(client.application.config, "MAX_FORM_MEMORY_SIZE", 200_000)
    options = '{"seed": 1' + " " * 210_000 + "}"
    part = request_file(options.encode())["request"] if as_file else options
    response = client.post(IMAGE_EXPLAIN, data={"request": part, "instances": image_file()})
    assert_problem(response, 413)


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_validation_errors_name_the_location(client: FlaskClient) -> None:
    response = client.post(EXPLAIN, json=explain(options={"lime": {"num_samples": 10**7}}))
    body = assert_problem(response, 422)
    assert ["options", "lime", "num_samples"] in [item["loc"] for item in body["errors"]]


def test_a_value_beyond_float32_is_invalid_input_at_its_feature(client: FlaskClient) -> None:
    # Not "Model output not finite": the value would turn into infinity in the model's input.
    response = client.post(EXPLAIN, json={"instances": [{**ROW, "debt": 1e39}]})
    body = assert_problem(response, 422)
    assert body["title"] == "Invalid input"
    assert [item["loc"] for item in body["errors"]] == [["instances", 0, "debt"]]


def test_limit_errors_say_which_limit(client: FlaskClient) -> None:
    response = client.post(EXPLAIN, json=explain(options={"tree": {"max_depth": 8}}))
    body = assert_problem(response, 422)
    assert body["errors"] == [{"loc": ["options", "tree", "max_depth"], "msg": "at most 6 allowed"}]


def test_method_not_allowed_lists_allowed_methods(client: FlaskClient) -> None:
    response = client.get(EXPLAIN)
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(("padding", "status"), [(1, 413), (0, 200)], ids=["over", "at-limit"])
def test_a_chunked_body_is_held_to_the_body_limit(
    client: FlaskClient, padding: int, status: int
) -> None:
    """Without Content-Length (chunked), werkzeug read a JSON body only up to the limit and
    stopped there: a body over it was cut short (a 400), or answered for the part that fit."""
    url = f"/v1/models/{TABULAR}/predict"
    body = json.dumps({"instances": [ROW]}).encode()
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    body += b" " * (limit - len(body) + padding)
    response = client.post(
        url,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets it
    )
    assert response.status_code == status, response.get_data(as_text=True)
