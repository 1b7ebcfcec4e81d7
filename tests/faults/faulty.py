"""A test-only model whose forward fails on chosen inputs (loaded as safetensors + factory).

It lives in the model repository of the fault tests only: production code has no test hook.
An input holding `OOM_VALUE` raises `torch.OutOfMemoryError`, as CUDA does; one holding
`SLOW_VALUE` makes the forward sleep `SLOW_S` seconds (a hung device call); one holding
`PACED_VALUE` makes it sleep `PACED_S` (a long computation made of many model calls); a row
holding `NAN_VALUE` gets NaN outputs (a model that breaks down on some inputs).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.helpers import to_toml

NAME = "faulty"
FEATURES = ["a", "b"]
OOM_VALUE = 4242.0
SLOW_VALUE = 2323.0
SLOW_S = 4.0
PACED_VALUE = 2525.0
PACED_S = 0.25
NAN_VALUE = 6161.0


class FaultyModel(torch.nn.Module):
    """Two features -> two logits, failing on marker values."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(len(FEATURES), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x == OOM_VALUE).any()):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if bool((x == SLOW_VALUE).any()):
            time.sleep(SLOW_S)
        if bool((x == PACED_VALUE).any()):
            time.sleep(PACED_S)
        outputs = self.linear(x)
        broken = (x == NAN_VALUE).any(dim=1, keepdim=True)
        return torch.where(broken, torch.full_like(outputs, float("nan")), outputs)


def factory() -> FaultyModel:
    return FaultyModel()


def write_faulty_model(root: Path) -> Path:
    """Write the model (weights and model.toml) under `root/faulty`; returns `root`."""
    directory = root / NAME
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_file(FaultyModel().state_dict(), str(directory / "model.safetensors"))
    spec = {
        "name": NAME,
        "version": "1",
        "modality": "tabular",
        "format": "safetensors",
        "artifact": "model.safetensors",
        "factory": f"{__name__}:factory",
        "classes": ["no", "yes"],
        "output": "logits",
        "tabular": {"features": FEATURES},
    }
    (directory / "model.toml").write_text(to_toml(spec))
    return root
