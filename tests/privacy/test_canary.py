"""Input values never reach the server's log or an error body (DESIGN 6), on a live server.

Every request carries the canaries of `benchmarks.canary`: a tabular value, a string value,
a class label, PNG metadata, an upload's file name, and bytes of corrupt images and bodies,
on valid and invalid requests alike (explain, predict, multipart, audits). Field and model
names are identifiers, not values: error bodies may name them (`loc`, "no model named ...")
so the caller can fix the request, but the log never holds them either.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from benchmarks.canary import CANARY_NUMBER, CANARY_STRING, count_canaries
from benchmarks.liveserver import LiveServer, running_server
from tests.api.repo import FEATURES, IMAGE, TABULAR, build_repository
from tests.fuzz.hooks import canary_png

pytestmark = pytest.mark.e2e

FIELD_CANARY = "canary-field-93b1"  # a field / model name: an identifier
ROW = dict(zip(FEATURES, [CANARY_NUMBER, 1.5, -0.3, 2.0], strict=True))
PNG = canary_png()
CHEAP = {"methods": ["saliency", "integrated_gradients"]}

# (name, path, request kwargs)
JSON_CASES: list[tuple[str, str, Any]] = [
    ("valid explain", f"{TABULAR}/explain", {"instances": [ROW], **CHEAP}),
    ("valid predict", f"{TABULAR}/predict", {"instances": [list(ROW.values())]}),
    ("unknown target", f"{TABULAR}/explain", {"instances": [ROW], "target": CANARY_STRING}),
    ("string value", f"{TABULAR}/predict", {"instances": [{**ROW, "debt": CANARY_STRING}]}),
    ("short list", f"{TABULAR}/predict", {"instances": [[CANARY_NUMBER, CANARY_STRING]]}),
    ("unknown field", f"{TABULAR}/predict", {"instances": [{**ROW, FIELD_CANARY: 1.0}]}),
    ("unknown model", f"{FIELD_CANARY}/predict", {"instances": [ROW]}),
    ("too many", f"{TABULAR}/predict", {"instances": [ROW] * 100}),
    ("bad option", f"{TABULAR}/explain", {"instances": [ROW], "options": {"lime": ROW}}),
    ("png metadata", f"{IMAGE}/explain", {"instances": [{"b64": base64.b64encode(PNG).decode()}]}),
    (
        "not an image",
        f"{IMAGE}/explain",
        {"instances": [{"b64": base64.b64encode(CANARY_STRING.encode()).decode()}]},
    ),
    ("bad base64", f"{IMAGE}/predict", {"instances": [{"b64": CANARY_STRING + "!"}]}),
    ("image as row", f"{IMAGE}/predict", {"instances": [ROW]}),
]
RAW_CASES: list[tuple[str, str, str]] = [
    ("malformed json", f"{TABULAR}/predict", f'{{"instances": [["{CANARY_STRING}", '),
    ("nan", f"{TABULAR}/predict", f'{{"instances": [[NaN, {CANARY_NUMBER!r}, 1, 2]]}}'),
    ("huge number", f"{TABULAR}/predict", f'{{"instances": [[1e999, {CANARY_NUMBER!r}, 1]]}}'),
]


def _send_all(url: str) -> list[tuple[str, requests.Response]]:
    sent = [
        (name, requests.post(f"{url}/v1/models/{path}", json=body, timeout=120))
        for name, path, body in JSON_CASES
    ]
    headers = {"Content-Type": "application/json"}
    sent += [
        (name, requests.post(f"{url}/v1/models/{path}", data=raw, headers=headers, timeout=60))
        for name, path, raw in RAW_CASES
    ]
    files = {"instances": (f"{CANARY_STRING}.png", PNG, "image/png")}
    form = {"request": json.dumps({"methods": ["saliency"], "target": CANARY_STRING})}
    multipart = requests.post(
        f"{url}/v1/models/{IMAGE}/explain", files=files, data=form, timeout=60
    )
    sent.append(("multipart", multipart))
    bad_rows: dict[str, Any] = {"model": TABULAR, "instances": [ROW, {**ROW, "age": CANARY_STRING}]}
    sent.append(("bad audit", requests.post(f"{url}/v1/audits", json=bad_rows, timeout=60)))
    audit: dict[str, Any] = {"model": TABULAR, "instances": [ROW, list(ROW.values())], **CHEAP}
    created = requests.post(f"{url}/v1/audits", json=audit, timeout=60)
    sent.append(("audit", created))
    status = f"{url}{created.headers['Location']}"
    deadline = time.monotonic() + 120
    while requests.get(status, timeout=10).json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the audit did not finish"
        time.sleep(0.2)
    sent.append(("audit results", requests.get(f"{status}/results", timeout=60)))
    return sent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    repo = build_repository(tmp_path_factory.mktemp("privacy-models"))
    with running_server(tmp_path_factory.mktemp("privacy-server"), repo) as live:
        yield live


@pytest.fixture(scope="module")
def exchanges(server: LiveServer) -> list[tuple[str, requests.Response]]:
    return _send_all(server.url)


def test_requests_reached_the_models(exchanges: list[tuple[str, requests.Response]]) -> None:
    statuses = {name: response.status_code for name, response in exchanges}
    for name in ("valid explain", "valid predict", "png metadata", "audit results"):
        assert statuses[name] == 200, name
    assert statuses["audit"] == 202
    assert sum(status >= 400 for status in statuses.values()) >= 15


def test_error_bodies_hold_no_input_values(
    exchanges: list[tuple[str, requests.Response]],
) -> None:
    for name, response in exchanges:
        if response.status_code >= 400:
            assert count_canaries(response.text) == 0, (name, response.text)


def test_the_log_holds_no_input_values(
    server: LiveServer, exchanges: list[tuple[str, requests.Response]]
) -> None:
    log = server.log_text()
    assert len(log.splitlines()) >= len(exchanges)  # one access line per request at least
    assert count_canaries(log) == 0
    assert FIELD_CANARY not in log
