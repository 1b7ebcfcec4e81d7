"""LIME's neighbourhood of an instance, sampled and evaluated once, shared with the tree.

Tabular: lime's `LimeTabularExplainer` (quartile discretisation, statistics from the
model's background) samples the neighbourhood and calls our batched score function once;
we record the samples (in original units), LIME's own distances and the fitted weights.

Images: the neighbourhood is lime's: superpixels switched on or off at random (drawn from
the same `RandomState` as `LimeImageExplainer.data_labels`, first row all on), hidden
superpixels replaced by their mean colour (lime's `hide_color=None`) or black
(`hide_color=0`). We build the perturbed images chunk by chunk with tensor indexing, on the
model's device (one gather and one blend per chunk), instead of lime's per-sample
Python loop, then lime's `LimeBase` fits the weights.
The parity tests check that the weights equal those of lime's `explain_instance`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import sklearn
import sklearn.metrics
import torch
from lime.lime_image import LimeImageExplainer
from lime.lime_tabular import LimeTabularExplainer

from explainer.cache import array_digest
from explainer.context import MethodContext, perturbing
from explainer.methods.blend import shown_or_hidden
from explainer.methods.fit_quality import lime_r2
from explainer.methods.lime_discretizer import RecallingQuartileDiscretizer
from explainer.segmentation import segment_image
from models.errors import ErrorItem, InvalidInput

IMAGE_KERNEL_WIDTH = 0.25  # lime_image's default


@dataclass
class Neighbourhood:
    """Perturbed samples of one instance, their target scores and proximity weights."""

    samples: np.ndarray  # (S, d): tabular rows in input units, or superpixels on (1) / off (0)
    scores: np.ndarray  # (S,) the model's target score of each sample
    weights: np.ndarray  # (S,) LIME's proximity kernel; row 0 is the instance itself
    lime_weights: np.ndarray  # (d,) LIME's linear weights, one per feature or superpixel
    lime_intercept: float
    lime_r2: float  # R^2 of LIME's weighted ridge fit on the neighbourhood
    segments: np.ndarray | None  # (H, W) superpixel ids for images


def neighbourhoods(ctx: MethodContext) -> list[Neighbourhood]:
    """One neighbourhood per instance, computed once per request and shared."""
    cached = ctx.shared.get("neighbourhoods")
    if cached is not None:
        return cached  # type: ignore[return-value]
    build = _image_neighbourhood if ctx.is_image else _tabular_neighbourhood
    hoods = []
    for index, target in enumerate(ctx.targets):
        with without_sklearn_checks(), perturbing(index):
            hoods.append(build(ctx, index, target))
    ctx.shared["neighbourhoods"] = hoods
    return hoods


def without_sklearn_checks() -> AbstractContextManager[None]:
    """scikit-learn without its own input and parameter checks (lime's fits, the tree).

    The arrays it is given here are already known finite: the inputs are validated, the
    engine refuses non-finite model outputs, and `explain` checks every result. The
    estimators' parameters are fixed by lime or come from validated options. The checks
    (about 20 `check_array` calls per instance) cost 5 to 7% of a 16-row tabular request.
    """
    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)


def segmentations(ctx: MethodContext) -> list[np.ndarray]:
    """One superpixel segmentation per image, cached per model and image content."""
    return [
        ctx.engine.memo(
            ctx.handle, ("segments", array_digest(image)), partial(segment_image, image)
        )
        for image in images_hwc(ctx)
    ]


def images_hwc(ctx: MethodContext) -> np.ndarray:
    """The request's images as `(N, H, W, C)` float64 numpy arrays (lime's layout)."""
    return ctx.inputs.detach().cpu().numpy().transpose(0, 2, 3, 1).astype(np.float64)


def tabular_lime_explainer(ctx: MethodContext) -> LimeTabularExplainer:
    """lime's tabular explainer over the model's background, built once per model.

    Its scaler, discretiser and base share one `RandomState`, which is re-seeded before
    each instance, so each row's result equals that of a fresh explainer with the seed.
    Its quartile discretiser recalls the neighbourhoods it has drawn (see
    `lime_discretizer`): every row with the same seed draws the same one.
    Every feature is kept, so lime's feature selection (forward selection up to six
    features, else a ranking by a first ridge fit) is switched off: it would select all of
    them anyway, at the cost of extra ridge fits.
    """
    spec = ctx.handle.spec.tabular
    assert spec is not None
    features = list(spec.features)
    categorical = [features.index(name) for name in spec.categorical]
    kernel_width = ctx.options.lime.kernel_width

    def build() -> LimeTabularExplainer:
        background = ctx.background("lime").detach().cpu().numpy()
        random_state = np.random.RandomState(0)
        return LimeTabularExplainer(
            background,
            mode="regression",
            feature_names=features,
            categorical_features=categorical,
            categorical_names={features.index(n): list(c) for n, c in spec.categorical.items()},
            discretize_continuous=True,
            discretizer=RecallingQuartileDiscretizer(
                background, categorical, features, random_state
            ),
            kernel_width=kernel_width,
            feature_selection="none",
            random_state=random_state,
        )

    explainer = ctx.engine.memo(ctx.handle, ("lime-tabular", kernel_width), build)
    explainer.random_state.seed(ctx.seed)
    return explainer


def _tabular_neighbourhood(ctx: MethodContext, index: int, target: int) -> Neighbourhood:
    explainer = tabular_lime_explainer(ctx)
    recorded: dict[str, Any] = {}

    def score(rows: np.ndarray) -> np.ndarray:
        scores = ctx.engine.evaluate_numpy(ctx.handle, rows)[:, target]
        recorded["samples"], recorded["scores"] = np.array(rows, dtype=np.float64), scores
        return scores

    fit_with_data = explainer.base.explain_instance_with_data

    def recording_fit(
        data: np.ndarray, labels: np.ndarray, distances: np.ndarray, *args: Any, **kwargs: Any
    ) -> Any:
        recorded["distances"] = distances
        _require_weight(explainer.base.kernel_fn(distances))
        recorded["fit"] = fit_with_data(data, labels, distances, *args, **kwargs)
        return recorded["fit"]

    row = ctx.inputs[index].detach().cpu().numpy().astype(np.float64)
    explainer.base.explain_instance_with_data = recording_fit
    try:
        explainer.explain_instance(
            row, score, num_features=len(row), num_samples=ctx.options.lime.num_samples
        )
    finally:
        del explainer.base.explain_instance_with_data  # back to the class's method
    intercept, local_exp, r2, _ = recorded["fit"]
    scores = np.asarray(recorded["scores"], dtype=np.float64)
    weights = np.asarray(explainer.base.kernel_fn(recorded["distances"]), dtype=np.float64)
    return Neighbourhood(
        samples=recorded["samples"],
        scores=scores,
        weights=weights,
        lime_weights=_dense_weights(local_exp, len(row)),
        lime_intercept=float(intercept),
        lime_r2=lime_r2(r2, scores, weights),
        segments=None,
    )


def _require_weight(weights: np.ndarray) -> None:
    """A 422 when LIME's kernel gives every sample but the instance itself no weight: too
    narrow a `kernel_width` (lime's ridge fit would stop with scikit-learn's error, or fit
    the instance alone)."""
    if not np.any(np.asarray(weights)[1:] > 0):
        raise InvalidInput(
            "LIME's kernel gives no weight to any perturbed sample",
            [ErrorItem(("options", "lime", "kernel_width"), "too small for this model's data")],
        )


def _dense_weights(local_exp: list[tuple[int, float]], size: int) -> np.ndarray:
    weights = np.zeros(size, dtype=np.float64)
    for feature, weight in local_exp:
        weights[feature] = weight
    return weights


def mean_colour_image(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """lime's `hide_color=None`: each superpixel replaced by its mean colour."""
    count = int(segments.max()) + 1
    flat = segments.ravel()
    area = np.bincount(flat, minlength=count)
    fudged = np.empty_like(image)
    for channel in range(image.shape[2]):
        sums = np.bincount(flat, weights=image[..., channel].ravel(), minlength=count)
        fudged[..., channel] = (sums / np.maximum(area, 1))[segments]
    return fudged


