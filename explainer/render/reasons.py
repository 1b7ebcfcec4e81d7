"""Reason codes: the features that push a tabular decision toward the adverse class.

For a model whose `model.toml` gives `tabular.reasons` and `tabular.adverse_class`, the
features are ranked by their attribution toward the adverse class, taken from the first
requested method of `REASON_METHODS` (SHAP when requested, else integrated gradients, LIME,
occlusion; saliency and the tree are not additive contributions and are never used).
Attributions explain the target class: when the target is the adverse class they are used
as they are; for a two-class model whose outputs are probabilities, with the other class as
target, their sign is flipped (p0 = 1 - p1); otherwise (logits, or more classes) there are
no reason codes. Up to `MAX_REASONS` features with a positive push are
listed, each with its text (the feature name when it has none). Protected attributes
(`tabular.protected`, e.g. an age band) are never given as reasons.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explainer.result import InstanceExplanation
from explainer.targets import complementary_scores, toward_class
from models.handle import ModelHandle

REASON_METHODS = ("shap", "integrated_gradients", "lime", "occlusion")
MAX_REASONS = 4


def reason_codes(handle: ModelHandle, result: InstanceExplanation) -> dict[str, Any] | None:
    """`{"method", "adverse_class", "codes": [{rank, feature, reason, contribution}]}` or None."""
    tabular = handle.spec.tabular
    if tabular is None or tabular.adverse_class is None or not tabular.reasons:
        return None
    method = next((name for name in REASON_METHODS if name in result.methods), None)
    if method is None:
        return None
    values = np.nan_to_num(np.asarray(result.methods[method].attributions, dtype=np.float64))
    adverse = tabular.adverse_class
    push = toward_class(values, result.target.index, adverse, complementary_scores(handle))
    if push is None:
        return None
    protected = set(tabular.protected)
    order = [
        int(i)
        for i in np.argsort(-push, kind="stable")
        if push[i] > 0 and tabular.features[i] not in protected
    ][:MAX_REASONS]
    codes = [
        {
            "rank": rank,
            "feature": tabular.features[i],
            "reason": tabular.reasons.get(tabular.features[i], tabular.features[i]),
            "contribution": float(push[i]),
        }
        for rank, i in enumerate(order, start=1)
    ]
    return {
        "method": method,
        "adverse_class": {"index": adverse, "label": handle.spec.classes[adverse]},
        "codes": codes,
    }
