"""Gradient and perturbation attributions through captum.

saliency (`Saliency`), integrated_gradients (`IntegratedGradients`, Gauss-Legendre),
smoothgrad (`Saliency` on noisy copies, as captum's `NoiseTunnel`), gradcam (`LayerGradCam`,
upsampled to the input size) and occlusion (`Occlusion`). Each runs through the engine, with
its out-of-memory backoff, on groups of at most a chunk of the instances (SmoothGrad: of its
noisy copies), the chunk with gradients except for occlusion; integrated gradients and
occlusion set captum's own batching arguments to the chunk, which captum raises to a row
per instance of the group, so no model call has more rows than the chunk. Saliency,
integrated gradients and smoothgrad take captum's gradients with one backward seed per
batch, and integrated gradients recalls its Gauss-Legendre nodes (`captum_speedups`: the
same numbers, less per-call work).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from captum.attr import (
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)

from explainer.baselines import declared_ranges, make_baseline, unranged_features
from explainer.context import MethodContext, to_map
from explainer.methods.captum_speedups import recall_gauss_legendre, with_one_seed_gradients
from explainer.result import UNITS_GRADIENT, UNITS_RELEVANCE, Explanation
from models.errors import ErrorItem, InvalidInput
from models.handle import ModelHandle

recall_gauss_legendre()

T = TypeVar("T")

# Without a background, SmoothGrad's scale of a tabular feature is its declared range / 4.
RANGE_TO_STD = 4.0


def saliency(ctx: MethodContext) -> list[Explanation]:
    """|d score / d input| (or signed with abs=False); channels summed for images."""
    options = ctx.options.saliency
    method = with_one_seed_gradients(Saliency(ctx.forward))

    def attribute(rows: slice, _: int) -> torch.Tensor:
        # A leaf that already requires gradients: captum would otherwise warn on every call.
        leaf = ctx.inputs[rows].detach().requires_grad_()
        return method.attribute(leaf, target=ctx.target_tensor[rows], abs=options.abs)

    attributions = torch.cat(_in_chunks(ctx, len(ctx.inputs), attribute))
    return [
        Explanation("saliency", row, ctx.score_kind, UNITS_GRADIENT, magnitude=options.abs)
        for row in to_map(attributions, ctx.is_image)
    ]


def integrated_gradients(ctx: MethodContext) -> list[Explanation]:
    """Path integral of gradients from the baseline; reports the convergence delta."""
    options = ctx.options.integrated_gradients
    kind = options.baseline or ctx.handle.spec.default_baseline
    baseline = make_baseline(ctx.handle, ctx.inputs, kind, ctx.seed, ctx.engine)
    method = with_one_seed_gradients(IntegratedGradients(ctx.forward))

    def attribute(rows: slice, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        return method.attribute(
            ctx.inputs[rows],
            baselines=baseline[rows],
            target=ctx.target_tensor[rows],
            n_steps=options.n_steps,
            internal_batch_size=chunk,  # at least the group's rows: one path point per row
            return_convergence_delta=True,
        )

    groups = _in_chunks(ctx, len(ctx.inputs), attribute)
    attributions = torch.cat([group for group, _ in groups])
    delta = torch.cat([group_delta for _, group_delta in groups])
    results = []
    for row, row_delta in zip(to_map(attributions, ctx.is_image), delta.tolist(), strict=True):
        quality = {"convergence_delta": abs(float(row_delta))}
        results.append(
            Explanation("integrated_gradients", row, ctx.score_kind, ctx.units, quality=quality)
        )
    return results


def smoothgrad(ctx: MethodContext) -> list[Explanation]:
    """Saliency averaged over Gaussian-noised copies of each input (the same noise for
    every row: `nt_samples` draws at once, on the CPU, from a generator seeded with the
    request's seed, so the numbers depend neither on the chunk the noised copies are taken
    in nor on the device; each chunk's noise moves to the device inside the backoff).

    The noise is `stdev` times each feature's own scale (`_noise_scale`): the noise is
    drawn with one standard deviation, `stdev`, and added to the inputs divided by that
    scale; saliency runs through the model of the rescaled inputs, and the gradients are
    divided by the scale again (the chain rule), which leaves them in input units.
    """
    options = ctx.options.smoothgrad
    scale = _noise_scale(ctx)
    method = with_one_seed_gradients(Saliency(lambda z: ctx.forward(z * scale)))
    noise = _smoothgrad_noise(ctx, options.nt_samples, options.stdev)
    results = []
    for index in range(len(ctx.inputs)):
        row, target = ctx.inputs[index : index + 1] / scale, ctx.target_tensor[index : index + 1]

        def attribute(
            rows: slice, _: int, row: torch.Tensor = row, target: torch.Tensor = target
        ) -> torch.Tensor:
            noisy = (row + noise[rows].to(row.device)).detach().requires_grad_()
            return method.attribute(noisy, target=target.expand(len(noisy)), abs=True)

        gradients = torch.cat(_in_chunks(ctx, options.nt_samples, attribute))
        attributions = gradients.sum(dim=0, keepdim=True) / options.nt_samples / scale
        results.append(
            Explanation(
                "smoothgrad",
                to_map(attributions, ctx.is_image)[0],
                ctx.score_kind,
                UNITS_GRADIENT,
                magnitude=True,
            )
        )
    return results


def _smoothgrad_noise(ctx: MethodContext, samples: int, stdev: float) -> torch.Tensor:
    """`samples` draws of N(0, stdev^2) noise for one input, on the CPU, in one call to a
    generator seeded with the request's seed (on the CPU, what captum's NoiseTunnel drew
    after `torch.manual_seed(seed)` when it took all samples in one batch)."""
    generator = torch.Generator().manual_seed(ctx.seed)
    shape = (samples, *ctx.inputs.shape[1:])
    return torch.randn(shape, generator=generator) * stdev


def _noise_scale(ctx: MethodContext) -> torch.Tensor:
    """The scale of the noise: the pixel range, 1, for images; for tabular models each
    feature's standard deviation in the background, or without a background a quarter of
    its range declared in `model.toml` (`[tabular].ranges`; categorical features: of their
    codes, 0..n-1), the standard deviation of a normal distribution that spans the range
    as +-2 sigma. A feature of no spread in the background (constant, or a one-row
    background) takes a quarter of its declared range where it has one, else the mean of
    the other features' scales. A tabular model with neither background nor ranges is
    refused (`smoothgrad_available`), never noised on a raw scale of 1."""
    if ctx.is_image:
        return torch.ones((), device=ctx.inputs.device)
    scale = ctx.engine.memo(ctx.handle, ("smoothgrad", "scale"), lambda: _feature_scale(ctx.handle))
    return scale.to(ctx.inputs.device)


def _feature_scale(handle: ModelHandle) -> torch.Tensor:
    """A tabular model's noise scale per feature, on the CPU (see `_noise_scale`)."""
    low, high, missing = declared_ranges(handle)
    declared = (high - low) / RANGE_TO_STD  # 0 where a numeric feature declares no range
    if handle.background is not None:
        background = handle.background.cpu()
        spread = background.std(dim=0) if len(background) > 1 else torch.zeros_like(declared)
        spread = torch.where(spread > 0, spread, declared)
    else:
        assert not missing, "smoothgrad_available() leaves such models without smoothgrad"
        spread = declared
    fallback = spread[spread > 0].mean() if bool((spread > 0).any()) else torch.ones(())
    return torch.where(spread > 0, spread, fallback)


