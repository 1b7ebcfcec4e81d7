"""Soak test: thousands of mixed requests; the workers' memory and open files must stay flat.

Starts `explainer serve` (the zoo, 127.0.0.1, a free port) and sends `--requests` requests
from `--clients` threads: explanations (tabular and image), predictions, stored
explanations, heatmap PNGs and invalid requests (422). After `--warmup` requests it reads
each gunicorn worker's resident memory (/proc/<pid>/status VmRSS) and open file
descriptors (/proc/<pid>/fd), and again every `--every` requests. Exit status 1 when the
memory grew by `--max-growth-mb` or more after warm-up, the descriptors grew by more than
`--max-fd-growth`, a request failed with a 5xx, or a canary reached the log.

    .venv/bin/python -m benchmarks.soak --requests 2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from benchmarks.canary import CANARY_STRING, count_canaries
from benchmarks.liveserver import LiveServer, running_server
from benchmarks.load import Call, request_mix, seeded

SETTLE_S = 1.0  # after each batch, so that closed connections are gone from /proc/<pid>/fd
INVALID = Call("invalid", "credit-risk/predict", {"instances": [{"income": CANARY_STRING}]})


@dataclass(frozen=True)
class Usage:
    rss_mb: float
    fds: int


def usage(pid: int) -> Usage:
    """Resident memory (MB) and open descriptors of one process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return Usage(rss_kb / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir())))


def descriptor_kinds(pid: int) -> Counter[str]:
    """Open descriptors by kind: socket, pipe, anon_inode or the file's suffix (.db, .so...)."""
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed meanwhile
            continue
        kinds[target.split(":")[0] if ":" in target else Path(target).suffix or target] += 1
    return kinds


def total(server: LiveServer) -> Usage:
    """Summed over the gunicorn workers."""
    parts = [usage(pid) for pid in server.worker_pids()]
    return Usage(sum(p.rss_mb for p in parts), sum(p.fds for p in parts))


def _exchange(session: requests.Session, url: str, call: Call) -> list[int]:
    """One call; after an explanation, also fetch it and one heatmap. Returns the statuses."""
    response = session.post(f"{url}/v1/models/{call.path}", json=call.body, timeout=300)
    statuses = [response.status_code]
    if response.status_code == 200 and call.kind.endswith("explain"):
        document = response.json()
        statuses.append(session.get(f"{url}{response.headers['Location']}", timeout=60).status_code)
        heatmap = next(iter(document["explanations"][0]["methods"].values()))["heatmap_url"]
        statuses.append(session.get(f"{url}{heatmap}", timeout=60).status_code)
    return statuses


def _worker(url: str, calls: Iterator[Call], lock: threading.Lock, out: Counter[int]) -> None:
    with requests.Session() as session:  # closed at the end: the server's sockets close too
        while True:
            with lock:
                call = next(calls, None)
            if call is None:
                return
            for status in _exchange(session, url, call):
                with lock:
                    out[status] += 1


def send(url: str, calls: Sequence[Call], clients: int) -> Counter[int]:
    """Send `calls` from `clients` threads; counts of response statuses."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    queue = iter(calls)
    threads = [
        threading.Thread(target=_worker, args=(url, queue, lock, statuses)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(SETTLE_S)
    return statuses


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--every", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    # Bounded per-thread and pooled descriptors (matplotlib's font cache, SQLite's pool)
    # may open a few more after warm-up; a leak grows with the requests.
    parser.add_argument("--max-fd-growth", type=int, default=10)
    args = parser.parse_args(argv)
    mix = [*request_mix(count=64, seed=1), INVALID]
    calls = [seeded(mix[i % len(mix)], i) for i in range(args.requests)]
    statuses: Counter[int] = Counter()
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_server(Path(workdir), threads=args.clients + 4) as server,
    ):
        statuses += send(server.url, calls[: args.warmup], args.clients)
        start = total(server)
        print(f"after {args.warmup} warm-up requests: {start.rss_mb:.1f} MB RSS, {start.fds} fds")
        samples = [start]
        for begin in range(args.warmup, args.requests, args.every):
            statuses += send(server.url, calls[begin : begin + args.every], args.clients)
            samples.append(total(server))
            done = min(begin + args.every, args.requests)
            print(f"after {done}: {samples[-1].rss_mb:.1f} MB RSS, {samples[-1].fds} fds")
        canaries = count_canaries(server.log_text())
        kinds = sum((descriptor_kinds(pid) for pid in server.worker_pids()), Counter[str]())
    growth = samples[-1].rss_mb - start.rss_mb
    fds = [s.fds for s in samples]
    print(f"statuses (incl. follow-up GETs): {dict(sorted(statuses.items()))}")
    print(f"RSS growth after warm-up: {growth:+.1f} MB (peak {max(s.rss_mb for s in samples):.1f})")
    print(f"open fds after warm-up: min {min(fds)}, max {max(fds)}, last {fds[-1]}")
    print(f"open fds at the end by kind: {dict(kinds.most_common())}")
    print(f"canaries in the server log: {canaries}")
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    fd_growth = max(fds) - fds[0]
    failed = growth >= args.max_growth_mb or fd_growth > args.max_fd_growth
    failed |= bool(server_errors or canaries)
    return int(bool(failed))


if __name__ == "__main__":
    raise SystemExit(main())
