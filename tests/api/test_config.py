"""Configuration from defaults, EXPLAINER_* variables and a dict; bad values name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from api.config import ApiConfig, ConfigError
from api.runtime import Runtime
from api.server import threads_per_worker, worker_config


def test_defaults() -> None:
    config = ApiConfig.from_env(environ={})
    assert config.database_url == "sqlite:///var/explainer.db"
    assert config.api_keys == () and config.device is None
    assert config.image_limits.max_pixels == config.max_image_pixels


def test_environment_and_overrides() -> None:
    environ = {
        "EXPLAINER_API_KEYS": " a, b ,,",
        "EXPLAINER_MAX_INSTANCES": "4",
        "EXPLAINER_MODEL_REPO": "/tmp/models",
        "EXPLAINER_DEVICE": "auto",
        "EXPLAINER_STORE_TTL_S": "60",
        "EXPLAINER_KEEP_FREED_MEMORY": "false",
    }
    config = ApiConfig.from_env({"max_instances": 8}, environ=environ)
    assert config.api_keys == ("a", "b") and config.max_instances == 8
    assert config.model_repo == Path("/tmp/models") and config.device is None
    assert config.store_ttl_s == 60 and not config.keep_freed_memory
    assert ApiConfig.from_env(environ={}).keep_freed_memory


@pytest.mark.parametrize(
    ("environ", "overrides", "named"),
    [
        ({"EXPLAINER_MAX_INSTANCES": "many"}, {}, "EXPLAINER_MAX_INSTANCES"),
        ({"EXPLAINER_MAX_BODY_BYTES": "0"}, {}, "EXPLAINER_MAX_BODY_BYTES"),
        ({}, {"store_ttl_s": -1}, "store_ttl_s"),
        ({}, {"colour": "red"}, "colour"),
    ],
)
def test_bad_values_stop_with_the_name(
    environ: dict[str, str], overrides: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        ApiConfig.from_env(overrides, environ=environ)


def test_torch_threads_default_to_a_share_of_the_cores_per_worker() -> None:
    cores = threads_per_worker(1)
    assert cores >= 1
    assert worker_config(ApiConfig.from_env(environ={}), 1).torch_threads == cores
    assert worker_config(ApiConfig.from_env(environ={}), 2).torch_threads == max(1, cores // 2)
    assert worker_config(ApiConfig.from_env(environ={}), 4 * cores).torch_threads == 1
    chosen = ApiConfig.from_env(environ={"EXPLAINER_TORCH_THREADS": "3"})
    assert worker_config(chosen, 2).torch_threads == 3
    assert ApiConfig.from_env(environ={"EXPLAINER_TORCH_THREADS": "auto"}).torch_threads is None
    with pytest.raises(ConfigError, match="EXPLAINER_TORCH_THREADS"):
        ApiConfig.from_env(environ={"EXPLAINER_TORCH_THREADS": "0"})


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
