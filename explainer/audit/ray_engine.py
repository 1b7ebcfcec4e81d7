"""The Ray engine: the same chunks explained by Ray actors that each hold the model.

Connects to `RAY_ADDRESS` when set (or uses an already initialised Ray), else starts a
local instance. One actor per GPU when the cluster has GPUs (one GPU each), else one per
CPU. Actors run `explain_chunk` exactly as the local engine does, with the same per-row
seeds, so per-row results are the same; the driver checkpoints each chunk as it arrives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ray

from explainer.audit.runner import AuditSpec, IndexedRow, explain_chunk
from explainer.engine import Engine
from models.repository import ModelRepository

IN_FLIGHT_PER_ACTOR = 2


class ChunkWorker:
    """A Ray actor's state: one Engine and the loaded model (wrapped by `ray.remote`).

    Only the audited model is loaded. Its chunk size is `chunk_size` when given, else tuned
    on the actor's own device, as the API and the local CLI do.
    """

    def __init__(self, model_repo: str, model: str, chunk_size: int | None = None) -> None:
        self.engine = Engine(chunk_size=chunk_size) if chunk_size else Engine()
        repository = ModelRepository(Path(model_repo)).load(self.engine.device, only=[model])
        self.handle = repository.get(model)
        if chunk_size is None:
            self.engine.tune(self.handle)

    def explain(
        self, spec: AuditSpec, chunk: list[IndexedRow]
    ) -> tuple[list[dict[str, Any]], float]:
        started = time.perf_counter()
        documents = explain_chunk(self.handle, self.engine, spec, chunk)
        return documents, time.perf_counter() - started


def connect() -> None:
    """Initialise Ray unless it is already: `RAY_ADDRESS` when set, else a local instance."""
    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False
        )


class RayExecutor:
    """Explains chunks on a pool of Ray actors; yields each chunk when it completes."""

    def __init__(
        self,
        model_repo: Path,
        model: str,
        actors: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.model_repo = model_repo
        self.model = model
        self.actors = actors
        self.chunk_size = chunk_size  # rows per model call; None: tuned by each actor

    def _pool(self) -> list[Any]:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        count = self.actors or gpus or max(1, int(resources.get("CPU", 1)))
        actor = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(ChunkWorker)
        return [
            actor.remote(str(self.model_repo), self.model, self.chunk_size) for _ in range(count)
        ]

    def __call__(
        self, spec: AuditSpec, chunks: Sequence[Sequence[IndexedRow]]
    ) -> Iterator[tuple[list[dict[str, Any]], float]]:
        if not chunks:
            return
        connect()
        pool = self._pool()
        queue = list(chunks)
        running: dict[Any, Any] = {}  # object ref -> actor
        try:
            for actor in pool * IN_FLIGHT_PER_ACTOR:
                if queue:
                    running[actor.explain.remote(spec, list(queue.pop(0)))] = actor
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                actor = running.pop(ready[0])
                if queue:
                    running[actor.explain.remote(spec, list(queue.pop(0)))] = actor
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayTaskError as error:
                    # The actor's own exception: Ray's wrapper reads as the remote traceback,
                    # which would become the job's reason.
                    raise error.cause from None
                yield result
        finally:
            for actor in pool:
                ray.kill(actor)
