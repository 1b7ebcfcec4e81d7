"""Cooperative cancellation: a computation whose caller gave up stops at its next model call.

The API's time limit (`api.overload`) runs each explain or predict request inside
`cancellable(event)` and sets the event when the caller has had its 504. The engine calls
`raise_if_cancelled` before every model call, so the late computation stops within one
model call (one chunk) and frees the device and its admission slot, instead of running to
the end for a result nobody reads. A model call itself is one C++ call and is never
interrupted. Code outside such a block (audits, the CLI, warm-up) is never cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from models.errors import TimeLimitExceeded

_cancel_event: ContextVar[threading.Event | None] = ContextVar("cancel_event", default=None)


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Within the block, model calls stop with `TimeLimitExceeded` once `event` is set."""
    token = _cancel_event.set(event)
    try:
        yield
    finally:
        _cancel_event.reset(token)


def raise_if_cancelled() -> None:
    """Raise `TimeLimitExceeded` when the current computation's caller has given up."""
    event = _cancel_event.get()
    if event is not None and event.is_set():
        raise TimeLimitExceeded("the computation was stopped: its request's time limit passed")
