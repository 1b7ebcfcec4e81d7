"""ModelHandle: one model of the repository, loaded once, run on one device.

Loading is separate from inference (KServe style): `load()` reads the artifact and the
background and sets `ready`; `decode()` turns request instances into a tensor batch;
`forward()` maps input-space tensors to the model's raw outputs (logits or probabilities).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.artifacts import load_artifact, sha256_of
from models.decoding import ImageLimits, decode_images, decode_tabular
from models.errors import InvalidInput, ModelNotReady
from models.spec import ModelConfigError, ModelSpec, TabularSpec, check_artifact_size

BACKGROUND_FILE = "background.npz"


class ModelHandle:
    """A model described by `model.toml`, its weights and its background data."""

    def __init__(self, directory: Path, spec: ModelSpec) -> None:
        self.directory = directory
        self.spec = spec
        self.module: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.sha256 = ""
        # Changes whenever the weights, model.toml or background change (cache keys).
        self.fingerprint = ""
        # Background in input space: (B, F) rows or (B, C, H, W) pixels in [0, 1]. On disk,
        # `background.npz` holds "x": (B, F) floats, (B, H, W, C) uint8 or (B, C, H, W) floats.
        self.background: torch.Tensor | None = None
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ready(self) -> bool:
        return self.module is not None

    @property
    def is_image(self) -> bool:
        return self.spec.modality == "image"

    @property
    def feature_names(self) -> list[str]:
        """Tabular feature names in input order (empty for image models)."""
        return list(self.spec.tabular.features) if self.spec.tabular else []

    @property
    def exposes_layers(self) -> bool:
        """Whether the loaded module shows its layers (eager, from safetensors): scripted and
        exported ones hide them, so Grad-CAM has no layer to hook."""
        hidden = (torch.jit.ScriptModule, torch.fx.GraphModule)
        return self.module is not None and not isinstance(self.module, hidden)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one instance in input space: `(F,)` or `(C, H, W)`."""
        if self.spec.image is not None:
            return (self.spec.image.channels, self.spec.image.height, self.spec.image.width)
        return (len(self.feature_names),)

    def load(self, device: torch.device | str = "cpu") -> ModelHandle:
        """Load weights and background onto `device`; returns self."""
        self.device = torch.device(device)
        module = load_artifact(self.directory, self.spec)
        self.sha256 = sha256_of(self.directory / self.spec.artifact)
        self.background = self._load_background()
        self.fingerprint = self._fingerprint()
        if self.spec.image is not None:
            shape = (1, self.spec.image.channels, 1, 1)
            self._mean = torch.tensor(self.spec.image.mean).reshape(shape).to(self.device)
            self._std = torch.tensor(self.spec.image.std).reshape(shape).to(self.device)
        self.module = module.to(self.device)
        return self

    def _fingerprint(self) -> str:
        digest = hashlib.sha256(self.sha256.encode())
        digest.update(self.spec.model_dump_json().encode())
        if self.background is not None:
            digest.update(self.background.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def _load_background(self) -> torch.Tensor | None:
        path = self.directory / BACKGROUND_FILE
        if not path.exists():
            return None
        if not path.is_file():
            raise ModelConfigError(path, "x", "is not a regular file")
        check_artifact_size(path, path, "x")
        try:
            with np.load(path, allow_pickle=False) as archive:
                if "x" not in archive:
                    raise ModelConfigError(path, "x", "background.npz must hold an array named 'x'")
                data = np.asarray(archive["x"])
        except ModelConfigError:
            raise
        except Exception as exc:  # not an archive, truncated, pickled objects
            raise ModelConfigError(
                path, "x", f"not a readable npz archive ({type(exc).__name__})"
            ) from None
        real = (np.integer, np.floating, np.bool_)
        if not any(np.issubdtype(data.dtype, kind) for kind in real):
            raise ModelConfigError(path, "x", f"must hold real numbers, not {data.dtype}")
        if self.spec.image is not None and data.dtype == np.uint8 and data.ndim == 4:
            # Pixels as stored by image tools: (B, H, W, C) uint8 -> (B, C, H, W) in [0, 1].
            data = data.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.ndim < 2 or tuple(data.shape[1:]) != self.input_shape:
            raise ModelConfigError(
                path,
                "x",
                f"shape {data.shape} is not (rows, {', '.join(map(str, self.input_shape))})",
            )
        _check_background_values(path, data, self.spec.image is not None)
        if self.spec.tabular is not None:
            _check_background_codes(path, data, self.spec.tabular)
            _check_background_ranges(path, data, self.spec.tabular)
        return torch.from_numpy(data).to(self.device)

    def decode(
        self, instances: Sequence[Any], image_limits: ImageLimits | None = None
    ) -> torch.Tensor:
        """Request instances -> one input-space batch on the device."""
        if not instances:
            raise InvalidInput("no instances given")
        if self.spec.image is not None:
            array = decode_images(self.spec.image, instances, image_limits or ImageLimits())
        else:
            assert self.spec.tabular is not None
            array = decode_tabular(self.spec.tabular, instances)
        return torch.from_numpy(array).to(self.device)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the normalisation the model expects (images); identity for tabular."""
        if self._mean is None or self._std is None:
            return x
        return (x - self._mean) / self._std

    def forward(self, x: torch.Tensor, module: torch.nn.Module | None = None) -> torch.Tensor:
        """Input-space batch -> raw outputs `(N, classes)`, differentiable.

        `module` runs in place of the model (the engine's inference-optimised copy).
        """
        if self.module is None:
            raise ModelNotReady(f"model {self.name!r} is not loaded")
        output = (module if module is not None else self.module)(self.normalise(x))
        return output.float()

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> class probabilities."""
        if self.spec.output == "logits":
            return torch.softmax(outputs, dim=-1)
        return outputs

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for listings."""
        info: dict[str, Any] = {
            "name": self.spec.name,
            "version": self.spec.version,
            "modality": self.spec.modality,
            "classes": list(self.spec.classes),
            "output": self.spec.output,
            "sha256": self.sha256,
        }
        tabular = self.spec.tabular
        if tabular is not None:
            info["features"] = list(tabular.features)
            info["units"] = dict(tabular.units)
            info["ranges"] = {name: r.model_dump() for name, r in tabular.ranges.items()}
            info["categorical"] = {name: list(c) for name, c in tabular.categorical.items()}
        if self.spec.image is not None:
            image = self.spec.image
            info["image"] = {
                "height": image.height,
                "width": image.width,
                "channels": image.channels,
            }
        return info


def _check_background_values(path: Path, data: np.ndarray, image: bool) -> None:
    """Background rows are references for every method: NaN or infinite values would reach
    the model (or fail inside LIME), and image floats must be pixels in [0, 1] (0..255
    floats would be out-of-range references). No value is put in the message."""
    if len(data) == 0:
        raise ModelConfigError(path, "x", "holds no rows")
    finite = np.isfinite(data.reshape(len(data), -1)).all(axis=1)
    if not finite.all():
        raise ModelConfigError(
            path, "x", f"row {int(np.argmin(finite))} holds NaN or infinite values"
        )
    if image and len(data) and (data.min() < 0.0 or data.max() > 1.0):
        raise ModelConfigError(
            path,
            "x",
            "image backgrounds are uint8 pixels (B, H, W, C) or floats in [0, 1]"
            " (B, C, H, W); these floats fall outside [0, 1]",
        )


def _check_background_codes(path: Path, data: np.ndarray, spec: TabularSpec) -> None:
    """A categorical feature's background values must be category indices (0 to n-1): SHAP,
    LIME, the tree and the `mean` baseline take them as references, and a code that is no
    category would be explained as one. Names the feature and the first bad row, no value."""
    for name, categories in spec.categorical.items():
        column = data[:, spec.features.index(name)]
        valid = (column == np.round(column)) & (column >= 0) & (column < len(categories))
        if not valid.all():
            raise ModelConfigError(
                path,
                "x",
                f"row {int(np.argmin(valid))} of categorical feature {name!r} is not a category"
                f" index (0 to {len(categories) - 1})",
            )


def _check_background_ranges(path: Path, data: np.ndarray, spec: TabularSpec) -> None:
    """A numeric feature's background values must lie in its `[tabular.ranges]` range, as
    requests' values must: the methods take background rows as references, and a reference
    the model is never asked about would be explained as one. The rows are float32, as
    inputs are: a value is in range when it is within the range's bounds rounded to float32
    (where a request's in-range value can land). Names the first bad row, the feature and
    the range, no value."""
    for name, bounds in spec.ranges.items():
        if name in spec.categorical:  # decoded as a category index; the codes are checked
            continue
        column = data[:, spec.features.index(name)]
        valid = (column >= np.float32(bounds.min)) & (column <= np.float32(bounds.max))
        if not valid.all():
            raise ModelConfigError(
                path,
                "x",
                f"row {int(np.argmin(valid))} of feature {name!r} is outside its range"
                f" [{bounds.min}, {bounds.max}] (tabular.ranges)",
            )
