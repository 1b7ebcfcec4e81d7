"""Shared fixtures: small known-answer models written to a temporary model repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from playwright.sync_api import Browser, sync_playwright

from benchmarks.browser import CHROMIUM, launch_chromium
from models import ModelHandle, ModelRepository
from tests.helpers import (
    BlockMeanModel,
    LogisticModel,
    square_images,
    train_small_cnn,
    write_torchscript_model,
)

LOGISTIC_W = [2.0, -1.5, 0.0, 0.0, 1.0, 0.0]
LOGISTIC_B = 0.3
LOGISTIC_FEATURES = ["f0", "f1", "f2", "f3", "f4", "f5"]
BLOCK = (24, 32)  # top, left of the 16x16 block the image model looks at


def centred_background(rows: int, features: int, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).normal(size=(rows, features)).astype(np.float32)
    return data - data.mean(axis=0)


@pytest.fixture(scope="session")
def known_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with a logistic model, a two-feature model and a block-mean image model."""
    root = tmp_path_factory.mktemp("known-models")
    tabular = {"modality": "tabular", "classes": ["no", "yes"], "output": "logits"}
    write_torchscript_model(
        root / "logistic",
        LogisticModel(LOGISTIC_W, LOGISTIC_B),
        {"name": "logistic", **tabular, "tabular": {"features": LOGISTIC_FEATURES}},
        centred_background(200, 6),
    )
    write_torchscript_model(
        root / "two-features",
        LogisticModel([3.0, -2.0, 0.0, 0.0, 0.0, 0.0], 0.0),
        {"name": "two-features", **tabular, "tabular": {"features": LOGISTIC_FEATURES}},
        centred_background(200, 6, seed=1),
    )
    image = {"height": 64, "width": 64, "channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    write_torchscript_model(
        root / "block",
        BlockMeanModel(*BLOCK),
        {
            "name": "block",
            "modality": "image",
            "classes": ["block", "not-block"],
            "output": "logits",
            "image": image,
        },
    )
    cnn_image = {**image, "mean": [0.5] * 3, "std": [0.25] * 3}
    cnn_spec = {"modality": "image", "classes": ["left", "right"], "output": "logits"}
    write_torchscript_model(
        root / "squares",
        train_small_cnn(),
        {"name": "squares", **cnn_spec, "image": cnn_image},
        square_images(8, seed=99)[0],
    )
    return root


@pytest.fixture(scope="session")
def known_models(known_repo: Path) -> dict[str, ModelHandle]:
    repo = ModelRepository(known_repo).load("cpu")
    assert not repo.errors, repo.errors
    return repo.handles


def block_image(seed: int = 0) -> np.ndarray:
    """A dark textured `(3, 64, 64)` image with a bright textured block where the model looks."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.05, 0.35, size=(3, 64, 64)).astype(np.float32)
    top, left = BLOCK
    image[:, top : top + 16, left : left + 16] = rng.uniform(0.7, 1.0, size=(3, 16, 16))
    return image


@pytest.fixture()
def block_batch() -> torch.Tensor:
    return torch.from_numpy(np.stack([block_image(0), block_image(1)]))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium driven by Playwright (the viewer and report tests)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()
