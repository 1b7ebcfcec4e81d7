"""A local decision-tree surrogate fit on LIME's neighbourhood (shared samples and scores).

A scikit-learn `DecisionTreeRegressor` is fit to the model's target score with LIME's
proximity weights, on a seeded split of the neighbourhood; fidelity is the weighted R^2 on
the held-out part. Rules are the conditions on the instance's own path, in original units
and feature names (images: superpixel regions kept). Attributions are the path
contributions: each split's change of the node mean is credited to its feature, so
`base_value (root mean) + sum(attributions) == leaf_value`.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from sklearn.tree import DecisionTreeRegressor

from explainer.context import MethodContext
from explainer.methods.fit_quality import ROUNDING_SPREAD, surrogate_r2
from explainer.methods.lime_weights import spread_over_segments
from explainer.methods.neighbourhood import Neighbourhood, neighbourhoods, without_sklearn_checks
from explainer.result import Explanation, TreeSurrogate

MIN_HELD_OUT = 2  # rows held out to measure fidelity


def tree(ctx: MethodContext) -> list[Explanation]:
    hoods = neighbourhoods(ctx)
    with without_sklearn_checks():
        return [_explain(ctx, hood) for hood in hoods]


def _split(size: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/held-out split; the instance itself (row 0) is always trained on.

    At least MIN_HELD_OUT rows are held out (R^2 is undefined on fewer), and at least one
    row besides the instance is trained on.
    """
    order = np.random.default_rng(seed).permutation(np.arange(1, size))
    held = min(size - 2, max(MIN_HELD_OUT, round(fraction * size)))
    return np.concatenate([[0], np.sort(order[held:])]), np.sort(order[:held])


def _explain(ctx: MethodContext, hood: Neighbourhood) -> Explanation:
    options = ctx.options.tree
    train, held = _split(len(hood.samples), options.holdout_fraction, ctx.seed)
    # scikit-learn trees split on float32 (it converts whatever it is given); converted here
    # once, its per-call input checks are skipped (the samples are finite by construction).
    samples = np.ascontiguousarray(hood.samples, dtype=np.float32)
    scores, weights = hood.scores[train], hood.weights[train]
    model = DecisionTreeRegressor(
        max_depth=options.max_depth,
        min_samples_leaf=options.min_samples_leaf,
        # A split must gain more than float rounding: a node of equal scores has an impurity
        # of about 1e-16 times their square, and splitting it would name a feature the score
        # does not depend on.
        min_impurity_decrease=ROUNDING_SPREAD * float(np.average(scores**2, weights=weights)),
        random_state=ctx.seed,
    ).fit(samples[train], scores, sample_weight=weights, check_input=False)
    predicted = model.predict(samples[held], check_input=False)
    fidelity = surrogate_r2(hood.scores[held], predicted, hood.weights[held])
    point = hood.samples[0]  # the instance in the surrogate's feature space
    path = model.decision_path(samples[:1], check_input=False).indices.tolist()
    names = _feature_names(ctx, len(point))
    structure = model.tree_
    values = structure.value[:, 0, 0]
    contributions = np.zeros(len(point), dtype=np.float64)
    rules = []
    for parent, child in itertools.pairwise(path):
        feature = int(structure.feature[parent])
        contributions[feature] += values[child] - values[parent]
        went_left = child == structure.children_left[parent]
        rules.append(_rule(ctx, names, feature, float(structure.threshold[parent]), went_left))
    leaf_value = float(values[path[-1]])
    segments = hood.segments
    attributions = (
        contributions if segments is None else spread_over_segments(contributions, segments)
    )
    surrogate = TreeSurrogate(
        rules=rules, leaf_value=leaf_value, tree=_tree_dict(model, names, path)
    )
    return Explanation(
        "tree",
        attributions,
        ctx.score_kind,
        ctx.units,
        base_value=float(values[0]),
        quality={"fidelity_r2": fidelity},
        segments=segments,
        segment_weights=None if segments is None else contributions,
        surrogate=surrogate,
    )


def _feature_names(ctx: MethodContext, count: int) -> list[str]:
    if ctx.is_image:
        return [f"region {i}" for i in range(count)]
    return ctx.handle.feature_names


def _rule(ctx: MethodContext, names: list[str], feature: int, threshold: float, left: bool) -> str:
    """A readable condition in original units: numeric, categorical or image region."""
    name = names[feature]
    if ctx.is_image:
        return f"{name} hidden" if left else f"{name} kept"
    spec = ctx.handle.spec.tabular
    assert spec is not None
    categories = spec.categorical.get(name)
    if categories is not None:
        chosen = [c for code, c in enumerate(categories) if (code <= threshold) == left]
        return f"{name} in {{{', '.join(chosen)}}}"
    unit = spec.units.get(name, "")
    value = threshold_text(threshold)
    return f"{name} {'<=' if left else '>'} {value}{' ' + unit if unit else ''}"


def threshold_text(threshold: float) -> str:
    """The shortest decimal that splits float32 inputs (what the tree compares) exactly as
    `threshold` does: rounded further, a rule could contradict the leaf for inputs between
    the printed and the real threshold; the full float64 digits say nothing more."""
    nearest = np.float32(threshold)  # the largest float32 <= threshold, and the next one up
    below = nearest if float(nearest) <= threshold else np.nextafter(nearest, np.float32(-np.inf))
    low, high = float(below), float(np.nextafter(below, np.float32(np.inf)))
    for digits in range(1, 18):
        text = np.format_float_positional(
            threshold, precision=digits, unique=False, fractional=False, trim="-"
        )
        if low <= float(text) < high:
            return text
    return np.format_float_positional(threshold, unique=True, trim="-")


def _tree_dict(model: DecisionTreeRegressor, names: list[str], path: list[int]) -> dict[str, Any]:
    """The whole fitted tree as JSON-ready nodes, with the instance's path."""
    structure = model.tree_
    nodes = []
    for node in range(structure.node_count):
        entry: dict[str, Any] = {
            "id": node,
            "value": float(structure.value[node, 0, 0]),
            "weight": float(structure.weighted_n_node_samples[node]),
        }
        left, right = int(structure.children_left[node]), int(structure.children_right[node])
        if left != right:
            threshold = float(structure.threshold[node])
            entry.update(
                feature=names[int(structure.feature[node])],
                threshold=threshold,
                threshold_text=threshold_text(threshold),  # as the rules write it
                left=left,
                right=right,
            )
        nodes.append(entry)
    return {"nodes": nodes, "path": path}