def smoothgrad_available(handle: ModelHandle) -> bool:
    """SmoothGrad needs a noise scale per feature: images always have one; tabular models
    need a background or a declared range for every numeric feature."""
    if handle.is_image or handle.background is not None:
        return True
    return not unranged_features(handle)


def gradcam(ctx: MethodContext) -> list[Explanation]:
    """Grad-CAM on the model's `gradcam_layer`, ReLU'd and upsampled to the input size."""
    method = LayerGradCam(ctx.forward, _gradcam_layer(ctx))

    def attribute(rows: slice, _: int) -> torch.Tensor:
        inputs = ctx.inputs[rows]
        relevance = method.attribute(inputs, target=ctx.target_tensor[rows], relu_attributions=True)
        if relevance.dim() != 4:
            raise InvalidInput(
                "the Grad-CAM layer's output is not a spatial map",
                [ErrorItem(("options", "gradcam", "layer"), "must output (N, C, H, W)")],
            )
        return LayerAttribution.interpolate(
            relevance, tuple(inputs.shape[-2:]), interpolate_mode="bilinear"
        )

    upsampled = torch.cat(_in_chunks(ctx, len(ctx.inputs), attribute))
    return [
        Explanation("gradcam", row, ctx.score_kind, UNITS_RELEVANCE)
        for row in to_map(upsampled, is_image=True)
    ]