def _image_neighbourhood(ctx: MethodContext, index: int, target: int) -> Neighbourhood:
    image = images_hwc(ctx)[index]
    segments = segmentations(ctx)[index]
    hide_zero = ctx.options.lime.hide_color == "zero"
    fudged = np.zeros_like(image) if hide_zero else mean_colour_image(image, segments)
    explainer = LimeImageExplainer(
        kernel_width=ctx.options.lime.kernel_width or IMAGE_KERNEL_WIDTH, random_state=ctx.seed
    )
    count = int(segments.max()) + 1
    num_samples = ctx.options.lime.num_samples
    # The same draws as lime_image.LimeImageExplainer.data_labels.
    data = explainer.random_state.randint(0, 2, num_samples * count).reshape(num_samples, count)
    data[0, :] = 1
    # Built where the model runs: on a GPU no perturbed image crosses the bus.
    device = ctx.inputs.device
    image_chw = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32)).to(device)
    fudged_chw = torch.from_numpy(fudged.transpose(2, 0, 1).astype(np.float32)).to(device)
    segments_flat = torch.from_numpy(segments.reshape(-1)).to(device)
    data_tensor = torch.from_numpy(data.astype(np.float32)).to(device)  # 1 on, 0 off
    height, width = segments.shape

    def perturbed(start: int, stop: int) -> torch.Tensor:
        keep = data_tensor[start:stop].index_select(1, segments_flat)  # (B, H*W)
        return shown_or_hidden(image_chw, fudged_chw, keep.view(-1, 1, height, width))

    scores = ctx.engine.evaluate_source(ctx.handle, num_samples, perturbed)[:, target]
    labels = scores.cpu().numpy().astype(np.float64)[:, None]
    distances = sklearn.metrics.pairwise_distances(data, data[0].reshape(1, -1), metric="cosine")
    distances = distances.ravel()
    _require_weight(explainer.base.kernel_fn(distances))
    # Every superpixel is kept, so lime's feature selection ("auto": a first ridge fit to
    # rank them all) is skipped; the weights agree with lime's to about 1e-15.
    intercept, local_exp, r2, _ = explainer.base.explain_instance_with_data(
        data, labels, distances, 0, count, feature_selection="none"
    )
    weights = np.asarray(explainer.base.kernel_fn(distances), dtype=np.float64)
    return Neighbourhood(
        samples=data.astype(np.float64),
        scores=labels[:, 0],
        weights=weights,
        lime_weights=_dense_weights(local_exp, count),
        lime_intercept=float(intercept),
        lime_r2=lime_r2(r2, labels[:, 0], weights),
        segments=segments,
    )
