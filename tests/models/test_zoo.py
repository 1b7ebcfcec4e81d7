"""The built-in zoo: every model loads, its card's test metrics reproduce, retraining matches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.handle import ModelHandle
from models.repository import ZOO_DIR, ModelRepository
from models.zoo import credit_data
from models.zoo.architectures import MixedTabularMLP
from models.zoo.train import (
    LESION_MEAN,
    LESION_STD,
    METRICS_FILE,
    evaluate,
    train,
    zoo_spec,
)

ZOO_MODELS = ("breast-cancer", "credit-risk", "lesion-64")
# The card's targets: (metric, minimum) on the test split.
TARGETS = {
    "breast-cancer": ("accuracy", 0.95),
    "credit-risk": ("roc_auc", 0.75),
    "lesion-64": ("accuracy", 0.9),
}
MAX_WEIGHTS_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def repo() -> ModelRepository:
    return ModelRepository(ZOO_DIR).load("cpu")


def committed_metrics(name: str) -> dict[str, object]:
    return json.loads((ZOO_DIR / name / METRICS_FILE).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_every_zoo_model_loads(repo: ModelRepository) -> None:
    assert repo.errors == {}
    assert repo.names() == sorted(ZOO_MODELS)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_test_metrics_reproduce_from_committed_weights(repo: ModelRepository, name: str) -> None:
    measured = evaluate(name, repo.get(name).forward)
    committed = committed_metrics(name)["test"]
    assert isinstance(committed, dict)
    for key, value in measured.items():
        assert value == pytest.approx(committed[key], abs=0.005), key
    metric, minimum = TARGETS[name]
    assert measured[metric] >= minimum


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_model_directory_is_complete(repo: ModelRepository, name: str) -> None:
    handle = repo.get(name)
    directory = ZOO_DIR / name
    assert (directory / "CARD.md").is_file()
    assert handle.spec.version == "1"
    assert handle.spec.description
    assert (directory / handle.spec.artifact).stat().st_size < MAX_WEIGHTS_BYTES
    assert handle.background is not None
    size = len(handle.background)
    assert (16 <= size <= 32) if handle.is_image else (size == 100)


@pytest.mark.parametrize("name", ["breast-cancer", "credit-risk"])
def test_tabular_example_decodes_and_predicts(repo: ModelRepository, name: str) -> None:
    handle = repo.get(name)
    assert handle.spec.example is not None
    batch = handle.decode([handle.spec.example])
    assert handle.forward(batch).shape == (1, handle.spec.num_classes)


def test_credit_spec_matches_generator(repo: ModelRepository) -> None:
    spec = repo.get("credit-risk").spec
    assert spec.tabular is not None
    assert tuple(spec.tabular.features) == credit_data.FEATURES
    assert spec.tabular.categorical == {
        k: list(v) for k, v in credit_data.CATEGORICAL_FEATURES.items()
    }
    ranges = {k: (r.min, r.max) for k, r in spec.tabular.ranges.items()}
    assert ranges == credit_data.RANGES
    assert set(spec.tabular.reasons) == set(spec.tabular.features)
    assert spec.tabular.units == credit_data.UNITS
    assert spec.tabular.adverse_class is not None
    assert spec.classes[spec.tabular.adverse_class] == "default"


def test_credit_gradients_flow_through_the_exported_module(repo: ModelRepository) -> None:
    handle = repo.get("credit-risk")
    assert handle.background is not None
    x = handle.background[:4].clone()
    x[:, 5:] += 0.4  # between category codes, where the hat encoding has a slope
    x.requires_grad_(True)
    handle.forward(x)[:, 1].sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(dim=0) > 0).all()


def test_hat_encoding_is_one_hot_at_integer_codes() -> None:
    model = MixedTabularMLP([0], [], torch.zeros(1), torch.ones(1), {1: 3})
    x = torch.tensor([[5.0, 0.0], [5.0, 1.0], [5.0, 2.0], [5.0, 1.5]])
    hats = model.encode(x)[:, 1:]
    expected = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0.5, 0.5]]
    assert torch.equal(hats, torch.tensor(expected, dtype=torch.float32))


def test_lesion_spec_matches_training(repo: ModelRepository) -> None:
    handle = repo.get("lesion-64")
    image = handle.spec.image
    assert image is not None
    assert tuple(image.mean) == LESION_MEAN
    assert tuple(image.std) == LESION_STD
    assert image.gradcam_layer is not None
    assert handle.module is not None
    layer = handle.module.get_submodule(image.gradcam_layer)
    assert isinstance(layer, torch.nn.Conv2d)
    convs = [m for m in handle.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert layer is convs[-1]


@pytest.mark.slow
def test_retraining_reproduces_committed_metrics(tmp_path: Path) -> None:
    metrics = train("breast-cancer", tmp_path)
    committed = committed_metrics("breast-cancer")["test"]
    assert isinstance(committed, dict)
    for key, value in metrics["test"].items():
        assert value == pytest.approx(committed[key], abs=0.01), key
    handle = ModelHandle(tmp_path, zoo_spec("breast-cancer")).load("cpu")
    assert handle.background is not None
    assert np.isfinite(handle.background.numpy()).all()
