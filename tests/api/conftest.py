"""`app` and `client` fixtures: the real app on a tiny model repository and a temp SQLite DB."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from api.app import ExplainerApp, create_app
from api.config import ApiConfig
from tests.api.repo import IMAGE_SIDE, build_repository

AppFactory = Callable[..., ExplainerApp]


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("api-models"))


def app_factory(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> AppFactory:
    """Apps on `model_repo`, each with a fresh SQLite database and config overrides."""

    def factory(**overrides: Any) -> ExplainerApp:
        database = tmp_path_factory.mktemp("db") / "explainer.db"
        values = {
            "model_repo": model_repo,
            "database_url": f"sqlite:///{database}",
            # Unit tests skip tuning and warm-up (the e2e server does both): ready at once.
            "chunk_size": 256,
            "warm_up": False,
            **overrides,
        }
        return create_app(ApiConfig.from_env(values, environ={}))

    return factory


@pytest.fixture(scope="session")
def make_app(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> AppFactory:
    """Build an app with a fresh SQLite database and config overrides."""
    return app_factory(model_repo, tmp_path_factory)


@pytest.fixture(scope="session")
def app(make_app: AppFactory) -> ExplainerApp:
    """One app for the session (models load once); small limits to test them cheaply."""
    return make_app(max_body_bytes=256 * 1024, max_image_pixels=64 * 64)


@pytest.fixture()
def client(app: ExplainerApp) -> FlaskClient:
    return app.test_client()


def png_bytes(side: int = IMAGE_SIDE, seed: int = 0, fmt: str = "PNG") -> bytes:
    """A random RGB image encoded as PNG (or another Pillow format)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()
