"""Reference inputs for integrated gradients and occlusion: zeros, mean, blur, uniform."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from models.errors import ErrorItem, InvalidInput
from models.handle import ModelHandle

BLUR_SIGMA_FRACTION = 0.1  # Gaussian sigma as a fraction of the image side


def make_baseline(handle: ModelHandle, inputs: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """A baseline of the inputs' shape, in input space, on their device."""
    if kind == "zeros":
        return torch.zeros_like(inputs)
    if kind == "mean":
        if handle.background is None:
            raise InvalidInput(
                "baseline 'mean' needs the model's background.npz",
                [ErrorItem(("options", "integrated_gradients", "baseline"), "no background")],
            )
        return handle.background.mean(dim=0, keepdim=True).expand_as(inputs).contiguous()
    if kind == "blur":
        if not handle.is_image:
            raise InvalidInput(
                "baseline 'blur' is for image models",
                [ErrorItem(("options", "integrated_gradients", "baseline"), "images only")],
            )
        sigma = BLUR_SIGMA_FRACTION * max(inputs.shape[-2:])
        pixels = inputs.detach().cpu().numpy()
        blurred = gaussian_filter(pixels, sigma=(0, 0, sigma, sigma), mode="nearest")
        return torch.from_numpy(blurred.astype(np.float32)).to(inputs.device)
    if kind == "uniform":
        # One draw shared by every row, so a row's result does not depend on its batch.
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand(inputs.shape[1:], generator=generator).to(inputs.device)
        low, high = _input_range(handle, inputs)
        return (low + noise * (high - low)).to(inputs.dtype).expand_as(inputs).contiguous()
    raise InvalidInput(f"unknown baseline {kind!r}")


def _input_range(handle: ModelHandle, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels span [0, 1]; tabular features span the background's (or the inputs') range."""
    if handle.is_image:
        return torch.zeros((), device=inputs.device), torch.ones((), device=inputs.device)
    data = handle.background if handle.background is not None else inputs
    return data.min(dim=0).values, data.max(dim=0).values
