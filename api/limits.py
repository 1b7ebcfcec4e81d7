"""Request limits: instances per request and the method options' cost knobs (DESIGN 6).

Service-wide values come from `ApiConfig`; a model's `[limits]` in `model.toml` replace
them for that model. A request over a limit is a 422 naming the option.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from api.config import ApiConfig
from explainer.options import ExplainOptions
from models.errors import ErrorItem, LimitExceeded
from models.handle import ModelHandle


@dataclass(frozen=True)
class Limits:
    max_instances: int
    max_n_steps: int
    max_num_samples: int
    max_depth: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def model_limits(config: ApiConfig, handle: ModelHandle) -> Limits:
    """The limits in force for one model."""
    own = handle.spec.limits
    return Limits(
        max_instances=own.max_instances or config.max_instances,
        max_n_steps=own.max_n_steps or config.max_n_steps,
        max_num_samples=own.max_num_samples or config.max_num_samples,
        max_depth=own.max_depth or config.max_depth,
    )


def check_limits(limits: Limits, instances: int, options: ExplainOptions | None = None) -> None:
    """Raise LimitExceeded (422) listing every value over its limit."""
    checks: list[tuple[tuple[str | int, ...], int | None, int]] = [
        (("instances",), instances, limits.max_instances)
    ]
    if options is not None:
        checks += [
            (
                ("options", "integrated_gradients", "n_steps"),
                options.integrated_gradients.n_steps,
                limits.max_n_steps,
            ),
            (("options", "lime", "num_samples"), options.lime.num_samples, limits.max_num_samples),
            (("options", "shap", "max_evals"), options.shap.max_evals, limits.max_num_samples),
            (("options", "tree", "max_depth"), options.tree.max_depth, limits.max_depth),
        ]
    errors = [
        ErrorItem(loc, f"at most {limit} allowed")
        for loc, value, limit in checks
        if value is not None and value > limit
    ]
    if errors:
        raise LimitExceeded("the request exceeds a configured limit", errors)
