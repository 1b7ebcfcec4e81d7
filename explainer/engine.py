"""The Engine: owns the device and runs every model evaluation, in chunks.

Every method reaches the model through `Engine.forward` (with gradients, for captum) or
`Engine.evaluate` (inference mode, for perturbation methods), so model calls are counted
in one place, chunked, and retried with half the chunk when the device runs out of memory
(the chunk grows back after a run of successful evaluations, and at once when a call of one
row fails too). Each model has two chunk sizes, tuned apart: one for calls without
gradients and one for calls with them, which hold their activations for the backward pass
and may run through another module.
Calls without gradients to an image model run through its frozen copy on the CPU
(`explainer.inference_copy`); every call first checks that its request has not been given
up (`explainer.cancellation`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch

from explainer import memory
from explainer.cache import LruCache
from explainer.cancellation import raise_if_cancelled
from explainer.chunk_tuning import fastest_chunk
from explainer.inference_copy import inference_copy
from models.errors import DeviceOutOfMemory, ErrorItem, ModelOutputNotFinite
from models.handle import ModelHandle

log = logging.getLogger(__name__)

T = TypeVar("T")

# Candidate chunk sizes tried by `Engine.tune`, smallest first. 8 is for large images: a
# ResNet-18 at 224x224 ran 13% faster per image on the CPU in calls of 8 than of 16.
TUNE_CHUNKS = (8, 16, 64, 256, 1024, 4096, 16384)
TUNE_SECONDS = 0.15  # time spent measuring each candidate, at least TUNE_CALLS calls
TUNE_CALLS = 3
TUNE_MAX_BYTES = 32 * 1024**2  # largest input chunk tried, in bytes
# Successful evaluations at a lowered chunk before twice that chunk is tried again, so a
# passing memory shortage (another process on the GPU) does not slow a model for good.
RECOVERY_CALLS = 64

# Builds the input-space rows [start, stop) of a perturbation set, on demand.
ChunkSource = Callable[[int, int], torch.Tensor]
# A model's chunk: (model name, True for calls with gradients).
ChunkKey = tuple[str, bool]


class TunedChunks(NamedTuple):
    """A model's tuned rows per call: without gradients, and with them."""

    inference: int
    gradients: int


