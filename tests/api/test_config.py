"""Configuration from defaults, EXPLAINER_* variables and a dict; bad values name the variable."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest
import torch

from api.config import ApiConfig, ConfigError
from api.runtime import Runtime
from api.server import threads_per_worker, worker_config
from models.repository import ZOO_DIR


def test_defaults() -> None:
    config = ApiConfig.from_env(environ={})
    assert config.database_url == "sqlite:///var/explainer.db"
    assert config.api_keys == () and config.device is None
    assert config.image_limits.max_pixels == config.max_image_pixels


def test_environment_and_overrides(tmp_path: Path) -> None:
    environ = {
        "EXPLAINER_API_KEYS": " a, b ,,",
        "EXPLAINER_MAX_INSTANCES": "4",
        "EXPLAINER_MODEL_REPO": str(tmp_path),
        "EXPLAINER_DEVICE": "auto",
        "EXPLAINER_STORE_TTL_S": "60",
        "EXPLAINER_KEEP_FREED_MEMORY": "false",
    }
    config = ApiConfig.from_env({"max_instances": 8}, environ=environ)
    assert config.api_keys == ("a", "b") and config.max_instances == 8
    assert config.model_repo == tmp_path and config.device is None
    assert config.store_ttl_s == 60 and not config.keep_freed_memory
    assert ApiConfig.from_env(environ={}).keep_freed_memory


@pytest.mark.parametrize(
    ("environ", "overrides", "named"),
    [
        ({"EXPLAINER_MAX_INSTANCES": "many"}, {}, "EXPLAINER_MAX_INSTANCES"),
        ({"EXPLAINER_MAX_BODY_BYTES": "0"}, {}, "EXPLAINER_MAX_BODY_BYTES"),
        ({}, {"store_ttl_s": -1}, "store_ttl_s"),
        ({}, {"colour": "red"}, "colour"),
        # Past threading.TIMEOUT_MAX (or infinite), every wait on them raised OverflowError.
        ({"EXPLAINER_REQUEST_TIMEOUT_S": "inf"}, {}, "EXPLAINER_REQUEST_TIMEOUT_S"),
        ({"EXPLAINER_REQUEST_TIMEOUT_S": "1e12"}, {}, "EXPLAINER_REQUEST_TIMEOUT_S"),
        ({"EXPLAINER_QUEUE_TIMEOUT_S": "Infinity"}, {}, "EXPLAINER_QUEUE_TIMEOUT_S"),
        ({"EXPLAINER_QUEUE_TIMEOUT_S": "nan"}, {}, "EXPLAINER_QUEUE_TIMEOUT_S"),
        ({"EXPLAINER_QUEUE_TIMEOUT_S": "1e10"}, {}, "EXPLAINER_QUEUE_TIMEOUT_S"),
        ({"EXPLAINER_STORE_TTL_S": "1" + "0" * 400}, {}, "EXPLAINER_STORE_TTL_S"),
        ({"EXPLAINER_MODEL_REPO": "/nonexistent"}, {}, "EXPLAINER_MODEL_REPO"),
        ({"EXPLAINER_DEVICE": "bogus"}, {}, "EXPLAINER_DEVICE"),
        ({"EXPLAINER_DATABASE_URL": ""}, {}, "EXPLAINER_DATABASE_URL"),
        ({"EXPLAINER_DATABASE_URL": "garbage"}, {}, "EXPLAINER_DATABASE_URL"),
        ({"EXPLAINER_DATABASE_URL": "nosuchdb://host/db"}, {}, "EXPLAINER_DATABASE_URL"),
    ],
)
def test_bad_values_stop_with_the_name(
    environ: dict[str, str], overrides: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        ApiConfig.from_env(overrides, environ=environ)


def test_the_longest_time_limits_are_accepted() -> None:
    longest = str(threading.TIMEOUT_MAX)
    environ = {"EXPLAINER_REQUEST_TIMEOUT_S": longest, "EXPLAINER_QUEUE_TIMEOUT_S": longest}
    config = ApiConfig.from_env(environ=environ)
    assert config.request_timeout_s == config.queue_timeout_s == threading.TIMEOUT_MAX


def test_an_empty_model_repo_is_unset_as_in_the_cli() -> None:
    assert ApiConfig.from_env(environ={"EXPLAINER_MODEL_REPO": ""}).model_repo == ZOO_DIR


def test_a_model_repo_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.toml").write_text("")
    with pytest.raises(ConfigError, match=r"EXPLAINER_MODEL_REPO.*not a directory"):
        ApiConfig.from_env(environ={"EXPLAINER_MODEL_REPO": str(tmp_path / "model.toml")})


def test_a_device_the_machine_lacks_is_refused_without_initialising_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checked in the master before the fork: by NVML's count, never torch.cuda.is_available
    (which initialises CUDA, and a worker forked after that cannot use it)."""
    monkeypatch.setattr(torch.cuda, "is_available", _no_cuda_initialisation)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for device in ("cuda", "cuda:1"):
        assert ApiConfig.from_env(environ={"EXPLAINER_DEVICE": device}).device == device
    with pytest.raises(ConfigError, match=r"EXPLAINER_DEVICE.*has 2 CUDA device"):
        ApiConfig.from_env(environ={"EXPLAINER_DEVICE": "cuda:2"})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match=r"\(EXPLAINER_DEVICE\): device 'cuda' was asked"):
        ApiConfig.from_env(environ={"EXPLAINER_DEVICE": "cuda"})


