"""Load test: concurrent clients on a mix of tabular and image explanations, then overload.

Starts `explainer serve` (the zoo, 127.0.0.1, a free port), runs `--clients` threads for
`--seconds` (every response must be a 200), then `--overload` times as many clients for
`--overload-seconds` (the excess must get 503/429 with Retry-After, quickly, and no other
5xx). Prints counts and latency percentiles per phase, and the privacy canaries found in
the server's log (every input carries one). Exit status 1 when a criterion fails.

    .venv/bin/python -m benchmarks.load --clients 16 --seconds 60
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image, PngImagePlugin

from benchmarks.canary import CANARY_IN_RANGE, CANARY_NUMBER, CANARY_STRING, count_canaries
from benchmarks.liveserver import run_clients, running_server
from models.repository import ZOO_DIR
from models.spec import parse_model_toml
from models.zoo.lesion_data import generate

# Cheap but complete explanations: every method family, small sample counts.
TABULAR_OPTIONS = {
    "methods": ["saliency", "integrated_gradients", "lime", "tree"],
    "options": {"integrated_gradients": {"n_steps": 16}, "lime": {"num_samples": 200}},
}
IMAGE_OPTIONS = {
    "methods": ["saliency", "integrated_gradients", "gradcam"],
    "options": {"integrated_gradients": {"n_steps": 8}},
}


@dataclass(frozen=True)
class Call:
    """One request of the mix: a label, a path and a JSON body."""

    kind: str
    path: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Sample:
    kind: str
    status: int
    seconds: float
    retry_after: bool


def lesion_png(seed: int) -> str:
    """A zoo lesion image as base64 PNG, with the canary string in its metadata."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", CANARY_STRING)
    buffer = io.BytesIO()
    Image.fromarray(generate(1, seed=seed).images[0]).save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def request_mix(count: int = 32, seed: int = 0) -> list[Call]:
    """Distinct requests, each carrying a canary."""
    rng = np.random.default_rng(seed)
    cancer = dict(parse_model_toml(ZOO_DIR / "breast-cancer" / "model.toml").example or {})
    credit = dict(parse_model_toml(ZOO_DIR / "credit-risk" / "model.toml").example or {})
    calls = []
    for i in range(count):
        row = {k: float(v) * rng.uniform(0.9, 1.1) for k, v in cancer.items()}
        row["mean area"] = CANARY_NUMBER
        applicant = {**credit, "income": CANARY_IN_RANGE, "utilisation": rng.uniform(0, 1)}
        image = {"b64": lesion_png(i)}
        calls += [
            Call(
                "tabular-explain", "breast-cancer/explain", {"instances": [row], **TABULAR_OPTIONS}
            ),
            Call(
                "tabular-explain",
                "credit-risk/explain",
                {"instances": [applicant], **TABULAR_OPTIONS},
            ),
            Call("image-explain", "lesion-64/explain", {"instances": [image], **IMAGE_OPTIONS}),
            Call("predict", "credit-risk/predict", {"instances": [applicant]}),
        ]
    return calls


def seeded(call: Call, seed: int) -> Call:
    """The call with its own seed (explanations), so no response comes from the cache."""
    if not call.kind.endswith("explain"):
        return call
    return Call(call.kind, call.path, {**call.body, "seed": seed})


def _client(
    url: str, calls: Sequence[Call], counter: Iterator[int], until: float, out: list[Sample]
) -> None:
    session = requests.Session()
    while time.monotonic() < until:
        index = next(counter)
        call = seeded(calls[index % len(calls)], index)
        began = time.monotonic()
        response = session.post(f"{url}/v1/models/{call.path}", json=call.body, timeout=300)
        seconds = time.monotonic() - began
        retry = "Retry-After" in response.headers
        out.append(Sample(call.kind, response.status_code, seconds, retry))
        if response.status_code in (429, 503) and retry:
            time.sleep(
                min(float(response.headers["Retry-After"]), max(0.0, until - time.monotonic()))
            )


def run_phase(url: str, calls: Sequence[Call], clients: int, seconds: float) -> list[Sample]:
    """`clients` threads sending `calls` round-robin for `seconds`."""
    samples: list[Sample] = []
    until = time.monotonic() + seconds
    counter = itertools.count()  # next() is atomic in CPython: one index per request
    run_clients(clients, _client, url, calls, counter, until, samples)
    return samples


def percentiles(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def report(name: str, samples: Sequence[Sample], seconds: float) -> None:
    statuses = Counter(s.status for s in samples)
    ok = [s for s in samples if s.status == 200]
    print(f"{name}: {len(samples)} requests in {seconds:.0f} s ({len(ok) / seconds:.2f} ok/s)")
    print(f"  statuses: {dict(sorted(statuses.items()))}")
    print(f"  200 latency: {percentiles([s.seconds for s in ok])}")
    for kind in sorted({s.kind for s in ok}):
        print(f"    {kind}: {percentiles([s.seconds for s in ok if s.kind == kind])}")
    shed = [s for s in samples if s.status in (429, 503)]
    if shed:
        with_retry = sum(s.retry_after for s in shed)
        print(f"  429/503 latency: {percentiles([s.seconds for s in shed])}")
        print(f"  429/503 with Retry-After: {with_retry}/{len(shed)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--overload", type=int, default=4, help="x clients in phase 2 (0: skip)")
    parser.add_argument("--overload-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="per worker (default: the server's)"
    )
    args = parser.parse_args(argv)
    calls = request_mix()
    # Room for every normal-phase client in the queue; more threads than that, so the
    # excess under overload reaches the admission check and is answered at once.
    settings = {"EXPLAINER_MAX_QUEUE": str(args.clients), "EXPLAINER_QUEUE_TIMEOUT_S": "60"}
    if args.torch_threads is not None:
        settings["EXPLAINER_TORCH_THREADS"] = str(args.torch_threads)
    threads = args.clients * max(args.overload, 1) + 8
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_server(
            Path(workdir), settings=settings, workers=args.workers, threads=threads
        ) as server,
    ):
        print(f"server {server.url}: {args.workers} workers, {threads} threads, {settings}")
        run_phase(server.url, calls[:8], 2, 5.0)  # warm-up
        normal = run_phase(server.url, calls, args.clients, args.seconds)
        report(f"{args.clients} clients", normal, args.seconds)
        failed = sum(s.status != 200 for s in normal) > 0
        if args.overload:
            clients = args.clients * args.overload
            over = run_phase(server.url, calls, clients, args.overload_seconds)
            report(f"{clients} clients ({args.overload}x overload)", over, args.overload_seconds)
            bad = [s for s in over if s.status not in (200, 429, 503)]
            unmarked = [s for s in over if s.status in (429, 503) and not s.retry_after]
            print(f"  other statuses: {len(bad)}; 429/503 without Retry-After: {len(unmarked)}")
            failed |= bool(bad or unmarked)
        canaries = count_canaries(server.log_text())
        print(f"canaries in the server log: {canaries}")
    return int(failed or canaries > 0)


if __name__ == "__main__":
    raise SystemExit(main())
