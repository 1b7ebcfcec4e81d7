"""SmoothGrad's noise on tabular models: `stdev` times each feature's own spread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from explainer import Engine, ExplainOptions, explain
from models import ModelRepository
from tests.conftest import LOGISTIC_B, LOGISTIC_FEATURES, LOGISTIC_W, centred_background
from tests.helpers import LogisticModel, write_torchscript_model

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
    spec = {
        "name": "spread",
        "modality": "tabular",
        "classes": ["no", "yes"],
        "output": "logits",
        "tabular": {"features": LOGISTIC_FEATURES},
    }
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
