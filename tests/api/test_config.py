"""Configuration from defaults, EXPLAINER_* variables and a dict; bad values name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import ApiConfig, ConfigError


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
    }
    config = ApiConfig.from_env({"max_instances": 8}, environ=environ)
    assert config.api_keys == ("a", "b") and config.max_instances == 8
    assert config.model_repo == Path("/tmp/models") and config.device is None
    assert config.store_ttl_s == 60


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
