"""Request and response schemas (pydantic): they validate bodies and generate /openapi.json.

Method options are `explainer.options.ExplainOptions`, embedded as is: its per-method
models carry the hard limits and reject unknown keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, WithJsonSchema

from explainer.options import ALL_METHODS, ExplainOptions
from explainer.render import COLORMAPS, STYLES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_SCALAR: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "string"}]}

# Validated per model by ModelHandle.decode (feature names, ranges, image format and size).
Instance = Annotated[
    Any,
    WithJsonSchema(
        {
            "description": "tabular: an object keyed by feature name or a list in feature "
            'order; image: {"b64": "<base64 PNG or JPEG>"}',
            "anyOf": [
                {"type": "object", "additionalProperties": _SCALAR},
                {"type": "array", "items": _SCALAR},
                {
                    "type": "object",
                    "properties": {"b64": {"type": "string"}},
                    "required": ["b64"],
                    "additionalProperties": False,
                },
            ],
        }
    ),
]
Instances = Annotated[list[Instance], Field(min_length=1)]
MethodName = Literal[ALL_METHODS]  # type: ignore[valid-type]


class PredictRequest(_Strict):
    """`{"instances": [...]}` (KServe V1)."""

    instances: Instances


class ExplainRequest(_Strict):
    """Every key but `instances` is optional."""

    instances: Instances
    methods: Annotated[list[MethodName], Field(min_length=1)] | None = Field(
        default=None, description="default: saliency, integrated_gradients, shap, lime, tree"
    )
    target: StrictStr | StrictInt = Field(
        default="predicted", description='"predicted", a class index or a class label'
    )
    seed: Annotated[StrictInt, Field(ge=0, le=2**32 - 1)] = 0
    options: ExplainOptions = Field(default_factory=ExplainOptions)
    heatmaps: StrictBool = Field(default=True, description="include heatmap_url per method")


class ExplainMultipart(_Strict):
    """multipart/form-data: image files in `instances` and the other keys as JSON."""

    instances: list[bytes] = Field(
        json_schema_extra={"items": {"type": "string", "format": "binary"}}
    )
    request: str | None = Field(
        default=None, description="JSON object: ExplainRequest without instances"
    )


# ---- path and query parameters ----


class ModelPath(BaseModel):
    name: str = Field(description="model name")


class ExplanationPath(BaseModel):
    id: str = Field(description="explanation id")


class HeatmapPath(BaseModel):
    id: str = Field(description="explanation id")
    index: Annotated[int, Field(ge=0)] = Field(description="instance index in the request")
    method: str = Field(description="method name")


class HeatmapQuery(_Strict):
    style: Literal[STYLES] = "overlay"  # type: ignore[valid-type]
    colormap: Literal[COLORMAPS] | None = Field(  # type: ignore[valid-type]
        default=None, description="default: RdBu_r for signed maps, viridis otherwise"
    )
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6


# ---- responses ----


class ErrorLocation(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details (served as application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ErrorLocation]


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    models: list[str] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict)


class ImageInfo(BaseModel):
    height: int
    width: int
    channels: int


class ModelInfo(BaseModel):
    name: str
    version: str
    modality: Literal["tabular", "image"]
    classes: list[str]
    output: Literal["logits", "probabilities"]
    sha256: str
    description: str = ""
    features: list[str] | None = None
    units: dict[str, str] | None = None  # tabular: units per feature
    ranges: dict[str, dict[str, float]] | None = None  # tabular: {feature: {min, max}}
    categorical: dict[str, list[str]] | None = None  # tabular: categories per feature
    image: ImageInfo | None = None
    methods: list[str]
    default_methods: list[str]
    limits: dict[str, int]
    example: dict[str, float | str] | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


class PredictionOut(BaseModel):
    label: str
    index: int
    probabilities: list[float]


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


class TargetOut(BaseModel):
    label: str
    index: int


class MethodOut(BaseModel):
    """One method's explanation: `attributions` (F values, or an H x W map) and extras."""

    model_config = ConfigDict(extra="allow")

    attributions: list[Any]
    units: str
    score_kind: Literal["logit", "probability"]
    quality: dict[str, float | None]
    heatmap_url: str | None = None
    base_value: float | None = None
    intercept: float | None = None
    rules: list[str] | None = None
    leaf_value: float | None = None
    tree: dict[str, Any] | None = None
    segments: list[list[int]] | None = None
    segment_weights: list[float | None] | None = None
    cached: bool | None = Field(
        None,
        description="true when the result came from the explanation cache (its timings_ms "
        "entry is that of the run that computed it)",
    )
    magnitude: bool | None = Field(
        None,
        description="true when the attributions are absolute values with no direction "
        "(saliency with abs, smoothgrad)",
    )


class ReasonCode(BaseModel):
    rank: int
    feature: str
    reason: str
    contribution: float


class ReasonCodes(BaseModel):
    method: str
    adverse_class: TargetOut
    codes: list[ReasonCode]


class InstanceOut(BaseModel):
    prediction: PredictionOut
    target: TargetOut
    score: float
    methods: dict[str, MethodOut]
    timings_ms: dict[str, float]
    reason_codes: ReasonCodes | None = None


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str


class Provenance(BaseModel):
    versions: dict[str, str]
    device: str
    seed: int
    target: str | int
    methods: list[str]
    options: dict[str, Any]


class ExplainResponse(BaseModel):
    id: str
    created_at: str
    model: ModelRef
    explanations: list[InstanceOut]
    provenance: Provenance
