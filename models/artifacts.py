"""Load a model artifact without unpickling: TorchScript, torch.export, or safetensors.

`torch.jit.load` reads TorchScript archives with TorchScript's own restricted unpickler and
refuses plain `torch.save` pickles; safetensors holds tensors and no code. A `.pt` pickle
that carries code is never executed.

`torch.export.load` is not safe on its own (it unpickles, evaluates and runs parts of an
archive): an export archive is read once into memory and checked first
(`models.export_archive`), and the checked bytes are what torch then loads.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.export_archive import ArchiveRefused, check_export_archive
from models.spec import ModelConfigError, ModelSpec, check_artifact_size


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


def _load_export(path: Path) -> torch.nn.Module:
    data = path.read_bytes()
    try:
        check_export_archive(path.name, data)
    except ArchiveRefused as refused:
        raise ArtifactError(str(refused)) from None
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
    factory = _resolve_factory(spec_path, spec.factory)
    try:
        module = factory()
    except Exception as exc:  # the factory's own error
        raise ModelConfigError(
            spec_path, "factory", f"{spec.factory!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ModelConfigError(
            spec_path,
            "factory",
            f"{spec.factory!r} returned {type(module).__name__}, not a torch.nn.Module",
        )
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
    if not path.exists():
        raise ModelConfigError(spec_path, "artifact", f"file {spec.artifact!r} not found")
    if not path.is_file():
        raise ModelConfigError(spec_path, "artifact", f"{spec.artifact!r} is not a regular file")
    check_artifact_size(path, spec_path, "artifact")
    if spec.format == "torchscript":
        module = _load_torchscript(path)
    elif spec.format == "export":
        module = _load_export(path)
    else:
        module = _load_safetensors(path, spec, spec_path)
    if isinstance(module, torch.nn.Module) and not isinstance(module, torch.fx.GraphModule):
        module.eval()
    return module
