"""A tiny model repository for the API tests: a tabular model with reason codes, an image CNN.

Both are TorchScript, built in a second from fixed seeds, so the tests do not depend on
the zoo and run fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.helpers import LogisticModel, write_torchscript_model

TABULAR = "risk"
IMAGE = "tiles"
FEATURES = ["income", "debt", "age", "late_payments"]
IMAGE_SIDE = 16
TABULAR_ROW = {"income": 0.2, "debt": 1.5, "age": -0.3, "late_payments": 2.0}


class TinyCnn(torch.nn.Module):
    """3 x 16 x 16 -> two logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(4, 4, 3, padding=1),
        )
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.features(x)).mean(dim=(2, 3)))


def build_repository(root: Path) -> Path:
    """Write both models (with backgrounds) under `root` and return it."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    write_torchscript_model(
        root / TABULAR,
        LogisticModel([-1.0, 2.0, 0.5, 1.5], -0.2),
        {
            "name": TABULAR,
            "modality": "tabular",
            "classes": ["approve", "decline"],
            "output": "logits",
            "tabular": {
                "features": FEATURES,
                "adverse_class": 1,
                "reasons": {"debt": "Debt too high", "late_payments": "Late payments"},
            },
        },
        rng.normal(size=(64, len(FEATURES))).astype(np.float32),
    )
    image = {
        "height": IMAGE_SIDE,
        "width": IMAGE_SIDE,
        "channels": 3,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "gradcam_layer": "features.2",
    }
    write_torchscript_model(
        root / IMAGE,
        TinyCnn(),
        {
            "name": IMAGE,
            "modality": "image",
            "classes": ["plain", "striped"],
            "output": "logits",
            "image": image,
        },
        rng.uniform(size=(8, 3, IMAGE_SIDE, IMAGE_SIDE)).astype(np.float32),
    )
    return root
