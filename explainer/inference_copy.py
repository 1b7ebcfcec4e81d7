"""Inference-optimised copies of models, for the model calls that need no gradients.

`torch.jit.freeze` inlines a TorchScript module's weights and `torch.jit.optimize_for_inference`
folds batch norms into convolutions and runs them through oneDNN. On the CPU of these
machines the zoo's lesion CNN ran 3x faster per image, and a ResNet-18 at 224x224 1.4x, so
image models get both. The zoo's tabular MLPs gained nothing from either as TorchScript
(breast-cancer ran slower optimised); but a torch.export program checks its inputs' guards
on every call (about 0.2 ms), so a tabular one gets a frozen trace without them: the same
numbers bit for bit, and credit-risk's bundle 5% faster for one row and 9% for 16.

The engine uses the copy for calls without gradients (SHAP, LIME and the tree's samples,
occlusion, predictions); gradient methods (saliency, integrated gradients, SmoothGrad,
Grad-CAM) call the model itself. A copy is kept only when its outputs agree with the
model's on seeded random inputs (`AGREEMENT_RTOL`, `AGREEMENT_ATOL`). TorchScript models
are frozen as they are, torch.export programs are traced first and eager (safetensors)
models compiled with `torch.jit.script`; one that TorchScript cannot compile runs
unchanged. Copies are made for the CPU only: the CUDA path has not been measured.
"""

from __future__ import annotations

import logging
import warnings

import torch

from models.handle import ModelHandle

log = logging.getLogger(__name__)

# Largest difference between the copy's and the model's outputs on PROBE_ROWS random inputs.
AGREEMENT_RTOL, AGREEMENT_ATOL = 1e-5, 1e-6
PROBE_ROWS = 4
TRACE_ROWS = 2


def inference_copy(handle: ModelHandle) -> torch.nn.Module | None:
    """A frozen copy of an image model (inference-optimised) or of a tabular torch.export
    program, or None where there is none."""
    module = handle.module
    exported = isinstance(module, torch.fx.GraphModule)
    if module is None or not (handle.is_image or exported):
        return None
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand((PROBE_ROWS, *handle.input_shape), generator=generator).to(handle.device)
    try:
        copy = torch.jit.freeze(_scripted(handle, module))
        if handle.is_image:
            copy = torch.jit.optimize_for_inference(copy)
        with torch.inference_mode():
            expected, got = handle.forward(probe), handle.forward(probe, module=copy)
    except Exception as error:  # TorchScript rejects many eager models: they run unchanged
        log.info("model %s runs unfrozen: %s", handle.name, type(error).__name__)
        return None
    if not torch.allclose(got, expected, rtol=AGREEMENT_RTOL, atol=AGREEMENT_ATOL):
        log.warning("model %s runs unfrozen: its frozen copy disagrees with it", handle.name)
        return None
    return copy


def _scripted(handle: ModelHandle, module: torch.nn.Module) -> torch.jit.ScriptModule:
    """The model as TorchScript, in eval mode.

    A torch.export program has no data-dependent control flow, so tracing it is exact; it
    is traced on TRACE_ROWS rows and checked on PROBE_ROWS, so a batch size baked into
    the trace shows up as a failure. Eager models are compiled with `torch.jit.script`
    (tracing could silently fix their control flow).
    """
    if isinstance(module, torch.jit.ScriptModule):
        return module.eval()
    if isinstance(module, torch.fx.GraphModule):
        generator = torch.Generator().manual_seed(1)  # leaves the global generator alone
        example = torch.rand((TRACE_ROWS, *handle.input_shape), generator=generator)
        example = example.to(handle.device)
        with torch.no_grad(), warnings.catch_warnings():
            # The program's input checks become constants in the trace: harmless here.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.trace(module, handle.normalise(example)).eval()
    return torch.jit.script(module).eval()
