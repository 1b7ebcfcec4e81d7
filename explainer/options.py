"""Per-method options with safe defaults and hard limits (DESIGN 6).

These pydantic models are the single vocabulary of options: the API embeds them in its
request schema (unknown keys are rejected), the CLI and audits pass them through, and
provenance records their resolved values.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

METHODS = ("saliency", "integrated_gradients", "shap", "lime", "tree")
EXTRA_METHODS = ("smoothgrad", "gradcam", "occlusion")
ALL_METHODS = METHODS + EXTRA_METHODS
IMAGE_ONLY_METHODS = ("gradcam",)

Baseline = Literal["zeros", "mean", "blur", "uniform"]

# The most model evaluations one SHAP explanation may use (`shap.max_evals`, and the 2**F
# that shap's exact algorithm needs for F features).
SHAP_MAX_EVALS = 20000


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SaliencyOptions(_Options):
    """captum Saliency: `abs=True` gives |d score / d x| (channels summed for images)."""

    abs: bool = True


class IntegratedGradientsOptions(_Options):
    """captum IntegratedGradients (Gauss-Legendre rule)."""

    n_steps: Annotated[int, Field(ge=2, le=1024)] = 50
    baseline: Baseline | None = None  # None: the model's default_baseline


class ShapOptions(_Options):
    """shap: permutation/exact with an Independent masker (tabular), Partition (images)."""

    algorithm: Literal["auto", "exact", "permutation", "partition", "gradient"] = "auto"
    # Model evaluations per instance (gradient: samples per instance). None: exact 2**F+1,
    # permutation max(500, 2*F+1), images (partition) 500, gradient 200.
    max_evals: Annotated[int, Field(ge=10, le=SHAP_MAX_EVALS)] | None = None
    background_size: Annotated[int, Field(ge=1, le=1000)] = 100
    # Images: the masker's blur size; None: a quarter of the image's shorter side, so that a
    # hidden region loses its content (64x64 -> 16, 224x224 -> 56).
    blur_kernel: Annotated[int, Field(ge=1, le=256)] | None = None


class LimeOptions(_Options):
    """lime: LimeTabularExplainer (quartile discretisation) or LimeImageExplainer."""

    num_samples: Annotated[int, Field(ge=50, le=20000)] = 1000
    kernel_width: Annotated[float, Field(gt=0, le=1000)] | None = None  # None: lime's default
    # Images: a hidden superpixel takes its own mean colour (lime's default) or black (zero).
    hide_color: Literal["mean", "zero"] = "mean"


class TreeOptions(_Options):
    """A local DecisionTreeRegressor fit on LIME's neighbourhood."""

    max_depth: Annotated[int, Field(ge=1, le=10)] = 3
    min_samples_leaf: Annotated[int, Field(ge=1, le=1000)] = 10
    holdout_fraction: Annotated[float, Field(gt=0.0, lt=0.9)] = 0.25


class SmoothGradOptions(_Options):
    """captum Saliency averaged over Gaussian-noised copies (as captum's NoiseTunnel)."""

    nt_samples: Annotated[int, Field(ge=1, le=256)] = 16
    # Fraction of each input's scale: the pixel range (images); each feature's standard
    # deviation in the background, or a quarter of its declared range without one (tabular).
    stdev: Annotated[float, Field(gt=0.0, le=10.0)] = 0.15


class GradCamOptions(_Options):
    """captum LayerGradCam on the model's `gradcam_layer` (or its last Conv2d)."""

    layer: str | None = None


class OcclusionOptions(_Options):
    """captum Occlusion: a sliding window replaced by the baseline."""

    window: Annotated[int, Field(ge=1, le=256)] = 8  # images: square window side
    stride: Annotated[int, Field(ge=1, le=256)] = 4


class ExplainOptions(_Options):
    """Options of every method; only those of requested methods are used."""

    def used_by(self, method: str) -> str:
        """The options `method`'s result depends on, as JSON: its own, and for the tree
        LIME's too (it is fit on LIME's neighbourhood: samples, kernel, hidden colour)."""
        groups = ("tree", "lime") if method == "tree" else (method,)
        return self.model_dump_json(include=set(groups))

    saliency: SaliencyOptions = Field(default_factory=SaliencyOptions)
    integrated_gradients: IntegratedGradientsOptions = Field(
        default_factory=IntegratedGradientsOptions
    )
    shap: ShapOptions = Field(default_factory=ShapOptions)
    lime: LimeOptions = Field(default_factory=LimeOptions)
    tree: TreeOptions = Field(default_factory=TreeOptions)
    smoothgrad: SmoothGradOptions = Field(default_factory=SmoothGradOptions)
    gradcam: GradCamOptions = Field(default_factory=GradCamOptions)
    occlusion: OcclusionOptions = Field(default_factory=OcclusionOptions)
