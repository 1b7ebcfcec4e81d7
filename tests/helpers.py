"""Test helpers: build small model repositories on disk (TOML writer, TorchScript export)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def to_toml(data: dict[str, Any]) -> str:
    """A minimal TOML writer: scalars and lists at top level, one level of tables."""
    lines = [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)
    ]
    for key, table in data.items():
        if isinstance(table, dict):
            lines.append(f"\n[{key}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def binary_tabular_spec(name: str, features: list[str], **extra: Any) -> dict[str, Any]:
    """The `model.toml` keys of a tabular model `name` giving logits for two classes, "no"
    and "yes", over `features` (for `write_torchscript_model`); `extra` adds or replaces
    top-level keys."""
    return {
        "name": name,
        "modality": "tabular",
        "classes": ["no", "yes"],
        "output": "logits",
        "tabular": {"features": list(features)},
        **extra,
    }


def write_torchscript_model(
    directory: Path,
    module: torch.nn.Module,
    spec: dict[str, Any],
    background: np.ndarray | None = None,
) -> Path:
    """Script `module` into `directory/model.pt` and write its model.toml (and background)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(module.eval()), str(directory / "model.pt"))
    full = {"version": "1", "format": "torchscript", "artifact": "model.pt", **spec}
    (directory / "model.toml").write_text(to_toml(full))
    if background is not None:
        np.savez(directory / "background.npz", x=background)
    return directory


UNSTABLE = "unstable"  # the model that `write_unstable_model` writes


class NanAboveThree(torch.nn.Module):
    """Logits [0, sum(x)], but NaN where sum(x) > 3: some perturbations break it down."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.sum(dim=1)
        total = torch.where(total > 3.0, torch.full_like(total, float("nan")), total)
        return torch.stack([torch.zeros_like(total), total], dim=1)


class NanBetweenOneAndTwo(torch.nn.Module):
    """Logits [0, sum(x)], but NaN where 1 < sum(x) < 2. A row summing to 3 has a finite
    prediction, but the integrated-gradients path from a zero baseline crosses the band."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.sum(dim=1)
        band = (total > 1.0) & (total < 2.0)
        factor = torch.where(band, torch.full_like(total, float("nan")), torch.ones_like(total))
        total = total * factor  # NaN in the band, and so are its gradients
        return torch.stack([torch.zeros_like(total), total], dim=1)


def write_unstable_model(root: Path, module: torch.nn.Module) -> Path:
    """`module` as the tabular model "unstable" (features a to d, classes no and yes)."""
    spec = binary_tabular_spec(UNSTABLE, ["a", "b", "c", "d"])
    background = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    return write_torchscript_model(root / UNSTABLE, module, spec, background)


def png_base64(pixels: np.ndarray) -> str:
    """`(H, W, 3)` uint8 -> base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class LogisticModel(torch.nn.Module):
    """Two-class logits [0, w.x + b]: class 1's logit is exactly z = w.x + b."""

    def __init__(self, weights: list[float], bias: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(weights))
        self.b = torch.nn.Parameter(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


class BlockMeanModel(torch.nn.Module):
    """Class 0's logit is the mean of one 16x16 block (all channels); class 1's is its negative."""

    def __init__(self, top: int, left: int, size: int = 16) -> None:
        super().__init__()
        self.top, self.left, self.size = top, left, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = x[:, :, self.top : self.top + self.size, self.left : self.left + self.size]
        score = block.mean(dim=(1, 2, 3))
        return torch.stack([score, -score], dim=1)


class SmallCNN(torch.nn.Module):
    """A tiny CNN for parity and sanity tests (no in-place operations)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Linear(16 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def logistic_factory() -> torch.nn.Module:
    """Factory for safetensors loading tests: the architecture of the logistic test model."""
    return LogisticModel([0.0] * 6, 0.0)


def square_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(N, 3, 64, 64)` dark noise with a bright 12x12 square: class 0 left half, 1 right half."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, size=(count, 3, 64, 64)).astype(np.float32)
    labels = rng.integers(0, 2, size=count)
    for image, label in zip(images, labels, strict=True):
        top = rng.integers(0, 52)
        left = rng.integers(0, 20) + (32 if label else 0)
        image[:, top : top + 12, left : left + 12] = rng.uniform(0.7, 1.0)
    return images, labels


def train_small_cnn(seed: int = 0, steps: int = 60) -> SmallCNN:
    """Train SmallCNN to tell left squares from right squares (a few seconds on a CPU)."""
    torch.manual_seed(seed)
    model = SmallCNN()
    images, labels = square_images(512, seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = slice((step * 64) % 512, (step * 64) % 512 + 64)
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()
