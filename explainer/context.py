"""What every method receives: the model, the engine, the batch, targets, options, seed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from explainer.engine import Engine
from explainer.options import ExplainOptions
from explainer.result import UNITS_SCORE
from models.errors import ErrorItem, InvalidInput, ModelOutputNotFinite
from models.handle import ModelHandle


@dataclass
class MethodContext:
    """One request's inputs, shared by the methods it asks for."""

    handle: ModelHandle
    engine: Engine
    inputs: torch.Tensor  # (N, F) or (N, C, H, W), input space, on the device
    targets: list[int]  # the explained class of each instance
    scores: np.ndarray  # (N,) the model's target score of each instance
    options: ExplainOptions
    seed: int
    # Shared between methods of one request (segmentations, LIME's neighbourhood).
    shared: dict[str, object] = field(default_factory=dict)

    @property
    def score_kind(self) -> str:
        return "logit" if self.handle.spec.output == "logits" else "probability"

    @property
    def units(self) -> str:
        return UNITS_SCORE

    @property
    def is_image(self) -> bool:
        return self.handle.is_image

    @cached_property
    def target_tensor(self) -> torch.Tensor:
        return torch.tensor(self.targets, dtype=torch.long, device=self.inputs.device)

    def background(self, method: str) -> torch.Tensor:
        """The model's background data, or a 422 naming the method that needs it."""
        if self.handle.background is None:
            raise InvalidInput(f"method {method!r} needs the model's background.npz")
        return self.handle.background

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model as captum sees it: input space -> raw outputs, through the engine."""
        return self.engine.forward(self.handle, x)


@contextlib.contextmanager
def perturbing(index: int) -> Iterator[None]:
    """Work on the context's instance `index` alone: when the model's outputs for the samples
    built around it are NaN or infinite, the error names it (`["instances", index]`).

    It is the first instance where that happened; the ones after it were not tried.
    """
    try:
        yield
    except ModelOutputNotFinite as error:
        if error.errors:
            raise
        item = ErrorItem(
            ("instances", index),
            "the model's outputs for samples perturbed around this instance are NaN or"
            " infinite (later instances were not tried)",
        )
        raise ModelOutputNotFinite(error.detail, [item]) from None


def to_map(attributions: torch.Tensor, is_image: bool) -> list[np.ndarray]:
    """`(N, F)` -> N vectors; `(N, C, H, W)` -> N `(H, W)` maps with channels summed."""
    array = attributions.detach().float().cpu().numpy()
    if is_image:
        array = array.sum(axis=1)
    return [np.asarray(row, dtype=np.float64) for row in array]
