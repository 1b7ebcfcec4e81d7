"""Reference inputs for integrated gradients and occlusion: zeros, mean, blur, uniform.

Baselines never depend on the request's inputs beyond their shape, so a row's result does
not depend on the other rows of its batch. On tabular models, categorical features (the
model receives the category's index) always get a whole category: `mean` takes the
background's most frequent code for them (the lowest of those tied), `uniform` draws a code.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from explainer.engine import Engine
from models.errors import ErrorItem, InvalidInput
from models.handle import ModelHandle

BLUR_SIGMA_FRACTION = 0.1  # Gaussian sigma as a fraction of the image side
BASELINE_LOC = ("options", "integrated_gradients", "baseline")


def make_baseline(
    handle: ModelHandle, inputs: torch.Tensor, kind: str, seed: int, engine: Engine
) -> torch.Tensor:
    """A baseline of the inputs' shape, in input space, on their device (what it takes from
    the background is computed once per model and kept by `engine`)."""
    if kind == "zeros":
        return torch.zeros_like(inputs)
    if kind == "mean":
        if handle.background is None:
            raise InvalidInput(
                "baseline 'mean' needs the model's background.npz",
                [ErrorItem(BASELINE_LOC, "no background")],
            )
        reference = engine.memo(handle, ("baseline", "mean"), lambda: _background_reference(handle))
        return reference.to(inputs).expand_as(inputs).contiguous()
    if kind == "blur":
        if not handle.is_image:
            raise InvalidInput(
                "baseline 'blur' is for image models",
                [ErrorItem(BASELINE_LOC, "images only")],
            )
        sigma = BLUR_SIGMA_FRACTION * max(inputs.shape[-2:])
        pixels = inputs.detach().cpu().numpy()
        blurred = gaussian_filter(pixels, sigma=(0, 0, sigma, sigma), mode="nearest")
        return torch.from_numpy(blurred.astype(np.float32)).to(inputs.device)
    if kind == "uniform":
        # One draw shared by every row, so a row's result does not depend on its batch.
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand(inputs.shape[1:], generator=generator).to(inputs.device)
        low, high = engine.memo(handle, ("baseline", "range"), lambda: _uniform_range(handle))
        low, high = low.to(inputs.device), high.to(inputs.device)
        baseline = low + noise * (high - low)
        codes = categorical_codes(handle)
        if codes:
            index = torch.tensor(list(codes), device=inputs.device)
            count = torch.tensor(list(codes.values()), device=inputs.device, dtype=noise.dtype)
            # A whole code, each of 0..count-1 equally likely (noise is in [0, 1)).
            drawn = torch.clamp(torch.floor(noise[index] * count), max=count - 1)
            baseline[index] = drawn.to(baseline.dtype)
        return baseline.to(inputs.dtype).expand_as(inputs).contiguous()
    raise InvalidInput(f"unknown baseline {kind!r}")


def categorical_codes(handle: ModelHandle) -> dict[int, int]:
    """Tabular categorical features: {feature index: number of categories}."""
    spec = handle.spec.tabular
    if handle.is_image or spec is None:
        return {}
    return {spec.features.index(name): len(cats) for name, cats in spec.categorical.items()}


def declared_ranges(handle: ModelHandle) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Each tabular feature's range from `model.toml`: `[tabular].ranges` for numeric features,
    the codes 0..n-1 for categorical ones; and the names of the features with neither."""
    spec = handle.spec.tabular
    assert spec is not None
    low = torch.zeros(len(spec.features))
    high = torch.zeros(len(spec.features))
    for i, name in enumerate(spec.features):
        if name in spec.categorical:
            high[i] = len(spec.categorical[name]) - 1
        elif name in spec.ranges:
            low[i], high[i] = spec.ranges[name].min, spec.ranges[name].max
    return low, high, unranged_features(handle)


def unranged_features(handle: ModelHandle) -> list[str]:
    """A tabular model's numeric features without a range in `[tabular].ranges`."""
    assert handle.spec.tabular is not None
    return handle.spec.tabular.unranged_features


def _background_reference(handle: ModelHandle) -> torch.Tensor:
    """The background's mean row `(1, ...)`; a categorical feature's most frequent code
    (the lowest of those tied), since the mean of codes is no category at all."""
    background = handle.background
    assert background is not None
    reference = background.mean(dim=0, keepdim=True)
    for feature in categorical_codes(handle):
        values, counts = np.unique(background[:, feature].cpu().numpy(), return_counts=True)
        reference[0, feature] = float(values[int(np.argmax(counts))])  # first: lowest code
    return reference


def _uniform_range(handle: ModelHandle) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels span [0, 1]; tabular features span the background's range, or without a
    background the ranges declared in `model.toml` (never the request's own rows)."""
    if handle.is_image:
        return torch.zeros(()), torch.ones(())
    if handle.background is not None:
        background = handle.background.detach().cpu()
        return background.min(dim=0).values, background.max(dim=0).values
    low, high, missing = declared_ranges(handle)
    if missing:
        raise InvalidInput(
            "baseline 'uniform' needs the model's background.npz, or a range in model.toml's"
            f" [tabular].ranges for every numeric feature (missing for {len(missing)}:"
            f" {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})",
            [ErrorItem(BASELINE_LOC, "no background and no declared ranges")],
        )
    return low, high
