"""SHAP values through the shap library.

- tabular (`algorithm="auto"`): `shap.Explainer` with an `Independent` masker over the
  model's background; exact for up to 10 features, permutation above. Both are additive by
  construction: `base_value + sum(attributions) == f(x)` up to float error.
- images (`"auto"`): `shap.Explainer` with an `Image` masker that blurs hidden regions
  (Partition explainer, Owen values over a hierarchy of pixel blocks), with the two
  speed-ups of `shap_partition`.
- `"gradient"`: `GradientExplainer` (expected gradients) over the background, with
  `max_evals` samples per instance (200 when unset).

Exact SHAP needs 2**F model evaluations for F features: where that is more than
`SHAP_MAX_EVALS` (15 features or more) it is refused with a 422 naming the algorithm,
whatever `max_evals` says, rather than left to run for hours (`evaluation_budget` is what
the API checks against its limits).

The model function given to shap returns the target score only, for one instance at a time
(targets may differ between instances); every call goes through the engine's chunks.
Maskers and explainers are built once per model (and target, algorithm, background
sample, blur) and kept in the engine's object memo: an image masker at 224x224 costs about
0.5 s to build. shap's permutation explainer seeds numpy's global generator when it is
built, so a kept one is re-seeded the same way before each instance.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import shap
import torch

from explainer.cache import array_digest
from explainer.context import MethodContext, perturbing
from explainer.engine import Engine
from explainer.methods.shap_partition import BlurOnceImageMasker, partition_explainer
from explainer.options import SHAP_MAX_EVALS, ShapOptions
from explainer.result import Explanation
from models.errors import ErrorItem, InvalidInput
from models.handle import ModelHandle

EXACT_MAX_FEATURES = 10
IMAGE_MAX_EVALS = 500
PERMUTATION_MAX_EVALS = 500  # the least budget permutation gets when max_evals is unset
GRADIENT_SAMPLES = 200  # GradientExplainer's samples per instance when max_evals is unset
# How many masked samples shap builds per model call. Fixed, not the engine's chunk: the
# Partition explainer's choice of which nodes to expand depends on it, and results must not
# depend on the device's tuned chunk. The engine still chunks each call.
SHAP_BATCH = 256


def shap_values(ctx: MethodContext) -> list[Explanation]:
    """One SHAP explanation per instance, toward its target."""
    algorithm = _algorithm(ctx)
    if algorithm == "gradient":
        return _gradient(ctx)
    results = []
    explain_one = _image_partition if ctx.is_image else partial(_tabular, algorithm=algorithm)
    for index, target in enumerate(ctx.targets):
        with perturbing(index):
            values, base = explain_one(ctx, index, target)
        results.append(_explanation(ctx, index, values, base))
    return results


def _algorithm(ctx: MethodContext) -> str:
    return check_options(ctx.handle, ctx.options.shap)


def check_options(handle: ModelHandle, options: ShapOptions) -> str:
    """The algorithm the options resolve to for this model; a 422 naming the option for an
    algorithm the model cannot use, exact SHAP over SHAP_MAX_EVALS or too few `max_evals`
    (checked before any model call)."""
    algorithm = options.algorithm
    own = {"partition"} if handle.is_image else {"exact", "permutation"}
    allowed = {"auto", "gradient"} | own
    if algorithm not in allowed:
        raise InvalidInput(
            f"shap algorithm {algorithm!r} is not available for {handle.spec.modality} models",
            [ErrorItem(("options", "shap", "algorithm"), f"must be one of {sorted(allowed)}")],
        )
    if handle.is_image or algorithm == "gradient":
        return algorithm
    features = len(handle.feature_names)
    resolved = tabular_algorithm(algorithm, features)
    _tabular_max_evals(resolved, features, options.max_evals)
    return resolved


def tabular_algorithm(algorithm: str, features: int) -> str:
    """`auto` resolved for a tabular model: exact for up to 10 features, permutation above."""
    if algorithm == "auto":
        return "exact" if features <= EXACT_MAX_FEATURES else "permutation"
    return algorithm


def evaluation_budget(options: ShapOptions, features: int | None) -> int:
    """The model evaluations one instance's explanation uses at most (for `gradient`, its
    samples): `max_evals`, or the default when it is unset; exact always uses 2**F.
    `features`: the tabular model's feature count, None for an image model."""
    if options.algorithm == "gradient":
        return options.max_evals or GRADIENT_SAMPLES
    if features is None:
        return options.max_evals or IMAGE_MAX_EVALS
    algorithm = tabular_algorithm(options.algorithm, features)
    if algorithm == "exact":
        return int(2**features)
    return options.max_evals or max(PERMUTATION_MAX_EVALS, 2 * features + 1)


