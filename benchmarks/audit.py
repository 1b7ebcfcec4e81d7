"""Audit benchmark: rows per second of a tabular batch audit, all five methods, local and Ray.

For each tabular zoo model (breast-cancer, credit-risk), `--rows` rows taken in turn from the
model's 100 background rows (row i is background row i mod 100, in original units with
categories by name; a repeated row is computed again with its own seed, since audits never
use the explanation cache) are written to a CSV file and audited the way `explainer audit`
does it: the file read back, the job validated, submitted to and claimed from a SQLite job
store in a temporary directory, then `run_job` explains it in chunks of `--chunk-size` rows
(64, the audit default), every method with its default options, checkpointing each chunk.
Two engines:
- local: `LocalExecutor` on a fresh `Engine` with its chunk size tuned (as the CLI does,
  torch's default threads); this process pays shap's first call once beforehand (timed,
  printed);
- ray: `RayExecutor` with `--ray-workers` actors (1 CPU each) on a local Ray instance
  started first (its start-up timed and printed); as for a user, each audit starts its
  actors, which load the audited model, tune its chunk size and pay shap's first call
  inside the run.
Only `run_job` is timed. Per model it prints rows, seconds, rows/s, when the first chunk
was stored, the chunks' summed compute seconds, the Ray/local ratio and how many rows Ray
stored differently from local (torch's thread count can change the last bits); the last
line is
`audit rows/s: breast-cancer local <a>, ray-2 <b>; credit-risk local <c>, ray-2 <d>`.

    python -m benchmarks.audit [--rows 128] [--models breast-cancer credit-risk]
                               [--chunk-size 64] [--ray-workers 2] [--skip-ray]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from explainer import METHODS, Engine, explain
from explainer.audit import AuditSpec, AuditStore, LocalExecutor, run_job, validate
from explainer.audit.io import read_file
from explainer.audit.runner import ChunkExecutor, given_values
from explainer.audit.worker import worker_id
from explainer.cli import AUDIT_OWNER
from models import ModelHandle, ModelRepository
from models.repository import ZOO_DIR

TABULAR_MODELS = ("breast-cancer", "credit-risk")


@dataclass(frozen=True)
class Run:
    """One timed audit: rows, wall seconds, the first checkpoint's time, the stored rows."""

    rows: int
    seconds: float
    first_chunk_s: float
    compute_s: float  # the chunks' own explaining seconds, summed over workers
    documents: list[dict[str, Any]]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def write_data(handle: ModelHandle, rows: int, path: Path) -> Path:
    """A CSV of `rows` rows: the model's background rows in turn, in original units."""
    background = handle.background
    assert background is not None, f"{handle.name} has no background rows"
    records = [given_values(handle, background[i % len(background)].tolist()) for i in range(rows)]
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def audit(
    handle: ModelHandle, data: Path, spec: AuditSpec, database: Path, execute: ChunkExecutor
) -> Run:
    """Read, validate, submit and claim the job as the CLI does; time `run_job` alone."""
    rows = read_file(data)
    validate(handle, spec, rows)
    store = AuditStore(f"sqlite:///{database}").create_tables()
    job, _ = store.submit(AUDIT_OWNER, handle.name, spec.model_dump(mode="json"), rows)
    worker = worker_id()
    job = store.claim(job.id, worker)
    first: list[float] = []
    started = time.perf_counter()

    def progress(done: int, _total: int) -> None:
        if done and not first:
            first.append(time.perf_counter() - started)

    job = run_job(store, job, worker, execute, progress)
    seconds = time.perf_counter() - started
    assert job.status == "completed", f"{handle.name}: audit {job.status}: {job.error}"
    documents = list(store.results(job.id))
    assert len(documents) == len(rows), f"{len(documents)} of {len(rows)} rows stored"
    return Run(len(rows), seconds, first[0], job.compute_s, documents)


def differences(documents: list[dict[str, Any]], others: list[dict[str, Any]]) -> tuple[int, float]:
    """Rows whose documents differ (timings aside), and the largest attribution difference."""
    rows, largest = 0, 0.0
    for document, other in zip(documents, others, strict=True):
        if any(document[k] != other[k] for k in document if k != "timings_ms"):
            rows += 1
        for method, result in document["methods"].items():
            theirs = other["methods"][method]["attributions"]
            pairs = zip(result["attributions"], theirs, strict=True)
            largest = max([largest, *(abs(a - b) for a, b in pairs)])
    return rows, largest


