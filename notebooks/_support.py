"""Helpers shared by the example notebooks: start or reach a server, call it, fetch PNGs.

The notebooks talk to the service over HTTP only (DESIGN 3.2). `connect()` returns an
`ExplainerClient` for the server named by the `EXPLAINER_URL` environment variable, or, when
none is given, for an `explainer serve` subprocess it starts on a free port (stopped again by
`client.close()`). Everything here is small on purpose: the notebooks show the API, not this
module.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the notebooks run in notebooks/; `benchmarks` is not installed
    sys.path.append(str(REPO))

from benchmarks import liveserver  # noqa: E402

URL_VARIABLE = "EXPLAINER_URL"
KEY_VARIABLE = "EXPLAINER_API_KEY"  # a bearer key, for a server configured with API keys
OUTPUT_VARIABLE = "EXPLAINER_NOTEBOOK_OUT"
REQUEST_TIMEOUT_S = 300.0


class ServiceError(RuntimeError):
    """An HTTP error from the service, carrying its RFC 9457 problem document."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or "error"
        errors = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
            for item in problem.get("errors", [])
        )
        super().__init__(f"HTTP {status}: {detail}" + (f" ({errors})" if errors else ""))
        self.status = status
        self.problem = dict(problem)


def output_dir() -> Path:
    """Where notebooks write files (`$EXPLAINER_NOTEBOOK_OUT`, default `out/`); created."""
    path = Path(os.environ.get(OUTPUT_VARIABLE, "out"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_server(
    model_repo: str | Path | None = None, env: Mapping[str, str] | None = None
) -> liveserver.LiveServer:
    """Start `explainer serve` on a free port and wait until /readyz is 200.

    The server gets a fresh SQLite database in a temporary directory (its working
    directory, removed by `stop()`), so that it never touches a repository's `var/`.
    `env` adds variables (e.g. `PYTHONPATH` for a safetensors factory); other
    `EXPLAINER_*` variables of this process are not passed on, except the device.
    """
    return liveserver.running_server(
        model_repo=model_repo, settings=env, threads=None, inherit=["EXPLAINER_DEVICE"]
    )


@dataclass
class ExplainerClient:
    """A thin JSON client of the explainer REST API (DESIGN 3.2)."""

    url: str
    server: liveserver.LiveServer | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def absolute(self, path: str) -> str:
        """`path` (e.g. a `heatmap_url`, relative to the server root) as a full URL."""
        return path if path.startswith(("http://", "https://")) else self.url + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request; raise `ServiceError` with the problem details on a 4xx/5xx."""
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
        response = self.session.request(method, self.absolute(path), **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:200]}
            raise ServiceError(response.status_code, problem)
        return response

    def get(self, path: str, **params: Any) -> Any:
        """GET `path` and decode its JSON."""
        return self.request("GET", path, params=params or None).json()

    def post(self, path: str, body: Any) -> Any:
        """POST `body` as JSON to `path` and decode the JSON answer."""
        return self.request("POST", path, json=body).json()

    def models(self) -> list[dict[str, Any]]:
        """The loaded models (`GET /v1/models`)."""
        return list(self.get("/v1/models")["models"])

    def predict(self, model: str, instances: Sequence[Any]) -> list[dict[str, Any]]:
        """`{label, index, probabilities}` per instance."""
        body = {"instances": list(instances)}
        return list(self.post(f"/v1/models/{model}/predict", body)["predictions"])

    def explain(self, model: str, instances: Sequence[Any], **request: Any) -> dict[str, Any]:
        """The explain response for `instances`; `request` adds methods, target, options..."""
        body = {"instances": list(instances), **request}
        return dict(self.post(f"/v1/models/{model}/explain", body))

    def png(self, heatmap_url: str, **params: Any) -> bytes:
        """The PNG bytes behind a `heatmap_url` (query: style, colormap, alpha)."""
        response = self.request("GET", heatmap_url, params=params or None)
        if response.headers.get("Content-Type", "").split(";")[0] != "image/png":
            raise ServiceError(response.status_code, {"detail": "the answer is not a PNG"})
        return response.content

    def close(self) -> None:
        """Close the HTTP session; stop the server if this client started it."""
        self.session.close()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> ExplainerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(url: str | None = None, model_repo: str | Path | None = None) -> ExplainerClient:
    """A client for `url`, else `$EXPLAINER_URL`, else for a server started here.

    With `$EXPLAINER_API_KEY` set, requests to a given server carry it as a bearer token.
    A server started here (on a free port, serving `model_repo` or the zoo) is stopped by
    `client.close()`.
    """
    url = url or os.environ.get(URL_VARIABLE)
    if url:
        url = url.rstrip("/")
        liveserver.wait_ready(url, timeout_s=60.0)
        client = ExplainerClient(url)
        key = os.environ.get(KEY_VARIABLE)
        if key:
            client.session.headers["Authorization"] = f"Bearer {key}"
        return client
    server = start_server(model_repo)
    return ExplainerClient(server.url, server)


def serve(model_repo: str | Path, env: Mapping[str, str] | None = None) -> ExplainerClient:
    """A client for a new server of `model_repo` (ignores `$EXPLAINER_URL`); `close()` stops it."""
    server = start_server(model_repo, env=env)
    return ExplainerClient(server.url, server)


def zoo_dir() -> Path:
    """The built-in model zoo (`models/zoo`), found without importing `models` (and torch)."""
    spec = find_spec("models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the `models` package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "zoo"


def zoo_spec(name: str) -> dict[str, Any]:
    """The parsed `model.toml` of the zoo model `name` (categories, ranges, reason texts)."""
    with (zoo_dir() / name / "model.toml").open("rb") as handle:
        return tomllib.load(handle)


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W, 3) or (H, W) uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_instance(image: np.ndarray) -> dict[str, str]:
    """An image instance for a JSON request: `{"b64": <base64 PNG>}`."""
    return {"b64": base64.b64encode(png_bytes(image)).decode("ascii")}


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes as an (H, W, 3) uint8 array (for matplotlib)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        return np.asarray(image.convert("RGB"))


def png_text(data: bytes) -> dict[str, str]:
    """The text chunks of a PNG (the service writes model, method, target, ...)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}
