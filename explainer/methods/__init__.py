"""One module per method family; `REGISTRY` maps a method name to its function."""

from collections.abc import Callable

from explainer.context import MethodContext
from explainer.methods.gradients import (
    gradcam,
    integrated_gradients,
    occlusion,
    saliency,
    smoothgrad,
)
from explainer.methods.lime_weights import lime
from explainer.methods.shap_values import shap_values
from explainer.methods.tree import tree
from explainer.result import Explanation

Method = Callable[[MethodContext], list[Explanation]]

REGISTRY: dict[str, Method] = {
    "saliency": saliency,
    "integrated_gradients": integrated_gradients,
    "shap": shap_values,
    "lime": lime,
    "tree": tree,
    "smoothgrad": smoothgrad,
    "gradcam": gradcam,
    "occlusion": occlusion,
}