def _no_cuda_initialisation() -> bool:
    raise AssertionError("torch.cuda.is_available() initialises CUDA before the fork")


def test_a_database_driver_that_is_not_installed_is_named() -> None:
    """The default `postgresql://` driver is psycopg (3), not a dependency of this project."""
    pytest.importorskip("sqlalchemy.dialects.postgresql.psycopg")
    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg is installed")
    url = "postgresql://user:secret@127.0.0.1:1/db"
    with pytest.raises(
        ConfigError, match=r"EXPLAINER_DATABASE_URL.*'psycopg'.*not installed"
    ) as info:
        ApiConfig.from_env(environ={"EXPLAINER_DATABASE_URL": url})
    assert "secret" not in str(info.value)


def test_torch_threads_default_to_a_share_of_the_cores_per_worker() -> None:
    cores = threads_per_worker(1)
    assert cores >= 1
    assert worker_config(ApiConfig.from_env(environ={}), 1).torch_threads == cores
    assert worker_config(ApiConfig.from_env(environ={}), 2).torch_threads == max(1, cores // 2)
    assert worker_config(ApiConfig.from_env(environ={}), 4 * cores).torch_threads == 1
    chosen = ApiConfig.from_env(environ={"EXPLAINER_TORCH_THREADS": str(cores)})
    assert worker_config(chosen, 2).torch_threads == cores
    assert ApiConfig.from_env(environ={"EXPLAINER_TORCH_THREADS": "auto"}).torch_threads is None
    for refused in ("0", str(cores + 1)):
        with pytest.raises(ConfigError, match="EXPLAINER_TORCH_THREADS"):
            ApiConfig.from_env(environ={"EXPLAINER_TORCH_THREADS": refused})


def test_a_chunk_size_is_bounded() -> None:
    """2**20 rows per call at most: a larger one would ask for gigabytes in one call."""
    assert ApiConfig.from_env(environ={"EXPLAINER_CHUNK_SIZE": str(2**20)}).chunk_size == 2**20
    for refused in ("0", str(2**20 + 1)):
        with pytest.raises(ConfigError, match="EXPLAINER_CHUNK_SIZE"):
            ApiConfig.from_env(environ={"EXPLAINER_CHUNK_SIZE": refused})


def test_a_worker_applies_its_torch_threads(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    values = {
        "model_repo": tmp_path / "models",
        "database_url": f"sqlite:///{tmp_path / 'explainer.db'}",
        "device": "cpu",
        "torch_threads": 1 if before > 1 else 2,
    }
    (tmp_path / "models").mkdir()
    try:
        Runtime(ApiConfig.from_env(values, environ={})).load()
        assert torch.get_num_threads() == values["torch_threads"]
    finally:
        torch.set_num_threads(before)
