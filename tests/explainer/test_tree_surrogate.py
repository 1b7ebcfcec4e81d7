"""The tree surrogate on a neighbourhood of known scores."""

from __future__ import annotations

import numpy as np
import torch

from explainer import Engine, ExplainOptions
from explainer.context import MethodContext
from explainer.methods.neighbourhood import Neighbourhood
from explainer.methods.tree import tree
from models import ModelHandle


def _two_valued(seed: int) -> Neighbourhood:
    """Scores of 2.0 where f0 > 0, else -0.4: the other features say nothing."""
    rng = np.random.default_rng(seed)
    samples = rng.normal(size=(400, 6))
    scores = np.where(samples[:, 0] > 0, 2.0, -0.4)
    return Neighbourhood(
        samples=samples,
        scores=scores,
        weights=rng.random(400),
        lime_weights=np.zeros(6),
        lime_intercept=0.0,
        lime_r2=1.0,
        segments=None,
    )


def test_the_tree_does_not_split_equal_scores(known_models: dict[str, ModelHandle]) -> None:
    """A node whose scores are all equal is a leaf. scikit-learn's squared error of equal
    weighted scores is float rounding (about 1e-16) and went on to be split, on features
    the scores do not depend on: rules such as "f2 <= -0.31" with no change of the score."""
    handle = known_models["logistic"]
    for seed in range(8):
        hood = _two_valued(seed)
        ctx = MethodContext(
            handle=handle,
            engine=Engine(cache_entries=0),
            inputs=torch.from_numpy(hood.samples[:1]).float(),
            targets=[1],
            scores=hood.scores[:1],
            options=ExplainOptions(),
            seed=0,
            shared={"neighbourhoods": [hood]},
        )
        surrogate = tree(ctx)[0].surrogate
        assert surrogate is not None
        used = {node.get("feature") for node in surrogate.tree["nodes"]}
        assert used == {"f0", None}, seed
        assert len(surrogate.rules) == 1
