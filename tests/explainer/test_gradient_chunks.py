"""Calls with gradients have a chunk of their own: tuned apart, lowered apart on out-of-memory,
and every gradient method (saliency and Grad-CAM too) runs in it with the same numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from explainer import Engine, ExplainOptions, explain
from models import ModelHandle, ModelRepository
from models.repository import ZOO_DIR
from tests.helpers import binary_tabular_spec, write_torchscript_model


def test_tune_measures_both_chunks_and_stops_at_out_of_memory(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
) -> None:
    handle = known_models["logistic"]
    counted("logistic", fail_above=100)
    engine = Engine("cpu")
    chunks = engine.tune(handle, candidates=(16, 64, 256, 1024))
    assert chunks.inference in (16, 64) and chunks.gradients in (16, 64)
    assert engine.chunk_for(handle) == chunks.inference
    assert engine.chunk_for(handle, gradients=True) == chunks.gradients


class Detached(torch.nn.Module):
    """Logits with no gradient: a model whose gradient methods cannot work."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.detach().sum(dim=1)
        return torch.stack([torch.zeros_like(total), total], dim=1)


def test_a_model_without_gradients_keeps_its_inference_chunk_for_both(tmp_path: Path) -> None:
    spec = binary_tabular_spec("detached", ["a", "b"])
    write_torchscript_model(tmp_path / "detached", Detached(), spec)
    handle = ModelRepository(tmp_path).load("cpu").get("detached")
    chunks = Engine("cpu").tune(handle, candidates=(16, 64))
    assert chunks.gradients == chunks.inference


def test_out_of_memory_with_gradients_lowers_only_the_gradient_chunk(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
) -> None:
    handle = known_models["logistic"]
    row = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7]])
    rows = row * torch.tensor([[1.0], [0.5], [-1.0], [2.0]])  # IG: 4 x 50 path points
    reference = explain(handle, rows, ["integrated_gradients"], engine=Engine("cpu"))
    counted("logistic", fail_above=60)
    engine = Engine("cpu", chunk_size=256)
    result = explain(handle, rows, ["integrated_gradients"], engine=engine)
    assert engine.chunk_for(handle, gradients=True) == 32  # 256 -> 128 -> 64 -> 32
    assert engine.chunk_for(handle) == 256  # predictions and perturbations keep theirs
    for ours, theirs in zip(result, reference, strict=True):
        np.testing.assert_allclose(
            ours.methods["integrated_gradients"].attributions,
            theirs.methods["integrated_gradients"].attributions,
            atol=1e-6,
        )


@pytest.fixture(scope="module")
def lesion() -> ModelHandle:
    """The zoo's eager CNN (Grad-CAM needs its layers)."""
    return ModelRepository(ZOO_DIR).load("cpu", only=["lesion-64"]).get("lesion-64")


@pytest.fixture()
def short_of_memory(lesion: ModelHandle) -> Iterator[Callable[[int], None]]:
    """`limit(n)`: the model then fails like a full GPU on calls with gradients of more
    than n images."""
    hooks = []

    def limit(most: int) -> None:
        def refuse_large_calls(_: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if torch.is_grad_enabled() and len(args[0]) > most:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        assert lesion.module is not None
        hooks.append(lesion.module.register_forward_pre_hook(refuse_large_calls))

    yield limit
    for hook in hooks:
        hook.remove()


# The captum methods run the instances (SmoothGrad: its noised copies) a chunk at a time;
# shap batches in calls of at least one row per instance (two images here).
@pytest.mark.parametrize(
    ("method", "most"),
    [("saliency", 1), ("gradcam", 1), ("integrated_gradients", 1), ("smoothgrad", 1), ("shap", 2)],
)
def test_gradient_methods_survive_out_of_memory_with_the_same_numbers(
    lesion: ModelHandle, short_of_memory: Callable[[int], None], method: str, most: int
) -> None:
    assert lesion.background is not None
    images = lesion.background[:2].clone()
    options = ExplainOptions(smoothgrad={"nt_samples": 8}, shap={"algorithm": "gradient"})
    reference = explain(lesion, images, [method], options=options, engine=Engine("cpu"))
    short_of_memory(most)
    engine = Engine("cpu", chunk_size=64)
    result = explain(lesion, images, [method], options=options, engine=engine)
    assert engine.chunk_for(lesion, gradients=True) == most  # 64 -> 32 -> ... -> most
    assert engine.chunk_for(lesion) == 64
    for ours, theirs in zip(result, reference, strict=True):
        np.testing.assert_allclose(
            ours.methods[method].attributions,
            theirs.methods[method].attributions,
            rtol=1e-4,
            atol=1e-6,
        )


@pytest.mark.parametrize(
    ("method", "gradients"), [("integrated_gradients", True), ("occlusion", False)]
)
def test_captum_batched_methods_call_the_model_with_fewer_rows_than_instances(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
    method: str,
    gradients: bool,
) -> None:
    """captum batches at least a row per instance: these methods give it a chunk of them."""
    handle = known_models["logistic"]
    rows = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7]]) * torch.tensor([[1.0], [0.5], [-1.0]])
    reference = explain(handle, rows, [method], engine=Engine("cpu"))
    counted("logistic", fail_above=2)  # fewer rows than the request's three instances
    engine = Engine("cpu", chunk_size=64)
    result = explain(handle, rows, [method], engine=engine)
    assert engine.chunk_for(handle, gradients=gradients) == 2
    for ours, theirs in zip(result, reference, strict=True):
        np.testing.assert_allclose(
            ours.methods[method].attributions, theirs.methods[method].attributions, atol=1e-6
        )
        quality = ours.methods[method].quality  # IG's convergence delta, nothing for occlusion
        assert quality.keys() == theirs.methods[method].quality.keys()
        np.testing.assert_allclose(
            list(quality.values()), list(theirs.methods[method].quality.values()), atol=1e-6
        )


def test_a_model_short_of_memory_at_every_candidate_starts_at_one_row(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
) -> None:
    handle = known_models["logistic"]
    counted("logistic", fail_above=4)
    engine = Engine("cpu")
    assert engine.tune(handle, candidates=(16, 64)) == (1, 1)
    result = explain(handle, torch.ones((3, 6)), ["saliency", "lime"], engine=engine)
    assert len(result) == 3  # the calls then run, a row at a time
