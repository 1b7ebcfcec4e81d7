"""Explaining emits no library warnings: in a server they would repeat on every request."""

from __future__ import annotations

import warnings

import pytest

from explainer import explain
from explainer.explain import available_methods
from models import ModelHandle


@pytest.mark.parametrize("name", ["logistic", "squares"])
def test_every_method_runs_without_warnings(
    known_models: dict[str, ModelHandle], name: str
) -> None:
    handle = known_models[name]
    assert handle.background is not None
    inputs = handle.background[:2].clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = explain(handle, inputs, available_methods(handle))
    assert all(set(r.methods) == set(available_methods(handle)) for r in result)
