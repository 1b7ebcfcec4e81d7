"""Service errors survive pickling (Ray hands an actor's exception to the driver so)."""

from __future__ import annotations

import pickle

import pytest

from models.errors import (
    DeviceOutOfMemory,
    ErrorItem,
    InvalidInput,
    ModelOutputNotFinite,
    ServiceError,
)


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("bad row", [ErrorItem(("data", 3, "age"), "must be a number")]),
        ModelOutputNotFinite("row 3: the model returned NaN"),
        DeviceOutOfMemory("model 'x' does not fit in device memory"),
    ],
)
def test_a_service_error_pickles_to_the_same_error(error: ServiceError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.detail, copy.errors, copy.status) == (error.detail, error.errors, error.status)
