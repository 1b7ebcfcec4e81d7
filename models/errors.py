"""Exceptions that carry their HTTP status (KServe style), shared by every layer.

They live in `models` because both `explainer` and `api` may import it; `api` turns
them into RFC 9457 problem responses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ErrorItem:
    """One problem with a request: where (`loc`) and what (`msg`)."""

    loc: tuple[str | int, ...]
    msg: str

    def about_instance(self, where: Callable[[int], tuple[str | int, ...]]) -> ErrorItem:
        """An item at `["instances", k, ...]` moved to `[*where(k), ...]`; others as they are."""
        loc = self.loc
        if len(loc) >= 2 and loc[0] == "instances" and isinstance(loc[1], int):
            return ErrorItem((*where(loc[1]), *loc[2:]), self.msg)
        return self


@dataclass
class ServiceError(Exception):
    """Base class: a title, a detail and the HTTP status it maps to."""

    detail: str
    errors: list[ErrorItem] = field(default_factory=list)
    status = 500
    title = "Internal error"

    def __str__(self) -> str:
        return self.detail

    def __reduce__(self) -> tuple[type[ServiceError], tuple[str, list[ErrorItem]]]:
        # Exception's own pickling passes `args`, which a dataclass leaves empty; Ray
        # pickles an actor's exception to hand it to the driver.
        return type(self), (self.detail, self.errors)


class InvalidInput(ServiceError):
    """The request's content cannot be used (shape, type, value, format)."""

    status = 422
    title = "Invalid input"


class ModelOutputNotFinite(ServiceError):
    """The model's outputs (or gradients) for this input or its perturbations are NaN or
    infinite, so no explanation of them can be computed or written as JSON."""

    status = 422
    title = "Model output not finite"


class LimitExceeded(ServiceError):
    """A configured limit (pixels, instances, samples...) was exceeded."""

    status = 422
    title = "Limit exceeded"


class PayloadTooLarge(ServiceError):
    """The body or an uploaded file is larger than allowed."""

    status = 413
    title = "Payload too large"


class NotFound(ServiceError):
    """A model, explanation or job that does not exist (or is not the caller's)."""

    status = 404
    title = "Not found"


class NotYet(ServiceError):
    """What was asked for does not exist yet, though its resource does (an audit's report
    before its first rows are stored)."""

    status = 409
    title = "Not available yet"


class ModelNotReady(ServiceError):
    """The model failed to load or is still loading."""

    status = 503
    title = "Model not ready"


class DeviceOutOfMemory(ServiceError):
    """The device ran out of memory even at the smallest chunk size."""

    status = 503
    title = "Device out of memory"


class TimeLimitExceeded(ServiceError):
    """A request ran past the configured time limit (its late computation is stopped)."""

    status = 504
    title = "Time limit exceeded"