def _in_chunks(
    ctx: MethodContext, total: int, attribute: Callable[[slice, int], T], gradients: bool = True
) -> list[T]:
    """`attribute(rows, chunk)` for each group of at most `chunk` of `total` rows (of the
    instances, or of SmoothGrad's noised copies), with the engine's backoff on the model's
    chunk (with gradients, or without): one group when the chunk holds them all.

    `attribute` calls the model with at most `chunk` rows at a time, so halving the chunk
    after an out-of-memory error always makes the calls smaller.
    """

    def run(chunk: int) -> list[T]:
        return [attribute(slice(start, start + chunk), chunk) for start in range(0, total, chunk)]

    return ctx.engine.with_backoff(ctx.handle, run, gradients=gradients)


def _gradcam_layer(ctx: MethodContext) -> torch.nn.Module:
    module = ctx.handle.module
    configured = ctx.options.gradcam.layer or (
        ctx.handle.spec.image.gradcam_layer if ctx.handle.spec.image else None
    )
    loc = ("options", "gradcam", "layer")
    assert module is not None  # check_methods offers gradcam only for eager image models
    if configured:
        try:
            return module.get_submodule(configured)
        except AttributeError:
            raise InvalidInput(
                "unknown Grad-CAM layer", [ErrorItem(loc, "no such layer")]
            ) from None
    convolutions = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convolutions:
        raise InvalidInput("the model has no Conv2d layer", [ErrorItem(loc, "no layer")])
    return convolutions[-1]


def occlusion(ctx: MethodContext) -> list[Explanation]:
    """Score drop when a window is replaced by the model's default baseline."""
    options = ctx.options.occlusion
    baseline = make_baseline(
        ctx.handle, ctx.inputs, ctx.handle.spec.default_baseline, ctx.seed, ctx.engine
    )
    if ctx.is_image:
        _check_window(options.window, options.stride, *ctx.inputs.shape[-2:])
        channels = ctx.inputs.shape[1]
        window: tuple[int, ...] = (channels, options.window, options.window)
        strides: tuple[int, ...] = (channels, options.stride, options.stride)
    else:
        window, strides = (1,), (1,)
    method = Occlusion(ctx.forward)

    def attribute(rows: slice, chunk: int) -> torch.Tensor:
        inputs = ctx.inputs[rows]
        with torch.no_grad():
            return method.attribute(
                inputs,
                sliding_window_shapes=window,
                strides=strides,
                baselines=baseline[rows],
                target=ctx.target_tensor[rows],
                perturbations_per_eval=max(1, chunk // len(inputs)),
            )

    attributions = torch.cat(_in_chunks(ctx, len(ctx.inputs), attribute, gradients=False))
    return [
        Explanation("occlusion", row, ctx.score_kind, ctx.units)
        for row in to_map(attributions, ctx.is_image)
    ]


def _check_window(window: int, stride: int, height: int, width: int) -> None:
    """captum's own checks, as a 422: the window fits the image, and the stride is at most
    the window along a side the window does not cover whole."""
    loc = ("options", "occlusion")
    if window > min(height, width):
        raise InvalidInput(
            "the occlusion window is larger than the image",
            [ErrorItem((*loc, "window"), f"must be at most {min(height, width)}")],
        )
    if stride > window and window < max(height, width):
        raise InvalidInput(
            "the occlusion stride is larger than its window",
            [ErrorItem((*loc, "stride"), f"must be at most the window, {window}")],
        )
