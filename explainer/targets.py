"""Targets: which class's score an explanation is about."""

from __future__ import annotations

import numpy as np
import torch

from explainer.result import Prediction, Target
from models.errors import ErrorItem, InvalidInput
from models.handle import ModelHandle

PREDICTED = "predicted"


def resolve_target(handle: ModelHandle, target: str | int) -> int | None:
    """Validate a target before any model call: None for "predicted", else a class index."""
    classes = handle.spec.classes
    if isinstance(target, bool):
        raise InvalidInput(
            "target must be 'predicted', a class index or a class label",
            [ErrorItem(("target",), "must not be a boolean")],
        )
    if isinstance(target, int):
        if not 0 <= target < len(classes):
            raise InvalidInput(
                "target class index out of range",
                [ErrorItem(("target",), f"must be between 0 and {len(classes) - 1}")],
            )
        return target
    if target == PREDICTED:
        return None
    if target in classes:
        return classes.index(target)
    raise InvalidInput(
        "unknown target class",
        [ErrorItem(("target",), f"must be 'predicted', an index or one of {list(classes)}")],
    )


def predictions_from_outputs(handle: ModelHandle, outputs: torch.Tensor) -> list[Prediction]:
    """Raw outputs `(N, classes)` -> one Prediction per row."""
    probabilities = handle.probabilities(outputs).detach().cpu()
    indices = probabilities.argmax(dim=1).tolist()
    classes = handle.spec.classes
    return [
        Prediction(index=i, label=classes[i], probabilities=[float(p) for p in row])
        for i, row in zip(indices, probabilities.tolist(), strict=True)
    ]


def target_indices(predictions: list[Prediction], resolved: int | None) -> list[int]:
    """The explained class of each instance."""
    return [p.index if resolved is None else resolved for p in predictions]


def as_target(handle: ModelHandle, index: int) -> Target:
    return Target(index=index, label=handle.spec.classes[index])


def complementary_scores(handle: ModelHandle) -> bool:
    """Whether the model's two class scores are complementary probabilities (p0 = 1 - p1)."""
    return handle.spec.num_classes == 2 and handle.spec.output == "probabilities"


def toward_class(
    values: np.ndarray, target: int, wanted: int, complementary: bool
) -> np.ndarray | None:
    """Attributions toward class `target`, read toward class `wanted`.

    As they are when it is the same class; negated when the two scores are complementary
    (every additive attribution of p0 = 1 - p1 is minus that of p1); else None: two free
    logits (the log-odds are their difference, which one class's attributions do not
    give) or more classes say nothing about the other class.
    """
    if target == wanted:
        return values
    return -values if complementary else None
