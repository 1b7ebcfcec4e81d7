"""explainer: saliency, integrated gradients, SHAP, LIME and tree surrogates for PyTorch models.

The library has no Flask: `explain(handle, inputs, methods, target, options, seed, engine)`
returns one `InstanceExplanation` per input row.
"""

from explainer.engine import Engine
from explainer.explain import available_methods, check_methods, explain, predict
from explainer.options import ALL_METHODS, METHODS, ExplainOptions
from explainer.result import (
    Explanation,
    InstanceExplanation,
    Prediction,
    Target,
    TreeSurrogate,
)
from explainer.targets import resolve_target

__all__ = [
    "ALL_METHODS",
    "METHODS",
    "Engine",
    "ExplainOptions",
    "Explanation",
    "InstanceExplanation",
    "Prediction",
    "Target",
    "TreeSurrogate",
    "available_methods",
    "check_methods",
    "explain",
    "predict",
    "resolve_target",
]
