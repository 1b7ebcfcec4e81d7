"""Bring your own model, as notebook 05 does: export, write model.toml, serve, explain.

The test's own models have known answers. A repository in a temporary directory holds

* `linear-risk`: a tabular model exported with `torch.export` whose class-1 logit is exactly
  `w . x + b` (class 0's is 0), so integrated gradients from a zero baseline are `w * x`
  and SHAP values add up to the logit;
* `tiny-cnn`: an image model saved as safetensors weights plus a factory in a module that
  the server imports from its PYTHONPATH.

A real `explainer serve --model-repo DIR --port <free>` subprocess serves the repository.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from benchmarks.liveserver import explainer_command

WEIGHTS = [1.5, -2.0, 0.5, 0.0]
BIAS = -0.25
FEATURES = ["dose", "age", "weight", "noise"]
ROW = {"dose": 1.2, "age": 0.4, "weight": -0.8, "noise": 3.0}
IMAGE_SIDE = 16

FACTORY_SOURCE = '''
import torch


class TinyCNN(torch.nn.Module):
    """3 x 16 x 16 image -> two logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1)
        )
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def tiny_cnn() -> torch.nn.Module:
    return TinyCNN()
'''

LINEAR_TOML = """
name = "linear-risk"
version = "1"
modality = "tabular"
format = "export"
artifact = "model.pt2"
classes = ["low", "high"]
output = "logits"

[tabular]
features = ["dose", "age", "weight", "noise"]
adverse_class = 1

[tabular.units]
dose = "mg"

[tabular.reasons]
dose = "Dose too high"
"""

CNN_TOML = """
name = "tiny-cnn"
version = "1"
modality = "image"
format = "safetensors"
artifact = "model.safetensors"
factory = "byom_factory:tiny_cnn"
classes = ["plain", "spotted"]
output = "logits"

[image]
height = 16
width = 16
channels = 3
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
gradcam_layer = "features.0"
"""


class LinearRisk(torch.nn.Module):
    """Logits [0, w . x + b]."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(WEIGHTS))
        self.b = torch.nn.Parameter(torch.tensor(BIAS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 4) -> (N, 2)
        z = x @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


def _load_factory(directory: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("byom_factory", directory / "byom_factory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_repository(root: Path, code_dir: Path) -> Path:
    """The two models of this test in `root`; the factory module in `code_dir`."""
    linear = root / "linear-risk"
    linear.mkdir(parents=True)
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        LinearRisk().eval(), (torch.zeros(4, 4),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, linear / "model.pt2")
    background = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    np.savez(linear / "background.npz", x=background)
    (linear / "model.toml").write_text(LINEAR_TOML.lstrip(), encoding="utf-8")

    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "byom_factory.py").write_text(FACTORY_SOURCE.lstrip(), encoding="utf-8")
    torch.manual_seed(0)
    cnn = _load_factory(code_dir).tiny_cnn()
    image = root / "tiny-cnn"
    image.mkdir()
    save_file(cnn.state_dict(), str(image / "model.safetensors"))
    (image / "model.toml").write_text(CNN_TOML.lstrip(), encoding="utf-8")
    return root


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EXPLAINER_")}


@pytest.fixture(scope="module")
def byom_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("byom")
    return build_repository(base / "repo", base / "code"), base / "code"


@pytest.fixture(scope="module")
def byom_api(notebook_support: ModuleType, byom_repo: tuple[Path, Path]) -> Iterator[Any]:
    repo, code_dir = byom_repo
    api = notebook_support.serve(repo, env={"PYTHONPATH": str(code_dir)})
    try:
        yield api
    finally:
        api.close()


@pytest.mark.e2e
def test_cli_lists_the_repository(byom_repo: tuple[Path, Path]) -> None:
    repo, code_dir = byom_repo
    result = subprocess.run(
        [*explainer_command(), "models", "--model-repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**_clean_env(), "PYTHONPATH": str(code_dir)},
    )
    assert result.returncode == 0, result.stderr
    assert "linear-risk" in result.stdout and "tiny-cnn" in result.stdout


@pytest.mark.e2e
def test_served_models(byom_api: Any) -> None:
    models = {model["name"]: model for model in byom_api.models()}
    assert sorted(models) == ["linear-risk", "tiny-cnn"]
    assert models["linear-risk"]["features"] == FEATURES
    assert models["tiny-cnn"]["image"] == {"height": 16, "width": 16, "channels": 3}


@pytest.mark.e2e
def test_tabular_explanation_has_the_known_answers(byom_api: Any) -> None:
    response = byom_api.explain(
        "linear-risk",
        [ROW],
        methods=["integrated_gradients", "shap", "lime", "tree"],
        target="high",
        options={"integrated_gradients": {"baseline": "zeros"}},
    )
    explanation = response["explanations"][0]
    x = np.array([ROW[name] for name in FEATURES])
    logit = float(x @ np.array(WEIGHTS) + BIAS)
    assert explanation["score"] == pytest.approx(logit, abs=1e-5)
    assert explanation["prediction"]["label"] == ("high" if logit > 0 else "low")
    methods = explanation["methods"]
    ig = methods["integrated_gradients"]["attributions"]
    assert ig == pytest.approx(list(np.array(WEIGHTS) * x), abs=1e-4)
    shap = methods["shap"]
    assert shap["base_value"] + sum(shap["attributions"]) == pytest.approx(logit, abs=1e-4)
    assert shap["attributions"][3] == pytest.approx(0.0, abs=1e-6)  # a zero weight
    assert methods["tree"]["rules"] and methods["tree"]["quality"]["fidelity_r2"] is not None
    codes = explanation["reason_codes"]["codes"]
    assert codes[0]["feature"] == "dose" and codes[0]["reason"] == "Dose too high"
    png = byom_api.png(methods["shap"]["heatmap_url"])
    assert png.startswith(b"\x89PNG")


@pytest.mark.e2e
def test_image_explanation_and_heatmaps(notebook_support: ModuleType, byom_api: Any) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    response = byom_api.explain(
        "tiny-cnn",
        [notebook_support.image_instance(pixels)],
        methods=["saliency", "integrated_gradients", "gradcam"],
    )
    explanation = response["explanations"][0]
    for name, method in explanation["methods"].items():
        attributions = np.asarray(method["attributions"], dtype=float)
        assert attributions.shape == (IMAGE_SIDE, IMAGE_SIDE), name
        assert np.isfinite(attributions).all(), name
        png = byom_api.png(method["heatmap_url"], style="overlay")
        assert notebook_support.decode_png(png).shape == (296, 256, 3), name
        assert notebook_support.png_text(png)["model"] == "tiny-cnn"
    delta = explanation["methods"]["integrated_gradients"]["quality"]["convergence_delta"]
    assert abs(delta) < 1e-2
    stored = byom_api.get(f"/v1/explanations/{response['id']}")
    assert stored["explanations"][0]["prediction"] == explanation["prediction"]
