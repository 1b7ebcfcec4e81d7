"""ModelRepository: one subdirectory per model, each with a `model.toml` (DESIGN 3.1).

A model whose `model.toml` or artifact is bad is recorded in `errors` with a message naming
the file and key; the other models still load. Names are looked up in the registry, never
joined onto a path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path

import torch

from models.artifacts import ArtifactError
from models.errors import NotFound
from models.handle import ModelHandle
from models.spec import ModelConfigError, parse_model_toml

log = logging.getLogger(__name__)

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MODEL_REPO_ENV = "EXPLAINER_MODEL_REPO"


def default_repository_path() -> Path:
    """`EXPLAINER_MODEL_REPO` when set, else the built-in zoo."""
    configured = os.environ.get(MODEL_REPO_ENV)
    return Path(configured) if configured else ZOO_DIR


class ModelRepository:
    """The models of one directory, loaded onto one device."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.handles: dict[str, ModelHandle] = {}
        self.errors: dict[str, str] = {}

    def load(
        self, device: torch.device | str = "cpu", only: Collection[str] | None = None
    ) -> ModelRepository:
        """Parse and load every model (or those named in `only`); bad ones go to `errors`.

        Returns self. Every model.toml is parsed (it is small), so a duplicate name is still
        reported; only the named models' weights are read.
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a directory")
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            spec_path = directory / "model.toml"
            if not spec_path.is_file():
                continue
            try:
                spec = parse_model_toml(spec_path)
                if spec.name in self.handles:
                    raise ModelConfigError(spec_path, "name", f"duplicate model name {spec.name!r}")
                if only is not None and spec.name not in only:
                    continue
                self.handles[spec.name] = ModelHandle(directory, spec).load(device)
            except (ModelConfigError, ArtifactError) as exc:
                self.errors[directory.name] = str(exc)
                log.error("model not loaded: %s", exc)
        return self

    def get(self, name: str) -> ModelHandle:
        """The loaded model called `name`, or NotFound."""
        handle = self.handles.get(name)
        if handle is None:
            raise NotFound(f"no model named {name!r}")
        return handle

    def names(self) -> list[str]:
        return sorted(self.handles)
