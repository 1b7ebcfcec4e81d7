"""Audit fixtures: the zoo's credit-risk model alone in a repository, its data, cheap options."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from explainer import Engine
from models import ModelHandle, ModelRepository
from models.repository import ZOO_DIR
from models.zoo import credit_data

MODEL = "credit-risk"
# The five methods with cheap options, so that thousands of rows take a minute on 2 cores.
CHEAP_OPTIONS: dict[str, Any] = {
    "integrated_gradients": {"n_steps": 16},
    "shap": {"algorithm": "exact", "background_size": 10},
    "lime": {"num_samples": 100},
}


def credit_rows(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Applicants from the zoo's generator, keyed by feature name, categories by name."""
    data = credit_data.generate(count, seed)
    rows = []
    for values in data.x.tolist():
        row: dict[str, Any] = {}
        for name, value in zip(credit_data.FEATURES, values, strict=True):
            categories = credit_data.CATEGORICAL_FEATURES.get(name)
            row[name] = categories[int(value)] if categories else value
        rows.append(row)
    return rows


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest (and steadiest on a busy 2-core machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def credit_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding a snapshot of the zoo's credit-risk model only (fast to load)."""
    root = tmp_path_factory.mktemp("credit-repo")
    shutil.copytree(ZOO_DIR / MODEL, root / MODEL)
    return root


@pytest.fixture(scope="session")
def credit(credit_repo: Path) -> ModelHandle:
    repository = ModelRepository(credit_repo).load("cpu")
    assert not repository.errors, repository.errors
    return repository.get(MODEL)


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine("cpu", cache_entries=0)  # every result computed, never served from a cache
