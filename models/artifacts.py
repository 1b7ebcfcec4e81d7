"""Load a model artifact without unpickling: TorchScript, torch.export, or safetensors.

`torch.jit.load` reads TorchScript archives with TorchScript's own restricted unpickler and
refuses plain `torch.save` pickles; safetensors holds tensors and no code. A `.pt` pickle
that carries code is never executed.

`torch.export.load` is not safe on its own: an archive may hold pickled weights or constants,
pickled ("opaque") objects, compiled AOTInductor libraries, or sample inputs that it retries
with `weights_only=False`, and it falls back to a pre-2.7 format. So an export archive is
read once into memory and checked first: only the program's JSON, its weights and tensor
constants as raw bytes, sample inputs that load with `weights_only=True` and extra files
(bytes) are accepted; the checked bytes are what torch then loads.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.spec import ModelConfigError, ModelSpec


class ArtifactError(ValueError):
    """The artifact is missing, of the wrong kind, or does not load."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_torchscript_archive(path: Path) -> bool:
    """A TorchScript archive is a zip holding `<root>/code/` and `<root>/constants.pkl`."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    has_code = any("/code/" in name for name in names)
    has_constants = any(name.endswith("/constants.pkl") for name in names)
    return has_code and has_constants


def _load_torchscript(path: Path) -> torch.nn.Module:
    if not _is_torchscript_archive(path):
        raise ArtifactError(
            f"{path.name} is not a TorchScript archive (plain pickles are refused; "
            "export with torch.jit.script/trace and torch.jit.save)"
        )
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise ArtifactError(f"{path.name}: not a loadable TorchScript archive: {exc}") from None


# The entries an export archive may hold, below its root folder.
_EXPORT_ENTRIES = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/sample_inputs/model\.pt|extra/[^/]+"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
)
# Each weights or constants config entry's file, stored as raw bytes (not pickled).
_RAW_PAYLOAD = {"weights": re.compile(r"weight_\d+"), "constants": re.compile(r"tensor_\d+")}


def _check_export_archive(name: str, data: bytes) -> None:
    """Raise ArtifactError unless the archive holds nothing that loading would unpickle or
    run (see the module docstring)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ArtifactError(f"{name} is not a torch.export archive (not a zip file)") from None
    with archive:
        entries = [entry for entry in archive.namelist() if not entry.endswith("/")]
        roots = {entry.split("/", 1)[0] for entry in entries}
        if len(roots) != 1 or any("/" not in entry for entry in entries):
            raise ArtifactError(f"{name} is not a torch.export archive (one root folder)")
        root = roots.pop()
        for entry in entries:
            if not _EXPORT_ENTRIES.fullmatch(entry.removeprefix(f"{root}/")):
                raise ArtifactError(
                    f"{name}: {entry!r} is refused: only programs saved by torch.export.save"
                    " with plain tensor weights are loaded (no pickled objects, compiled"
                    " libraries or pre-2.7 archives)"
                )
        for kind, payload in _RAW_PAYLOAD.items():
            config = f"{root}/data/{kind}/model_{kind}_config.json"
            if config in entries:
                _check_payload_config(name, archive.read(config), payload)
        sample_inputs = f"{root}/data/sample_inputs/model.pt"
        if sample_inputs in entries:
            try:
                torch.load(io.BytesIO(archive.read(sample_inputs)), weights_only=True)
            except Exception:  # torch raises several types for a refused pickle
                raise ArtifactError(
                    f"{name}: its sample inputs are not plain tensors (they would have to be"
                    " unpickled); export with tensor example inputs"
                ) from None


def _check_payload_config(name: str, text: bytes, payload: re.Pattern[str]) -> None:
    """Every weight or constant is stored raw, in a file of the expected kind."""
    try:
        entries = json.loads(text)["config"].values()
        raw = all(e["use_pickle"] is False and payload.fullmatch(e["path_name"]) for e in entries)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ArtifactError(
            f"{name}: its weights or constants configuration is unreadable"
        ) from None
    if not raw:
        raise ArtifactError(
            f"{name}: pickled weights, constants or objects are refused; export plain tensors"
        )


def _load_export(path: Path) -> torch.nn.Module:
    data = path.read_bytes()
    _check_export_archive(path.name, data)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as exc:  # torch raises several types for a bad archive
        raise ArtifactError(f"{path.name}: not a loadable torch.export archive: {exc}") from None
    return program.module()


def _resolve_factory(spec_path: Path, factory: str) -> Callable[[], torch.nn.Module]:
    module_name, _, function_name = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)
    except (ImportError, AttributeError) as exc:
        raise ModelConfigError(spec_path, "factory", f"cannot import {factory!r}: {exc}") from None
    if not callable(function):
        raise ModelConfigError(spec_path, "factory", f"{factory!r} is not callable")
    return function


def _load_safetensors(path: Path, spec: ModelSpec, spec_path: Path) -> torch.nn.Module:
    assert spec.factory is not None  # enforced by ModelSpec
    module = _resolve_factory(spec_path, spec.factory)()
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error type
        raise ArtifactError(f"{path.name}: not a safetensors file: {exc}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{path.name}: weights do not fit the factory's module: {exc}"
        ) from None
    return module


def load_artifact(directory: Path, spec: ModelSpec) -> torch.nn.Module:
    """Load the artifact named by `spec` from `directory`, on the CPU, in eval mode."""
    spec_path = directory / "model.toml"
    path = directory / spec.artifact
    if not path.is_file():
        raise ModelConfigError(spec_path, "artifact", f"file {spec.artifact!r} not found")
    if spec.format == "torchscript":
        module = _load_torchscript(path)
    elif spec.format == "export":
        module = _load_export(path)
    else:
        module = _load_safetensors(path, spec, spec_path)
    if isinstance(module, torch.nn.Module) and not isinstance(module, torch.fx.GraphModule):
        module.eval()
    return module
