"""Request limits: instances per request and the method options' cost knobs (DESIGN 6).

Service-wide values come from `ApiConfig`; a model's `[limits]` in `model.toml` replace
them for that model. A request over a limit is a 422 naming the option. SHAP is checked by
the evaluations it would actually use (`evaluation_budget`): its default when `max_evals`
is unset, and 2**F for the exact algorithm on F features, whatever `max_evals` says.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from api.config import ApiConfig
from explainer.methods.shap_values import evaluation_budget, exact_budget_error
from explainer.options import ExplainOptions, ShapOptions
from models.errors import ErrorItem, LimitExceeded
from models.handle import ModelHandle


@dataclass(frozen=True)
class Limits:
    max_instances: int
    max_n_steps: int
    max_num_samples: int
    max_depth: int
    # Not a limit: the model's tabular feature count (None for images), which SHAP's
    # evaluation budget depends on.
    features: int | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, int]:
        return {
            "max_instances": self.max_instances,
            "max_n_steps": self.max_n_steps,
            "max_num_samples": self.max_num_samples,
            "max_depth": self.max_depth,
        }


def model_limits(config: ApiConfig, handle: ModelHandle) -> Limits:
    """The limits in force for one model."""
    own = handle.spec.limits
    return Limits(
        max_instances=own.max_instances or config.max_instances,
        max_n_steps=own.max_n_steps or config.max_n_steps,
        max_num_samples=own.max_num_samples or config.max_num_samples,
        max_depth=own.max_depth or config.max_depth,
        features=None if handle.is_image else len(handle.feature_names),
    )


def check_limits(
    limits: Limits,
    instances: int,
    options: ExplainOptions | None = None,
    methods: Collection[str] = (),
) -> None:
    """Raise LimitExceeded (422) listing every value over its limit: the instances, and the
    options of the requested `methods` (the tree's include LIME's: it uses its samples)."""
    checks: list[tuple[tuple[str | int, ...], int | None, int]] = [
        (("instances",), instances, limits.max_instances)
    ]
    if options is not None:
        lime_samples = options.lime.num_samples, limits.max_num_samples
        by_method: dict[str, list[tuple[str, int | None, int]]] = {
            "integrated_gradients": [
                ("n_steps", options.integrated_gradients.n_steps, limits.max_n_steps)
            ],
            "lime": [("num_samples", *lime_samples)],
            "shap": [("max_evals", options.shap.max_evals, limits.max_num_samples)],
            "tree": [("max_depth", options.tree.max_depth, limits.max_depth)],
        }
        checks += [
            (("options", method, name), value, limit)
            for method in by_method
            if method in methods
            for name, value, limit in by_method[method]
        ]
        if "tree" in methods and "lime" not in methods:
            checks.append((("options", "lime", "num_samples"), *lime_samples))
    errors = [
        ErrorItem(loc, f"at most {limit} allowed")
        for loc, value, limit in checks
        if value is not None and value > limit
    ]
    if options is not None and "shap" in methods:
        errors += _shap_budget_errors(options.shap, limits)
    if errors:
        raise LimitExceeded("the request exceeds a configured limit", errors)


def _shap_budget_errors(options: ShapOptions, limits: Limits) -> list[ErrorItem]:
    """SHAP's evaluations over the limit where `max_evals` alone does not say so: exact SHAP
    (2**F, whatever `max_evals` is) and the default budget when `max_evals` is unset."""
    limit = limits.max_num_samples
    budget = evaluation_budget(options, limits.features)
    if budget <= limit:
        return []
    if limits.features is not None:
        exact = exact_budget_error(options.algorithm, limits.features, limit)
        if exact is not None:
            return [exact]
    if options.max_evals is not None:  # reported with the other options
        return []
    return [
        ErrorItem(
            ("options", "shap", "max_evals"),
            f"unset, it is {budget}; at most {limit} allowed: set a lower max_evals",
        )
    ]
