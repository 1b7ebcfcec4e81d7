"""Service configuration: defaults, then `EXPLAINER_*` environment variables, then a dict.

Every field `x` is read from the environment variable `EXPLAINER_X` (upper case);
`EXPLAINER_API_KEYS` is comma-separated. A value that does not parse, or that this machine
cannot use (a model repository that is not a directory, a device it lacks, a database URL
whose driver is not installed), stops start-up with a message naming the variable:
configuration never falls back silently. An empty `EXPLAINER_MODEL_REPO` means unset.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from explainer.engine import usable_device
from models.decoding import ImageLimits
from models.repository import ZOO_DIR, default_repository_path

ENV_PREFIX = "EXPLAINER_"
DEFAULT_DATABASE_URL = "sqlite:///var/explainer.db"

PositiveInt = Annotated[int, Field(ge=1)]
# A time limit: finite and at most what threading's waits accept (about 292 years; a larger
# one raises OverflowError in every request that waits on it).
Seconds = Annotated[float, Field(gt=0, le=threading.TIMEOUT_MAX, allow_inf_nan=False)]
# Rows per model call: 2**20 rows of even a small tabular model is gigabytes in one call.
ChunkSize = Annotated[int, Field(ge=1, le=2**20)]


def usable_cores() -> int:
    """The CPU cores this process may use (its affinity where the OS has one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


# Torch's threads in a process: more than its cores only makes them wait in turn, and a
# huge count makes OpenMP start that many threads.
ThreadCount = Annotated[int, Field(ge=1, le=usable_cores())]


class ConfigError(ValueError):
    """A configuration value that cannot be used; names the variable."""


class ApiConfig(BaseModel):
    """Everything `create_app` needs; see the README (HTTP API) for the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model_repo: Path = Field(default_factory=default_repository_path)
    # None: CUDA when available, else CPU (decided in the worker, never before the fork).
    device: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    # Bearer tokens; when empty, no authentication (loopback only unless --insecure).
    api_keys: tuple[str, ...] = ()
    max_body_bytes: PositiveInt = 16 * 1024 * 1024
    max_image_pixels: PositiveInt = 4096 * 4096
    max_instances: PositiveInt = 16
    # Service-wide caps on the method options (a model's [limits] replace them).
    max_n_steps: PositiveInt = 256
    max_num_samples: PositiveInt = 5000
    max_depth: PositiveInt = 6
    # Stored explanations (and so heatmap URLs) live this long, and at most this many.
    store_ttl_s: Annotated[int, Field(ge=1, le=int(threading.TIMEOUT_MAX))] = 24 * 3600
    store_max_entries: PositiveInt = 1000
    # Explanations computed at once per worker; others wait up to queue_timeout_s, then 503.
    max_concurrency: PositiveInt = 1
    queue_timeout_s: Seconds = 30.0
    # Explain/predict requests waiting per worker beyond max_concurrency; more get 503 at
    # once (api.overload). Each gets 504 after request_timeout_s.
    max_queue: Annotated[int, Field(ge=0)] = 8
    request_timeout_s: Seconds = 120.0
    # Rows per model call; None: tuned per model at load (Engine.tune).
    chunk_size: ChunkSize | None = None
    # CPU threads for torch's intra-op work in this process; None: torch's default
    # (`explainer serve` divides the machine's cores among its workers instead).
    torch_threads: ThreadCount | None = None
    # Frozen, inference-optimised copies of image models for the calls without gradients
    # (CPU only; see explainer.inference_copy).
    inference_copies: bool = True
    # Keep freed memory for reuse instead of giving it back to the kernel at once (glibc;
    # see explainer.memory): about 10% faster image bundles, up to 1 GiB kept per process.
    keep_freed_memory: bool = True
    # bf16 autocast on CUDA (ignored on the CPU).
    autocast: bool = False
    # Finished explanations kept per worker (LRU); 0 disables the cache.
    cache_entries: Annotated[int, Field(ge=0)] = 1024
    # Run one small explanation per model at load, so shap's first-call compilation is paid
    # before /readyz says ready.
    warm_up: bool = True
    # Load models in a background thread (the server answers /healthz at once).
    background_load: bool = False

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("chunk_size", "torch_threads", "device", mode="before")
    @classmethod
    def _empty_is_automatic(cls, value: Any) -> Any:
        return None if value in ("", "auto") else value

    @field_validator("model_repo", mode="before")
    @classmethod
    def _empty_is_the_zoo(cls, value: Any) -> Any:
        return ZOO_DIR if value == "" else value

    @field_validator("model_repo")
    @classmethod
    def _is_directory(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{str(value)!r} is not a directory")
        return value

    @field_validator("device")
    @classmethod
    def _usable_device(cls, value: str | None) -> str | None:
        if value is not None:  # before the fork: NVML's count leaves CUDA uninitialised
            usable_device(value, count_cuda=torch.cuda.device_count)
        return value

    @field_validator("database_url")
    @classmethod
    def _usable_database(cls, value: str) -> str:
        check_database_url(value)
        return value

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_image_pixels, max_bytes=self.max_body_bytes)

    @classmethod
    def from_env(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> ApiConfig:
        """Defaults <- `EXPLAINER_*` variables <- `overrides`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            variable = ENV_PREFIX + name.upper()
            if variable in environ:
                values[name] = environ[variable]
        values.update(overrides or {})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            source = "" if field in (overrides or {}) else f" ({ENV_PREFIX}{field.upper()})"
            message = str(first["msg"]).removeprefix("Value error, ")  # pydantic's wrapper
            raise ConfigError(f"configuration {field}{source}: {message}") from None


def check_database_url(value: str) -> None:
    """A ValueError unless `value` is a SQLAlchemy URL whose dialect and driver are installed.

    The message names the dialect, never the URL (it may hold a password).
    """
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError("not a SQLAlchemy URL (e.g. sqlite:///var/explainer.db)") from None
    try:
        dialect = url.get_dialect()
    except ArgumentError:  # NoSuchModuleError: no such dialect or driver name
        raise ValueError(f"unknown database dialect or driver {url.drivername!r}") from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise ValueError(
            f"the database driver {dialect.driver!r} for {url.drivername!r} is not installed "
            f"({error}): install it, or name an installed driver in the URL (dialect+driver://)"
        ) from None