def default_device() -> torch.device:
    """`cuda` when available, else `cpu`."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cuda_devices() -> int:
    """How many CUDA devices this process can use (0 without CUDA); initialises CUDA."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def usable_device(
    device: torch.device | str | None, count_cuda: Callable[[], int] = cuda_devices
) -> torch.device:
    """`device`, or `default_device()` for None; a ValueError naming it when this machine has
    no such device (CUDA asked for without CUDA, or a GPU index past its last GPU).

    `count_cuda` counts the CUDA devices: before gunicorn forks, `torch.cuda.device_count`
    (NVML's count, which leaves CUDA uninitialised for the workers).
    """
    if device is None:
        return default_device()
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {str(device)!r}: {error}") from None
    if chosen.type != "cuda":
        return chosen
    count = count_cuda()
    if count == 0:
        raise ValueError(
            f"device {str(chosen)!r} was asked for, but CUDA is not available on this machine"
            " (choose 'cpu', or leave the device unset to use CUDA only when present)"
        )
    if chosen.index is not None and chosen.index >= count:
        raise ValueError(
            f"device {str(chosen)!r} does not exist: this machine has {count} CUDA device(s),"
            f" cuda:0 to cuda:{count - 1}"
        )
    return chosen


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA's, or a RuntimeError saying so)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class Engine:
    """Batched, device-owning model evaluation shared by every explanation method."""

    def __init__(
        self,
        device: torch.device | str | None = None,
        chunk_size: int = 256,
        autocast: bool = False,
        cache_entries: int = 1024,
        inference_copies: bool = True,
        keep_freed_memory: bool = True,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.device = usable_device(device)
        if keep_freed_memory:  # process-wide (see explainer.memory)
            memory.keep_freed_memory()
        self.chunk_size = chunk_size
        # Mixed precision only where it helps and is supported: CUDA.
        self.autocast = autocast and self.device.type == "cuda"
        # Frozen copies of image models for calls without gradients (CPU only), by model
        # module; None where a model has none (see `explainer.inference_copy`).
        self.inference_copies = inference_copies and self.device.type == "cpu"
        self._copies: weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module | None] = (
            weakref.WeakKeyDictionary()
        )
        self._copies_lock = threading.Lock()
        # Per-model chunk sizes (with and without gradients apart), lowered after an
        # out-of-memory error and raised back towards the chunk they had before it
        # (`chunk_ceilings`) after RECOVERY_CALLS successful evaluations.
        self.chunk_sizes: dict[ChunkKey, int] = {}
        self.chunk_ceilings: dict[ChunkKey, int] = {}
        self._calls_since_lowered: dict[ChunkKey, int] = {}
        # Model calls and rows evaluated (with and without gradients), for tests, metrics
        # and the benchmarks' compute floor.
        self.model_calls = 0
        self.rows_inference = 0
        self.rows_with_grad = 0
        # Serialises explanations on this device: seeded RNG sections stay deterministic.
        self.lock = threading.RLock()
        # Finished explanations, keyed by (model sha256, input hash, method, options, seed,
        # target); 0 entries disables the cache.
        self.explanations: LruCache[Hashable, Any] = LruCache(cache_entries)
        # The model's outputs for those rows, keyed by (model fingerprint, input hash): a
        # request answered from the cache makes no model call for its predictions either.
        self.outputs: LruCache[Hashable, torch.Tensor] = LruCache(cache_entries)
        # Costly per-model objects (lime and shap explainers, segmentations), by model
        # fingerprint.
        self.objects: LruCache[Hashable, Any] = LruCache(256)

    def memo(self, handle: ModelHandle, key: Hashable, build: Callable[[], T]) -> T:
        """A per-model object built once (and kept while recently used)."""
        return self.objects.get_or_build((handle.fingerprint, key), build)

    def chunk_for(self, handle: ModelHandle, gradients: bool = False) -> int:
        """Rows per model call for `handle`, without gradients or with them."""
        return self._chunk((handle.name, gradients))

    def _chunk(self, key: ChunkKey) -> int:
        return self.chunk_sizes.get(key, self.chunk_size)

    def tune(self, handle: ModelHandle, candidates: Sequence[int] = TUNE_CHUNKS) -> TunedChunks:
        """Measure throughput at each candidate chunk size and keep a fast one, twice: for
        calls without gradients (inference mode, the frozen copy where there is one) and
        for forward and backward passes (captum's), whose best chunk differs.

        A model whose outputs have no gradient keeps its inference chunk for both; its
        gradient methods fail when asked, as they would have.
        """
        inference = self._tune(handle, candidates, gradients=False)
        try:
            gradients = self._tune(handle, candidates, gradients=True)
        except RuntimeError as error:
            log.warning("gradient chunk not tuned (%s): %d rows", type(error).__name__, inference)
            gradients = self.chunk_sizes[(handle.name, True)] = inference
        log.info("tuned chunk sizes: %d rows per call, %d with gradients", inference, gradients)
        return TunedChunks(inference, gradients)

    def _tune(self, handle: ModelHandle, candidates: Sequence[int], gradients: bool) -> int:
        """The chunk `chunk_tuning.fastest_chunk` picks from the candidates up to
        TUNE_MAX_BYTES per call (the first always tried); one row when even the first runs
        out of memory."""
        row_bytes = 4 * int(torch.tensor(handle.input_shape).prod())
        sizes = [c for i, c in enumerate(candidates) if i == 0 or c * row_bytes <= TUNE_MAX_BYTES]

        def measure(chunk: int) -> float | None:
            try:  # a fresh input each time: only the one measured holds device memory
                x = torch.rand((chunk, *handle.input_shape), device=self.device)
                return self._throughput(handle, x, gradients)
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not is_out_of_memory(error):
                    raise
                return None

        chosen = fastest_chunk(measure, sizes)
        if chosen is None:
            log.warning("out of memory at %d rows per call while tuning: 1 row", candidates[0])
            chosen = 1
        key = (handle.name, gradients)
        self.chunk_sizes[key] = chosen
        self.chunk_ceilings.pop(key, None)
        return chosen

    def _throughput(self, handle: ModelHandle, x: torch.Tensor, gradients: bool) -> float:
        """Rows per second on `x`: its fastest of at least TUNE_CALLS calls.

        The fastest call, not the mean: a call slowed by another process says nothing
        about the chunk, and large models make few calls in TUNE_SECONDS.
        """

        def call() -> None:
            if gradients:  # input gradients only, as captum asks for them
                leaf = x.detach().requires_grad_(True)
                torch.autograd.grad(self.forward(handle, leaf)[:, 0].sum(), leaf)
            else:
                with torch.inference_mode():
                    self.forward(handle, x)

        times: list[float] = []
        call()  # warm-up
        spent = 0.0
        while len(times) < TUNE_CALLS or spent < TUNE_SECONDS:
            started = time.perf_counter()
            call()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            times.append(time.perf_counter() - started)
            spent += times[-1]
        return len(x) / min(times)

    def forward(self, handle: ModelHandle, x: torch.Tensor) -> torch.Tensor:
        """One model call on an input-space batch -> raw outputs `(N, classes)`.

        Raises `TimeLimitExceeded` instead when the request it serves has been given up.
        """
        raise_if_cancelled()
        self.model_calls += 1
        module = None
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            self.rows_with_grad += len(x)
        else:
            self.rows_inference += len(x)
            module = self.inference_module(handle)
        context = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16)
            if self.autocast
            else nullcontext()
        )
        with context:
            return handle.forward(x, module=module).float()

    def inference_module(self, handle: ModelHandle) -> torch.nn.Module | None:
        """The model's inference-optimised copy (made on first use), or None: the model."""
        module = handle.module
        if not self.inference_copies or module is None:
            return None
        if module in self._copies:  # every call but the first: no lock
            return self._copies[module]
        with self._copies_lock:
            if module not in self._copies:
                self._copies[module] = inference_copy(handle)
            return self._copies[module]

    def with_backoff(
        self, handle: ModelHandle, run: Callable[[int], T], gradients: bool = False
    ) -> T:
        """Call `run(chunk)`; on out-of-memory halve the model's chunk and retry.

        `gradients`: `run` makes forward and backward passes, so the chunk with gradients
        is used, and lowered. Raises `DeviceOutOfMemory` when even one row does not fit, and
        gives the model back the chunk it had when this call began (one request too large
        for the device must not leave every later one at a row per call).
        """
        key = (handle.name, gradients)
        before = self._chunk_state(key)
        while True:
            chunk = self._chunk(key)
            try:
                result = run(chunk)
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not is_out_of_memory(error):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if chunk <= 1:
                    self._restore(key, before)
                    raise DeviceOutOfMemory(
                        f"model {handle.name!r} does not fit in device memory"
                    ) from None
                self.chunk_ceilings.setdefault(key, chunk)
                self._calls_since_lowered[key] = 0
                self.chunk_sizes[key] = chunk // 2
                log.warning("out of memory: model chunk lowered to %d", chunk // 2)
            else:
                self._recover(key)
                return result

    def _chunk_state(self, key: ChunkKey) -> tuple[int | None, int | None, int | None]:
        """The model's chunk, ceiling and calls since lowered (None: not set)."""
        return (
            self.chunk_sizes.get(key),
            self.chunk_ceilings.get(key),
            self._calls_since_lowered.get(key),
        )

    def _restore(self, key: ChunkKey, state: tuple[int | None, int | None, int | None]) -> None:
        """Put back a `_chunk_state` (a chunk that worked before the call that failed)."""
        for table, value in zip(
            (self.chunk_sizes, self.chunk_ceilings, self._calls_since_lowered), state, strict=True
        ):
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        log.warning("out of memory at one row: model chunk restored to %d", self._chunk(key))

    def _recover(self, key: ChunkKey) -> None:
        """After RECOVERY_CALLS successes at a lowered chunk, try twice that chunk."""
        ceiling = self.chunk_ceilings.get(key)
        if ceiling is None:
            return
        calls = self._calls_since_lowered[key] + 1
        self._calls_since_lowered[key] = calls
        if calls < RECOVERY_CALLS:
            return
        raised = min(ceiling, 2 * self._chunk(key))
        self.chunk_sizes[key] = raised
        self._calls_since_lowered[key] = 0
        if raised == ceiling:
            del self.chunk_ceilings[key]
        log.info("model chunk raised back to %d", raised)

    def evaluate_source(
        self, handle: ModelHandle, total: int, source: ChunkSource, instances: bool = False
    ) -> torch.Tensor:
        """Raw outputs for `total` rows built chunk by chunk by `source`, inference mode.

        Raises `ModelOutputNotFinite` when any output is NaN or infinite: shap would carry
        it into every attribution and scikit-learn (LIME, the tree) refuses it. When the
        rows are a request's `instances`, the error names each one whose output it is.
        """

        def run(chunk: int) -> torch.Tensor:
            parts = []
            with torch.inference_mode():
                for start in range(0, total, chunk):
                    batch = source(start, min(start + chunk, total)).to(
                        self.device, non_blocking=True
                    )
                    parts.append(self.forward(handle, batch))
            return torch.cat(parts) if parts else torch.empty(0, handle.spec.num_classes)

        outputs = self.with_backoff(handle, run)
        refuse_non_finite(outputs, instances)
        return outputs

    def evaluate(
        self, handle: ModelHandle, x: torch.Tensor, instances: bool = False
    ) -> torch.Tensor:
        """Raw outputs `(N, classes)` of an input-space batch, chunked, inference mode
        (`instances`: the rows are a request's instances, see `evaluate_source`)."""
        return self.evaluate_source(handle, len(x), lambda start, stop: x[start:stop], instances)

    def evaluate_numpy(self, handle: ModelHandle, rows: np.ndarray) -> np.ndarray:
        """Raw outputs of a numpy batch already in the model's input layout."""
        tensor = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return self.evaluate(handle, tensor).cpu().numpy()


def refuse_non_finite(outputs: torch.Tensor, instances: bool) -> None:
    """Raise `ModelOutputNotFinite` if a row of `outputs` holds NaN or an infinity."""
    finite = torch.isfinite(outputs).all(dim=1)
    if bool(finite.all()):
        return
    bad = torch.nonzero(~finite).flatten().tolist()
    if instances:
        raise ModelOutputNotFinite(
            f"the model returned NaN or infinite outputs for {len(bad)} of the {len(outputs)}"
            " instances; explanations need finite outputs",
            [ErrorItem(("instances", i), "the model's output is NaN or infinite") for i in bad],
        )
    raise ModelOutputNotFinite(
        f"the model returned NaN or infinite outputs for {len(bad)} of the {len(outputs)} rows"
        " it was given (perturbed instances or background rows); explanations need finite"
        " outputs"
    )
