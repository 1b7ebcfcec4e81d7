"""Workers benchmark: torch threads per gunicorn worker, shared out versus torch's default.

Starts `explainer serve --workers W` twice on the zoo: once with as many torch threads per
worker as there are cores (torch's default, which the server kept before
`EXPLAINER_TORCH_THREADS`), then with the server's default (the cores divided among the
workers). `--clients` threads each POST full credit-risk bundles (all five methods, the
default options, a fresh seed per request, cache off) for `--seconds`. Prints requests per
second and latency percentiles per run, and the ratios.

    .venv/bin/python -m benchmarks.workers --workers 2 --clients 4 --seconds 30
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests

from api.server import threads_per_worker
from benchmarks.liveserver import run_clients, running_server
from explainer import METHODS
from models.repository import ZOO_DIR
from models.spec import parse_model_toml


def _client(
    url: str, example: dict[str, Any], seeds: Iterator[int], until: float, latencies: list[float]
) -> None:
    session = requests.Session()
    while time.monotonic() < until:
        body: dict[str, Any] = {"instances": [example], "methods": list(METHODS)}
        body["seed"] = next(seeds)
        started = time.perf_counter()
        response = session.post(url, json=body, timeout=60)
        response.raise_for_status()
        latencies.append(time.perf_counter() - started)


def run(workers: int, clients: int, seconds: float, torch_threads: int | None) -> dict[str, float]:
    """Requests per second and latency percentiles (ms) against one server."""
    settings = {"EXPLAINER_CACHE_ENTRIES": "0", "EXPLAINER_MAX_QUEUE": str(clients)}
    if torch_threads is not None:
        settings["EXPLAINER_TORCH_THREADS"] = str(torch_threads)
    latencies: list[float] = []
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_server(Path(workdir), settings=settings, workers=workers) as server,
    ):
        url = f"{server.url}/v1/models/credit-risk/explain"
        example = dict(parse_model_toml(ZOO_DIR / "credit-risk" / "model.toml").example or {})
        seeds = itertools.count(1)
        until = time.monotonic() + seconds
        run_clients(clients, _client, url, example, seeds, until, latencies)
    latencies.sort()
    return {
        "per_s": len(latencies) / seconds,
        "p50": 1000 * latencies[len(latencies) // 2],
        "p99": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    cores = threads_per_worker(1)
    figures = {}
    for label, threads in (("all cores each", cores), ("shared out", None)):
        figures[label] = run(args.workers, args.clients, args.seconds, threads)
        f = figures[label]
        print(
            f"{args.workers} workers, torch threads {label} ({threads or 'auto'}): "
            f"{f['per_s']:.1f} bundles/s, p50 {f['p50']:.0f} ms, p99 {f['p99']:.0f} ms"
        )
    old, new = figures["all cores each"], figures["shared out"]
    print(
        f"shared out vs all cores each: {new['per_s'] / old['per_s']:.2f}x bundles/s, "
        f"p99 {old['p99'] / new['p99']:.2f}x lower"
    )


if __name__ == "__main__":
    main()
