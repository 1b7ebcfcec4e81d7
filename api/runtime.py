"""What one worker holds: the Engine, the loaded models, the store and the request slots.

Created once per process by `create_app`; models load onto the Engine's device (in a
background thread when `background_load` is set, so /healthz answers while they load), then
are tuned and warmed up one at a time: a model that fails any step is reported in
`repository.errors` and the others serve.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from flask import current_app

from api.config import ApiConfig
from api.db import create_db_engine, init_db
from api.errors import ServiceBusy
from api.store import ExplanationStore
from explainer import Engine
from explainer.warmup import prepare
from models.errors import ModelNotReady
from models.handle import ModelHandle
from models.repository import ModelRepository, failure_reason

log = logging.getLogger(__name__)

EXTENSION = "explainer"
Status = Literal["loading", "ok", "failed"]


class Runtime:
    """Per-process service state."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.db = create_db_engine(config.database_url)
        init_db(self.db)
        self.store = ExplanationStore(self.db, config.store_ttl_s, config.store_max_entries)
        self.engine: Engine | None = None
        self.repository = ModelRepository(config.model_repo)
        self.status: Status = "loading"
        self.failure = ""
        self._slots = threading.BoundedSemaphore(config.max_concurrency)

    def load(self) -> None:
        """Create the Engine (choosing the device) and load every model onto it."""
        if self.config.torch_threads is not None:
            torch.set_num_threads(self.config.torch_threads)  # before tuning measures speed
        log.info("torch CPU threads in this process: %d", torch.get_num_threads())
        try:
            self.engine = Engine(
                device=self.config.device,
                chunk_size=self.config.chunk_size or 256,
                autocast=self.config.autocast,
                cache_entries=self.config.cache_entries,
                inference_copies=self.config.inference_copies,
                keep_freed_memory=self.config.keep_freed_memory,
            )
            self.repository.load(self.engine.device)
        except Exception as exc:  # no Engine or no repository: not ready, with a reason
            self.failure = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
            log.error("model repository failed to load: %s", self.failure)
            return
        for handle in list(self.repository.handles.values()):
            self._prepare(self.engine, handle)
        self.status = "ok"
        log.info("models ready on %s: %s", self.engine.device, ", ".join(self.repository.names()))

    def _prepare(self, engine: Engine, handle: ModelHandle) -> None:
        """Tune and warm up one model; if that fails, it moves to the repository's errors
        and the other models still serve."""
        try:
            prepare(
                engine, handle, tune=self.config.chunk_size is None, warm_up=self.config.warm_up
            )
        except Exception as exc:  # one model's failure must not stop the others (DESIGN 3.1)
            reason = f"model {handle.name!r} failed its chunk tuning or warm-up at load"
            self.repository.fail(handle, f"{reason}: {failure_reason(exc)}")

    def start(self) -> None:
        """Load now, or in a daemon thread when configured."""
        if self.config.background_load:
            threading.Thread(target=self.load, name="model-loader", daemon=True).start()
        else:
            self.load()

    @property
    def ready(self) -> bool:
        return self.status == "ok"

    def require_ready(self) -> Engine:
        """The Engine, or 503 while the models load or after loading failed (with why)."""
        if not self.ready or self.engine is None:
            detail = f"the model repository failed to load: {self.failure}"
            if self.status == "loading":
                detail = "models are still loading"
            raise ModelNotReady(detail)
        return self.engine

    def model(self, name: str) -> tuple[ModelHandle, Engine]:
        """The loaded model `name` and the Engine; 503 while loading, 404 when unknown."""
        engine = self.require_ready()
        return self.repository.get(name), engine

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of `max_concurrency` compute slots; 503 after `queue_timeout_s`."""
        if not self._slots.acquire(timeout=self.config.queue_timeout_s):
            raise ServiceBusy("all compute slots are busy; retry later")
        try:
            yield
        finally:
            self._slots.release()


def runtime() -> Runtime:
    """The current app's Runtime."""
    state: Runtime = current_app.extensions[EXTENSION]
    return state
