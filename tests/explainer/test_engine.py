"""One batched path: model calls are counted and chunked; out-of-memory halves the chunk."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from explainer import Engine, ExplainOptions, explain
from explainer.cancellation import cancellable
from explainer.engine import RECOVERY_CALLS, default_device
from models import ModelHandle
from models.errors import DeviceOutOfMemory, TimeLimitExceeded
from tests.conftest import block_image

X = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7]])


@pytest.mark.parametrize("name", ["logistic", "block"])
def test_lime_with_1000_samples_calls_the_model_per_chunk(
    known_models: dict[str, ModelHandle],
    counted,
    name: str,  # type: ignore[no-untyped-def]
) -> None:
    chunk = 128
    counter = counted(name)
    inputs = X if name == "logistic" else torch.from_numpy(block_image()[None])
    engine = Engine("cpu", chunk_size=chunk)
    explain(known_models[name], inputs, ["lime"], options=ExplainOptions(), engine=engine)
    lime_calls = counter.calls - 1  # one shared forward pass gives the prediction
    assert lime_calls <= math.ceil(1000 / chunk)
    assert counter.rows == 1 + 1000


@pytest.mark.parametrize(
    "method",
    ["saliency", "integrated_gradients", "shap", "lime", "tree", "smoothgrad", "occlusion"],
)
@pytest.mark.parametrize("name", ["logistic", "block"])
def test_no_method_calls_the_model_once_per_sample(
    known_models: dict[str, ModelHandle],
    counted,
    name: str,
    method: str,  # type: ignore[no-untyped-def]
) -> None:
    chunk = 256
    counter = counted(name)
    inputs = (
        torch.cat([X, X * 0.5]) if name == "logistic" else torch.from_numpy(block_image()[None])
    )
    explain(known_models[name], inputs, [method], engine=Engine("cpu", chunk_size=chunk))
    # Full chunks plus a few fixed calls: the prediction, captum's convergence check, and
    # shap's Partition explainer, which evaluates its hierarchy one level at a time.
    assert counter.calls <= math.ceil(counter.rows / chunk) + 8, (counter.calls, counter.rows)
    if counter.rows > 50:
        assert counter.rows / counter.calls > 10


def test_out_of_memory_halves_the_chunk_and_retries(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
) -> None:
    handle = known_models["logistic"]
    counted("logistic", fail_above=60)
    engine = Engine("cpu", chunk_size=256)
    reference = explain(handle, X, ["lime", "integrated_gradients"], seed=1)[0]
    result = explain(handle, X, ["lime", "integrated_gradients"], seed=1, engine=engine)[0]
    assert engine.chunk_for(handle) == 32  # 256 -> 128 -> 64 -> 32
    assert engine.chunk_for(handle, gradients=True) == 256  # IG's 50 rows fit
    for name in ("lime", "integrated_gradients"):
        np.testing.assert_allclose(
            result.methods[name].attributions, reference.methods[name].attributions, atol=1e-6
        )


def test_chunk_grows_back_after_the_memory_shortage_passes(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
) -> None:
    module = counted("logistic", fail_above=60)
    handle = known_models["logistic"]
    rows = X.expand(300, -1).contiguous()
    engine = Engine("cpu", chunk_size=256)
    engine.evaluate(handle, rows)
    assert engine.chunk_for(handle) == 32
    module.fail_above = None  # the other process has freed the GPU
    seen = []
    for _ in range(3 * RECOVERY_CALLS + 5):
        engine.evaluate(handle, rows)
        seen.append(engine.chunk_for(handle))
    assert sorted(set(seen)) == [32, 64, 128, 256]  # doubled every RECOVERY_CALLS calls
    assert seen[-1] == 256 and ("logistic", False) not in engine.chunk_ceilings  # recovered
    module.fail_above = 100  # short again: lowered again, and the ceiling is kept
    engine.evaluate(handle, rows)
    assert engine.chunk_for(handle) == 64 and engine.chunk_ceilings[("logistic", False)] == 256


def test_out_of_memory_at_chunk_one_is_a_503(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
) -> None:
    counted("logistic", fail_above=0)
    with pytest.raises(DeviceOutOfMemory) as error:
        Engine("cpu", chunk_size=8).evaluate(known_models["logistic"], X)
    assert error.value.status == 503


def test_out_of_memory_at_one_row_gives_the_model_its_chunk_back(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
) -> None:
    """A request too large for the device fails alone: later ones get the chunk the model
    had when it came (not its ceiling, which may be what failed before)."""
    module = counted("logistic", fail_above=60)
    handle = known_models["logistic"]
    engine = Engine("cpu", chunk_size=256)
    engine.evaluate(handle, X.expand(300, -1).contiguous())
    assert engine.chunk_for(handle) == 32  # a passing shortage: 256 -> 128 -> 64 -> 32
    module.fail_above = 0  # then not even one row fits
    with pytest.raises(DeviceOutOfMemory):
        engine.evaluate(handle, X)
    assert engine.chunk_for(handle) == 32 and engine.chunk_ceilings[("logistic", False)] == 256
    module.fail_above = None
    calls = module.calls
    engine.evaluate(handle, X.expand(300, -1).contiguous())
    assert module.calls - calls == 10  # 32 rows per call, not 300 calls of one row


def test_a_given_up_computation_stops_before_its_next_model_call(
    known_models: dict[str, ModelHandle],
    counted,  # type: ignore[no-untyped-def]
) -> None:
    module = counted("logistic")
    handle = known_models["logistic"]
    given_up = threading.Event()
    original = module.forward

    def give_up_after_three_calls(x: torch.Tensor) -> torch.Tensor:
        if module.calls == 2:
            given_up.set()  # what the API's time limit does while the third call runs
        return original(x)  # type: ignore[no-any-return]

    module.forward = give_up_after_three_calls
    engine = Engine("cpu", chunk_size=64, cache_entries=0)  # the second call predicts anew
    with cancellable(given_up), pytest.raises(TimeLimitExceeded) as error:
        explain(handle, X, ["lime"], engine=engine)  # 1000 samples: 16 calls of 64 rows
    assert module.calls == 3 and error.value.status == 504
    explain(handle, X, ["lime"], engine=engine)  # outside the block nothing is cancelled
    assert module.calls == 3 + 1 + 16


def test_device_defaults_to_cuda_when_available_and_is_overridable() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device().type == expected
    assert Engine().device.type == expected
    assert Engine("cpu").device.type == "cpu"
    assert not Engine("cpu", autocast=True).autocast  # mixed precision only on CUDA


def test_a_device_this_machine_lacks_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda' was asked for, but CUDA is not available"):
        Engine("cuda", keep_freed_memory=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="device 'cuda:2' does not exist: this machine has 2"):
        Engine("cuda:2", keep_freed_memory=False)
    assert Engine("cuda:1", keep_freed_memory=False).device == torch.device("cuda:1")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        Engine("gpu", keep_freed_memory=False)