def first_call(handle: ModelHandle, engine: Engine) -> float:
    """Seconds of one row with every method; the first in a process includes shap's set-up."""
    assert handle.background is not None
    started = time.perf_counter()
    explain(handle, handle.background[:1].clone(), METHODS, engine=engine, use_cache=False)
    return time.perf_counter() - started


def start_ray(cpus: int) -> float:
    """Start a local Ray instance with `cpus` CPUs; its start-up seconds."""
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - started


def report(name: str, runs: dict[str, Run], workers: int) -> None:
    """One model's table: a line per engine, then the ratio and the equality check."""
    local = runs["local"]
    print(f"\n{name}: {local.rows} rows")
    print(f"  {'engine':<8}{'seconds':>9}{'rows/s':>9}{'1st chunk s':>13}{'compute s':>11}")
    for engine, run in runs.items():
        label = engine if engine == "local" else f"ray-{workers}"
        print(
            f"  {label:<8}{run.seconds:>9.1f}{run.rate:>9.1f}{run.first_chunk_s:>13.1f}"
            f"{run.compute_s:>11.1f}"
        )
    if "ray" in runs:
        ray_run = runs["ray"]
        rows, largest = differences(local.documents, ray_run.documents)
        print(
            f"  ray-{workers} / local: {ray_run.rate / local.rate:.2f}x; rows that differ from "
            f"local: {rows} (largest attribution difference {largest:.1e})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--models", nargs="+", choices=TABULAR_MODELS, default=TABULAR_MODELS)
    parser.add_argument(
        "--chunk-size", type=int, default=AuditSpec.model_fields["chunk_size"].default
    )
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args(argv)
    # captum warns once per explained row that the input did not require gradients.
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require grad")
    engine = Engine()  # as `explainer audit` builds it
    repository = ModelRepository(ZOO_DIR).load(engine.device)
    handles = {name: repository.get(name) for name in args.models}
    specs = {name: AuditSpec(model=name, chunk_size=args.chunk_size) for name in handles}
    print(
        f"torch {torch.__version__}, device {engine.device}, {torch.get_num_threads()} torch "
        f"threads (local); methods: {', '.join(METHODS)} (default options); "
        f"{args.rows} rows per model in chunks of {args.chunk_size}"
    )
    first = first_call(handles[args.models[0]], engine)
    print(f"first explanation in this process (not timed below): {first:.1f} s")
    runs: dict[str, dict[str, Run]] = {name: {} for name in handles}
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        data = {name: write_data(h, args.rows, root / f"{name}.csv") for name, h in handles.items()}
        for name, handle in handles.items():
            local_engine = Engine()
            local_engine.tune(handle)  # as `explainer audit` does
            local = LocalExecutor(handle, local_engine)
            database = root / f"{name}-local.db"
            runs[name]["local"] = audit(handle, data[name], specs[name], database, local)
        if not args.skip_ray:
            import ray

            from explainer.audit.ray_engine import RayExecutor

            started = start_ray(args.ray_workers)
            print(
                f"ray {ray.__version__}: local instance with {args.ray_workers} CPUs started in "
                f"{started:.1f} s (not timed below); {args.ray_workers} actors of 1 CPU each"
            )
            try:
                for name, handle in handles.items():
                    execute = RayExecutor(ZOO_DIR, name, actors=args.ray_workers)
                    database = root / f"{name}-ray.db"
                    runs[name]["ray"] = audit(handle, data[name], specs[name], database, execute)
            finally:
                ray.shutdown()
    for name, model_runs in runs.items():
        report(name, model_runs, args.ray_workers)
    summary = []
    for name, model_runs in runs.items():
        parts = [f"local {model_runs['local'].rate:.1f}"]
        if "ray" in model_runs:
            parts.append(f"ray-{args.ray_workers} {model_runs['ray'].rate:.1f}")
        summary.append(f"{name} {', '.join(parts)}")
    print(f"audit rows/s: {'; '.join(summary)}")


if __name__ == "__main__":
    main()