def exact_budget_error(algorithm: str, features: int, limit: int) -> ErrorItem | None:
    """The error for exact SHAP (asked for, or `auto` resolving to it) whose 2**F evaluations
    are more than `limit`; None otherwise."""
    if tabular_algorithm(algorithm, features) != "exact" or 2**features <= limit:
        return None
    chosen = "'exact'" if algorithm == "exact" else "'auto' (exact for this model)"
    auto_helps = tabular_algorithm("auto", features) != "exact"
    return ErrorItem(
        ("options", "shap", "algorithm"),
        f"{chosen} needs 2**{features} evaluations, at most {limit} allowed:"
        " use 'permutation'" + (" or 'auto'" if auto_helps else ""),
    )


def _check_exact(features: int) -> None:
    """A 422 for exact SHAP whose 2**F evaluations are more than SHAP_MAX_EVALS."""
    error = exact_budget_error("exact", features, SHAP_MAX_EVALS)
    if error is not None:
        raise InvalidInput(
            f"shap's exact algorithm needs 2**{features} model evaluations for this model's"
            f" {features} features, more than the limit of {SHAP_MAX_EVALS}: use algorithm"
            " 'permutation' (or 'auto', which chooses it above 10 features)",
            [error],
        )


def _score_function(
    engine: Engine, handle: ModelHandle, target: int, masker: BlurOnceImageMasker | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """numpy rows -> target scores, through the engine (no reference to the request).

    With `masker`, rows are masks of its current image, made into images chunk by chunk.
    """

    def score(rows: np.ndarray) -> np.ndarray:
        if masker is None:
            return engine.evaluate_numpy(handle, rows)[:, target]
        outputs = engine.evaluate_source(
            handle,
            len(rows),
            lambda start, stop: masker.masked_images(rows[start:stop], engine.device),
        )
        return outputs[:, target].cpu().numpy()

    return score


def _background_sample(ctx: MethodContext) -> np.ndarray:
    """Up to `background_size` background rows, chosen with the request's seed."""
    background = ctx.background("shap").detach().cpu().numpy()
    size = ctx.options.shap.background_size
    if len(background) > size:
        rng = np.random.default_rng(ctx.seed)
        background = background[np.sort(rng.choice(len(background), size, replace=False))]
    return background


def _tabular(
    ctx: MethodContext, index: int, target: int, algorithm: str
) -> tuple[np.ndarray, float]:
    # Keyed by the background sample, not the seed: with the whole background (the
    # default) every seed shares one explainer, so audits do not fill the memo row by row.
    background = _background_sample(ctx)
    explainer = ctx.engine.memo(
        ctx.handle,
        ("shap-tabular", target, algorithm, array_digest(background)),
        lambda: shap.Explainer(
            _score_function(ctx.engine, ctx.handle, target),
            shap.maskers.Independent(background, max_samples=10**6),
            algorithm=algorithm,
        ),
    )
    np.random.seed(ctx.seed)  # what shap's permutation explainer does when built with a seed
    row = ctx.inputs[index : index + 1].detach().cpu().numpy()
    result = explainer(
        row,
        max_evals=_tabular_max_evals(algorithm, row.shape[1], ctx.options.shap.max_evals),
        batch_size=SHAP_BATCH,
        silent=True,
    )
    return np.asarray(result.values[0], dtype=np.float64), float(np.ravel(result.base_values)[0])


def _tabular_max_evals(algorithm: str, features: int, requested: int | None) -> int:
    """shap's budget: exact needs 2**F evaluations (refused above SHAP_MAX_EVALS), permutation
    at least 2F+1 (default max(500, 2F+1))."""
    if algorithm == "exact":
        _check_exact(features)
    needed = 2**features if algorithm == "exact" else 2 * features + 1
    if requested is None:
        return needed if algorithm == "exact" else max(PERMUTATION_MAX_EVALS, needed)
    if requested < needed:
        raise InvalidInput(
            f"shap's {algorithm} algorithm needs at least {needed} evaluations for this model",
            [ErrorItem(("options", "shap", "max_evals"), f"must be at least {needed}")],
        )
    return requested


def default_blur_kernel(height: int, width: int) -> int:
    """A quarter of the shorter side: blurred that much, a hidden region loses its content."""
    return max(3, min(height, width) // 4)


def _image_partition(ctx: MethodContext, index: int, target: int) -> tuple[np.ndarray, float]:
    image = ctx.inputs[index].detach().cpu().numpy().transpose(1, 2, 0)  # (H, W, C)
    kernel = ctx.options.shap.blur_kernel or default_blur_kernel(image.shape[0], image.shape[1])
    masker = ctx.engine.memo(
        ctx.handle,
        ("shap-image-masker", kernel, image.shape),
        lambda: BlurOnceImageMasker(f"blur({kernel},{kernel})", image.shape),
    )
    explainer = ctx.engine.memo(
        ctx.handle,
        ("shap-image", target, kernel, image.shape),
        lambda: partition_explainer(
            _score_function(ctx.engine, ctx.handle, target, masker), masker
        ),
    )
    result = explainer(
        image[None],
        max_evals=ctx.options.shap.max_evals or IMAGE_MAX_EVALS,
        batch_size=SHAP_BATCH,
        silent=True,
    )
    values = np.asarray(result.values[0], dtype=np.float64).sum(axis=-1)  # (H, W)
    return values, float(np.ravel(result.base_values)[0])


def _gradient(ctx: MethodContext) -> list[Explanation]:
    """Expected gradients over the background; one shap explainer per distinct target."""
    background = torch.from_numpy(_background_sample(ctx)).to(ctx.inputs.device)
    background_scores = ctx.engine.evaluate(ctx.handle, background).cpu().numpy()
    samples = ctx.options.shap.max_evals or GRADIENT_SAMPLES
    by_index: dict[int, Explanation] = {}
    for target in sorted(set(ctx.targets)):
        rows = [i for i, t in enumerate(ctx.targets) if t == target]

        # shap draws its samples before batching them: the batch changes float rounding only.
        # One call per row, each with the seed: given several rows, shap draws each row's
        # samples after the rows before it, so a row's values would depend on its batch.
        def run(chunk: int, target: int = target, rows: list[int] = rows) -> list[np.ndarray]:
            with torch.no_grad():  # shap runs the background once, for the output's shape
                explainer = shap.GradientExplainer(
                    _TargetScore(ctx, target), background, batch_size=chunk
                )
            return [
                np.asarray(
                    explainer.shap_values(ctx.inputs[i : i + 1], nsamples=samples, rseed=ctx.seed)
                )
                for i in rows
            ]

        values = ctx.engine.with_backoff(ctx.handle, run, gradients=True)
        base = float(background_scores[:, target].mean())
        for row_values, index in zip(values, rows, strict=True):
            row = row_values.reshape(ctx.inputs.shape[1:])
            attribution = row.sum(axis=0) if ctx.is_image else row
            by_index[index] = _explanation(ctx, index, attribution.astype(np.float64), base)
    return [by_index[i] for i in range(len(ctx.targets))]


class _TargetScore(torch.nn.Module):
    """Wraps the model so that its only output is one class's score."""

    def __init__(self, ctx: MethodContext, target: int) -> None:
        super().__init__()
        self.ctx = ctx
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ctx.forward(x)[:, self.target : self.target + 1]


def _explanation(ctx: MethodContext, index: int, values: np.ndarray, base: float) -> Explanation:
    error = abs(base + float(values.sum()) - float(ctx.scores[index]))
    return Explanation(
        "shap",
        values,
        ctx.score_kind,
        ctx.units,
        base_value=base,
        quality={"additivity_error": error},
    )
