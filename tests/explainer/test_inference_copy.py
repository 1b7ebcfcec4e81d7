"""The engine's frozen copies of image models: used without gradients, refused when unsafe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explainer import Engine, explain
from explainer.inference_copy import inference_copy
from models import ModelHandle, ModelRepository
from models.repository import ZOO_DIR
from tests.helpers import SmallCNN, square_images, to_toml

IMAGES = torch.from_numpy(square_images(2, seed=3)[0])


def test_image_models_get_a_copy_for_calls_without_gradients(
    known_models: dict[str, ModelHandle],
) -> None:
    engine = Engine("cpu", cache_entries=0)
    squares = known_models["squares"]
    copy = engine.inference_module(squares)
    assert isinstance(copy, torch.jit.ScriptModule) and copy is not squares.module
    assert engine.inference_module(squares) is copy  # made once per model
    assert engine.inference_module(known_models["logistic"]) is None  # TorchScript tabular
    assert Engine("cpu", inference_copies=False).inference_module(squares) is None
    with torch.inference_mode():
        expected = squares.forward(IMAGES)
    torch.testing.assert_close(engine.evaluate(squares, IMAGES), expected, rtol=1e-5, atol=1e-6)


def test_gradient_methods_call_the_model_itself(known_models: dict[str, ModelHandle]) -> None:
    squares = known_models["squares"]
    methods = ["saliency", "integrated_gradients"]
    with_copy = explain(squares, IMAGES, methods, engine=Engine("cpu", cache_entries=0))
    without = explain(
        squares, IMAGES, methods, engine=Engine("cpu", cache_entries=0, inference_copies=False)
    )
    for a, b in zip(with_copy, without, strict=True):
        for name in methods:
            expected = b.methods[name].attributions
            np.testing.assert_array_equal(a.methods[name].attributions, expected)


class Unscriptable(torch.nn.Module):
    """A model TorchScript cannot compile (it calls numpy)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + float(np.float32(0.0))


def test_a_model_torchscript_cannot_compile_runs_unchanged(
    known_models: dict[str, ModelHandle],
) -> None:
    squares = known_models["squares"]
    original = squares.module
    assert original is not None
    squares.module = Unscriptable(original)
    try:
        assert inference_copy(squares) is None
        engine = Engine("cpu", cache_entries=0)
        expected = squares.forward(IMAGES).detach()
        torch.testing.assert_close(engine.evaluate(squares, IMAGES), expected)
    finally:
        squares.module = original


def test_a_copy_that_disagrees_with_the_model_is_refused(
    known_models: dict[str, ModelHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    optimise = torch.jit.optimize_for_inference

    def off_by_a_little(module: torch.jit.ScriptModule) -> torch.nn.Module:
        return OffBy(optimise(module), 1e-3)

    monkeypatch.setattr(torch.jit, "optimize_for_inference", off_by_a_little)
    assert inference_copy(known_models["squares"]) is None


class OffBy(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, offset: float) -> None:
        super().__init__()
        self.inner = inner
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + self.offset


def test_an_exported_image_model_is_traced_into_a_copy(tmp_path: Path) -> None:
    directory = tmp_path / "exported-cnn"
    directory.mkdir()
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        SmallCNN().eval(), (torch.rand(2, 3, 64, 64),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, str(directory / "model.pt2"))
    spec = {
        "name": "exported-cnn",
        "version": "1",
        "modality": "image",
        "format": "export",
        "artifact": "model.pt2",
        "classes": ["left", "right"],
        "output": "logits",
        "image": {"height": 64, "width": 64, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
    }
    (directory / "model.toml").write_text(to_toml(spec))
    handle = ModelRepository(tmp_path).load("cpu").get("exported-cnn")
    engine = Engine("cpu", cache_entries=0)
    assert isinstance(engine.inference_module(handle), torch.jit.ScriptModule)
    images = torch.rand(7, 3, 64, 64)  # a batch size other than the trace's
    with torch.inference_mode():
        expected = handle.forward(images)
    torch.testing.assert_close(engine.evaluate(handle, images), expected, rtol=1e-5, atol=1e-6)


def test_an_exported_tabular_model_gets_a_frozen_copy_with_the_same_numbers() -> None:
    """Without the exported program's per-call input guards; frozen, not optimised."""
    credit = ModelRepository(ZOO_DIR).load("cpu", only=["credit-risk"]).get("credit-risk")
    assert isinstance(credit.module, torch.fx.GraphModule) and credit.background is not None
    engine = Engine("cpu", cache_entries=0)
    copy = engine.inference_module(credit)
    assert isinstance(copy, torch.jit.ScriptModule) and copy is not credit.module
    rows = credit.background[:4].clone()
    plain = Engine("cpu", cache_entries=0, inference_copies=False)
    for count in (1, 2, 3):  # traced on 2 rows: no batch size baked in
        expected = plain.evaluate(credit, rows[:count])
        torch.testing.assert_close(engine.evaluate(credit, rows[:count]), expected, rtol=0, atol=0)
    ours = explain(credit, rows, ["shap", "lime", "tree"], engine=engine)
    theirs = explain(credit, rows, ["shap", "lime", "tree"], engine=plain)
    for a, b in zip(ours, theirs, strict=True):
        assert a.prediction == b.prediction
        for name, explanation in a.methods.items():
            np.testing.assert_array_equal(explanation.attributions, b.methods[name].attributions)
