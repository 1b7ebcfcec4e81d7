"""Gradient and perturbation attributions through captum.

saliency (`Saliency`), integrated_gradients (`IntegratedGradients`, Gauss-Legendre),
smoothgrad (`NoiseTunnel` over `Saliency`), gradcam (`LayerGradCam`, upsampled to the input
size) and occlusion (`Occlusion`). Each runs through the engine, with its out-of-memory
backoff: captum's own batching arguments are set to the model's chunk size (the chunk with
gradients, except for occlusion), and saliency and Grad-CAM, which captum runs in one
call, take the instances a chunk at a time. Saliency, integrated gradients and smoothgrad
take captum's gradients with one backward seed per batch, and integrated gradients recalls
its Gauss-Legendre nodes (`captum_speedups`: the same numbers, less per-call work).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import (
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
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

# Without a background, SmoothGrad's scale of a tabular feature is its declared range / 4.
RANGE_TO_STD = 4.0


def saliency(ctx: MethodContext) -> list[Explanation]:
    """|d score / d input| (or signed with abs=False); channels summed for images."""
    options = ctx.options.saliency
    method = with_one_seed_gradients(Saliency(ctx.forward))

    def attribute(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # A leaf that already requires gradients: captum would otherwise warn on every call.
        leaf = inputs.detach().requires_grad_()
        return method.attribute(leaf, target=targets, abs=options.abs)

    attributions = _by_instance_chunks(ctx, attribute)
    return [
        Explanation("saliency", row, ctx.score_kind, UNITS_GRADIENT)
        for row in to_map(attributions, ctx.is_image)
    ]


def integrated_gradients(ctx: MethodContext) -> list[Explanation]:
    """Path integral of gradients from the baseline; reports the convergence delta."""
    options = ctx.options.integrated_gradients
    kind = options.baseline or ctx.handle.spec.default_baseline
    baseline = make_baseline(ctx.handle, ctx.inputs, kind, ctx.seed, ctx.engine)
    method = with_one_seed_gradients(IntegratedGradients(ctx.forward))

    def run(chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        return method.attribute(
            ctx.inputs,
            baselines=baseline,
            target=ctx.target_tensor,
            n_steps=options.n_steps,
            internal_batch_size=chunk,
            return_convergence_delta=True,
        )

    attributions, delta = ctx.engine.with_backoff(ctx.handle, run, gradients=True)
    results = []
    for row, row_delta in zip(to_map(attributions, ctx.is_image), delta.tolist(), strict=True):
        quality = {"convergence_delta": abs(float(row_delta))}
        results.append(
            Explanation("integrated_gradients", row, ctx.score_kind, ctx.units, quality=quality)
        )
    return results


def smoothgrad(ctx: MethodContext) -> list[Explanation]:
    """Saliency averaged over Gaussian-noised copies of each input (seeded per row).

    The noise is `stdev` times each feature's own scale (`_noise_scale`): captum's
    NoiseTunnel draws one standard deviation per input tensor, so it runs on the inputs
    divided by that scale, through the model of the rescaled inputs, and the gradients are
    divided by the scale again (the chain rule), which leaves them in input units.
    """
    options = ctx.options.smoothgrad
    scale = _noise_scale(ctx)
    method = NoiseTunnel(with_one_seed_gradients(Saliency(lambda z: ctx.forward(z * scale))))
    results = []
    for index in range(len(ctx.inputs)):
        row, target = ctx.inputs[index : index + 1] / scale, ctx.target_tensor[index : index + 1]

        def run(chunk: int, row: torch.Tensor = row, target: torch.Tensor = target) -> torch.Tensor:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                return method.attribute(
                    row,
                    nt_type="smoothgrad",
                    nt_samples=options.nt_samples,
                    nt_samples_batch_size=chunk,
                    stdevs=options.stdev,
                    target=target,
                    abs=True,
                )

        attributions = ctx.engine.with_backoff(ctx.handle, run, gradients=True) / scale
        results.append(
            Explanation(
                "smoothgrad", to_map(attributions, ctx.is_image)[0], ctx.score_kind, UNITS_GRADIENT
            )
        )
    return results


def _noise_scale(ctx: MethodContext) -> torch.Tensor:
    """The scale of the noise: the pixel range, 1, for images; for tabular models each
    feature's standard deviation in the background, or without a background a quarter of
    its range declared in `model.toml` (`[tabular].ranges`; categorical features: of their
    codes, 0..n-1), the standard deviation of a normal distribution that spans the range
    as +-2 sigma. A feature of no spread takes the mean of all features' scales. A tabular model
    with neither is refused (`smoothgrad_available`), never noised on a raw scale of 1."""
    if ctx.is_image:
        return torch.ones((), device=ctx.inputs.device)
    scale = ctx.engine.memo(ctx.handle, ("smoothgrad", "scale"), lambda: _feature_scale(ctx.handle))
    return scale.to(ctx.inputs.device)


def _feature_scale(handle: ModelHandle) -> torch.Tensor:
    """A tabular model's noise scale per feature, on the CPU (see `_noise_scale`)."""
    if handle.background is not None:
        spread = handle.background.std(dim=0).cpu()
    else:
        low, high, missing = declared_ranges(handle)
        assert not missing, "smoothgrad_available() leaves such models without smoothgrad"
        spread = (high - low) / RANGE_TO_STD
    fallback = spread.mean() if bool((spread > 0).any()) else torch.ones(())
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

    def attribute(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        relevance = method.attribute(inputs, target=targets, relu_attributions=True)
        if relevance.dim() != 4:
            raise InvalidInput(
                "the Grad-CAM layer's output is not a spatial map",
                [ErrorItem(("options", "gradcam", "layer"), "must output (N, C, H, W)")],
            )
        return LayerAttribution.interpolate(
            relevance, tuple(inputs.shape[-2:]), interpolate_mode="bilinear"
        )

    upsampled = _by_instance_chunks(ctx, attribute)
    return [
        Explanation("gradcam", row, ctx.score_kind, UNITS_RELEVANCE)
        for row in to_map(upsampled, is_image=True)
    ]


def _by_instance_chunks(
    ctx: MethodContext, attribute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """`attribute(inputs, targets)` over the instances, at most a gradient chunk at a time."""

    def run(chunk: int) -> torch.Tensor:
        parts = [
            attribute(ctx.inputs[start : start + chunk], ctx.target_tensor[start : start + chunk])
            for start in range(0, len(ctx.inputs), chunk)
        ]
        return torch.cat(parts)

    return ctx.engine.with_backoff(ctx.handle, run, gradients=True)


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

    def run(chunk: int) -> torch.Tensor:
        with torch.no_grad():
            return method.attribute(
                ctx.inputs,
                sliding_window_shapes=window,
                strides=strides,
                baselines=baseline,
                target=ctx.target_tensor,
                perturbations_per_eval=max(1, chunk // len(ctx.inputs)),
            )

    attributions = ctx.engine.with_backoff(ctx.handle, run)
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
