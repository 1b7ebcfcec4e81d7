"""ModelRepository: one subdirectory per model, each with a `model.toml` (DESIGN 3.1).

A model that cannot serve (a bad `model.toml`, an artifact or background that does not load,
an artifact that does not take the spec's input) is recorded in `errors` with a message
naming the file and key where known; the other models still load. Names are looked up in the
registry, never joined onto a path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path

import torch

from models.artifacts import ArtifactError
from models.errors import InvalidInput, ModelNotReady, NotFound
from models.handle import BACKGROUND_FILE, ModelHandle
from models.spec import ModelConfigError, parse_model_toml

log = logging.getLogger(__name__)

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MODEL_REPO_ENV = "EXPLAINER_MODEL_REPO"
# Background rows run through the model at load, with one zero instance.
CHECKED_BACKGROUND_ROWS = 7


def default_repository_path() -> Path:
    """`EXPLAINER_MODEL_REPO` when set, else the built-in zoo."""
    configured = os.environ.get(MODEL_REPO_ENV)
    return Path(configured) if configured else ZOO_DIR


def failure_reason(exc: BaseException) -> str:
    """`Type: message` in one line (TorchScript's own last line after its code traceback)."""
    lines = str(exc).strip().splitlines()
    if len(lines) > 1:
        return lines[-1].strip()
    return f"{type(exc).__name__}: {exc}"


def _check_forward(handle: ModelHandle) -> ModelHandle:
    """Run a spec-shaped batch through the model; returns `handle`.

    The batch is one zero instance and the first background rows (two zero instances without
    a background). Raises ModelConfigError when the artifact does not take the input that
    `model.toml` describes, does not give one floating-point output per class for each
    instance of a batch, gives NaN or infinite outputs for its own background, or gives
    outputs that cannot be the probabilities it declares, so the mismatch is found at load and
    never by a request.
    """
    spec_path = handle.directory / "model.toml"
    key = "image" if handle.is_image else "tabular.features"
    batch = _check_batch(handle)
    assert handle.module is not None  # loaded
    try:
        with torch.inference_mode():
            outputs = handle.module(handle.normalise(batch))
    except Exception as exc:  # the artifact's own error: a shape mismatch, a missing op...
        raise ModelConfigError(
            spec_path,
            key,
            f"the artifact fails on an input of shape {tuple(batch.shape)}: {failure_reason(exc)}",
        ) from None
    if not isinstance(outputs, torch.Tensor) or not outputs.is_floating_point():
        kind = outputs.dtype if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ModelConfigError(
            spec_path, "output", f"the artifact gives {kind}, not a floating-point tensor"
        )
    expected = (len(batch), len(handle.spec.classes))
    if tuple(outputs.shape) != expected:
        raise ModelConfigError(
            spec_path,
            "classes",
            f"the artifact gives outputs of shape {tuple(outputs.shape)} for {len(batch)}"
            f" instances, not {expected}",
        )
    outputs = outputs.float()
    finite = torch.isfinite(outputs).all(dim=1)
    if handle.background is not None and not bool(finite[1:].all()):
        row = int(torch.argmin(finite[1:].int()))
        raise ModelConfigError(
            spec_path, "output", f"NaN or infinite outputs for row {row} of {BACKGROUND_FILE}"
        )
    if handle.spec.output == "probabilities":
        wrong = [i for i, row in enumerate(outputs) if not _are_probabilities(row)]
        if wrong:
            raise ModelConfigError(
                spec_path,
                "output",
                f"is 'probabilities', but the artifact's outputs for {_which(handle, wrong[0])}"
                " are not in [0, 1] or do not sum to 1: logits?",
            )
    return handle


def _check_batch(handle: ModelHandle) -> torch.Tensor:
    """The batch `_check_forward` runs: a zero instance, then background rows (or another
    zero instance), so that a model that cannot take a batch is caught too."""
    zero = torch.zeros((1, *handle.input_shape), device=handle.device)
    if handle.background is None:
        return torch.cat([zero, zero])
    return torch.cat([zero, handle.background[:CHECKED_BACKGROUND_ROWS]])


def _which(handle: ModelHandle, index: int) -> str:
    """Row `index` of the `_check_batch` batch, in words."""
    if index == 0 or handle.background is None:
        return "an all-zero instance"
    return f"row {index - 1} of {BACKGROUND_FILE}"


def _check_inside(root: Path, path: Path, where: Path, key: str = "<file>") -> None:
    """Raise ModelConfigError (naming `where` and `key`) when `path` exists but resolves
    outside the repository `root` (a symlink out of it, or a model folder that is one): only
    files of the configured repository are loaded. The link's target is not shown."""
    if path.exists() and not path.resolve().is_relative_to(root):
        raise ModelConfigError(
            where, key, f"{path.name} resolves outside the model repository (a symlink?)"
        )


def _check_spec_needs(handle: ModelHandle) -> ModelHandle:
    """Raise ModelConfigError for `model.toml` values that the loaded model cannot honour:
    an example that does not decode, a default baseline without what it needs, a Grad-CAM
    layer the model does not have. Returns `handle`."""
    spec, spec_path = handle.spec, handle.directory / "model.toml"
    if spec.example is not None:
        try:
            handle.decode([spec.example])
        except InvalidInput as exc:
            reasons = "; ".join(item.msg for item in exc.errors) or exc.detail
            raise ModelConfigError(spec_path, "example", f"does not decode: {reasons}") from None
    if handle.background is None and spec.default_baseline == "mean":
        raise ModelConfigError(spec_path, "default_baseline", f"'mean' needs {BACKGROUND_FILE}")
    if handle.background is None and spec.default_baseline == "uniform" and spec.tabular:
        unranged = spec.tabular.unranged_features
        if unranged:
            raise ModelConfigError(
                spec_path,
                "default_baseline",
                f"'uniform' needs {BACKGROUND_FILE} or [tabular.ranges] for {unranged}",
            )
    layer = spec.image.gradcam_layer if spec.image else None
    if layer and handle.module is not None and handle.exposes_layers:
        try:
            handle.module.get_submodule(layer)
        except AttributeError:
            raise ModelConfigError(spec_path, "image.gradcam_layer", "no such layer") from None
    return handle


def _are_probabilities(row: torch.Tensor) -> bool:
    row = row.double()
    return bool(((row >= 0) & (row <= 1)).all()) and abs(float(row.sum()) - 1.0) <= 1e-3


class ModelRepository:
    """The models of one directory, loaded onto one device."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.handles: dict[str, ModelHandle] = {}
        # Why each model that does not serve failed, keyed by its directory's name.
        self.errors: dict[str, str] = {}
        # Name -> key in `errors`, for failed models whose model.toml gave a name.
        self._failed: dict[str, str] = {}

    def load(
        self, device: torch.device | str = "cpu", only: Collection[str] | None = None
    ) -> ModelRepository:
        """Parse and load every model (or those named in `only`); bad ones go to `errors`.

        Returns self. Every model.toml is parsed (it is small), so a duplicate name is still
        reported; only the named models' weights are read. Each loaded model runs one
        dummy instance (`_check_forward`).
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a directory")
        root = self.root.resolve()
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            spec_path = directory / "model.toml"
            if not spec_path.is_file():
                continue
            try:
                _check_inside(root, spec_path, spec_path)
                spec = parse_model_toml(spec_path)
            except ModelConfigError as exc:
                self._record(directory, None, str(exc))
                continue
            except Exception as exc:  # e.g. a model.toml that is not UTF-8
                self._record(directory, None, f"{spec_path}: {failure_reason(exc)}")
                continue
            if spec.name in self.handles:
                duplicate = ModelConfigError(
                    spec_path, "name", f"duplicate model name {spec.name!r}"
                )
                self._record(directory, None, str(duplicate))
                continue
            if only is not None and spec.name not in only:
                continue
            try:
                _check_inside(root, directory / spec.artifact, spec_path, "artifact")
                _check_inside(root, directory / BACKGROUND_FILE, directory / BACKGROUND_FILE)
                handle = ModelHandle(directory, spec).load(device)
                self.handles[spec.name] = _check_spec_needs(_check_forward(handle))
            except (ModelConfigError, ArtifactError) as exc:
                self._record(directory, spec.name, str(exc))
            except Exception as exc:  # np.load alone raises ValueError, OSError, EOFError...
                where = f"{directory}: reading {spec.artifact} or {BACKGROUND_FILE} failed"
                self._record(directory, spec.name, f"{where}: {failure_reason(exc)}")
        return self

    def fail(self, handle: ModelHandle, reason: str) -> None:
        """Take a loaded model out of service: it moves to `errors` with `reason`."""
        del self.handles[handle.name]
        self._record(handle.directory, handle.name, reason)

    def _record(self, directory: Path, name: str | None, reason: str) -> None:
        self.errors[directory.name] = reason
        if name is not None:
            self._failed[name] = directory.name
        log.error("model not served: %s", reason)

    def get(self, name: str) -> ModelHandle:
        """The loaded model called `name`; ModelNotReady (with the reason) when it failed to
        load, NotFound when no model has that name."""
        handle = self.handles.get(name)
        if handle is not None:
            return handle
        failed = self._failed.get(name)
        if failed is not None:
            raise ModelNotReady(f"model {name!r} failed to load: {self.errors[failed]}")
        raise NotFound(f"no model named {name!r}")

    def names(self) -> list[str]:
        return sorted(self.handles)
