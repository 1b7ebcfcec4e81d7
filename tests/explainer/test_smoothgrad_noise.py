"""SmoothGrad's noise on tabular models: `stdev` times each feature's own spread, and the
same draws for a seed whatever the chunk the noised copies go through the model in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explainer import Engine, ExplainOptions, explain
from models import ModelHandle, ModelRepository
from tests.conftest import LOGISTIC_B, LOGISTIC_FEATURES, LOGISTIC_W, centred_background
from tests.helpers import LogisticModel, binary_tabular_spec, write_torchscript_model

SPREADS = np.array([1.0, 10.0, 100.0, 0.1, 1.0, 1.0], dtype=np.float32)


class RecordingLogistic(LogisticModel):
    """The logistic model, keeping every batch it is given."""

    def __init__(self) -> None:
        super().__init__(LOGISTIC_W, LOGISTIC_B)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return super().forward(x)


def test_each_feature_is_noised_on_its_own_scale(tmp_path: Path) -> None:
    spec = binary_tabular_spec("spread", LOGISTIC_FEATURES)
    background = centred_background(400, 6) * SPREADS
    write_torchscript_model(
        tmp_path / "spread", LogisticModel(LOGISTIC_W, LOGISTIC_B), spec, background
    )
    handle = ModelRepository(tmp_path).load().get("spread")
    recorder = RecordingLogistic()
    handle.module = recorder
    instance = torch.tensor([[0.5, 5.0, -50.0, 0.05, 1.0, -1.0]])
    options = ExplainOptions(smoothgrad={"nt_samples": 256, "stdev": 0.2})
    result = explain(
        handle, instance, ["smoothgrad"], target=1, options=options, engine=Engine("cpu")
    )
    noisy = torch.cat([x for x in recorder.seen if len(x) > 1]) - instance
    assert len(noisy) == 256
    spread = background.std(axis=0)
    np.testing.assert_allclose(noisy.std(dim=0).numpy(), 0.2 * spread, rtol=0.15)
    # A linear model's gradient is its weights, whatever the noise: the rescaling is exact.
    np.testing.assert_allclose(
        result[0].methods["smoothgrad"].attributions, np.abs(LOGISTIC_W), rtol=1e-5, atol=1e-6
    )


class Curved(torch.nn.Module):
    """Logits [-s, s], s = sum(tanh(x * w)): a gradient that depends on the noise."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w", torch.tensor([0.5, -1.0, 2.0, 1.5, -0.7]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = torch.tanh(x * self.w).sum(dim=1)
        return torch.stack([-score, score], dim=1)


@pytest.fixture(scope="module")
def curved(tmp_path_factory: pytest.TempPathFactory) -> ModelHandle:
    spec = binary_tabular_spec("curved", ["a", "b", "c", "d", "e"])
    root = tmp_path_factory.mktemp("curved")
    write_torchscript_model(root / "curved", Curved(), spec, centred_background(100, 5))
    return ModelRepository(root).load("cpu").get("curved")


def test_the_noise_of_a_seed_does_not_depend_on_the_chunk(curved: ModelHandle) -> None:
    """torch draws other numbers for 16 rows at once than in smaller draws: the chunk (tuned,
    configured or halved after an out-of-memory error) must not change the answer."""
    rows = torch.tensor([[0.3, -0.2, 0.8, 0.1, -0.5], [1.0, 0.4, -0.6, 0.2, 0.0]])
    options = ExplainOptions(smoothgrad={"nt_samples": 16})

    def smoothgrad(chunk: int, seed: int = 3) -> list[np.ndarray]:
        engine = Engine("cpu", chunk_size=chunk)
        result = explain(curved, rows, ["smoothgrad"], options=options, seed=seed, engine=engine)
        return [row.methods["smoothgrad"].attributions for row in result]

    reference = smoothgrad(256)
    for chunk in (16, 5, 3, 1):
        for ours, theirs in zip(smoothgrad(chunk), reference, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)
    other_seed = smoothgrad(256, seed=4)
    assert not np.allclose(other_seed[0], reference[0], rtol=1e-3)
