"""The `model.toml` schema (DESIGN 3.1) and its parser.

A bad file raises :class:`ModelConfigError` naming the file and the offending key, so that a
repository with one broken model still serves the others.
"""

from __future__ import annotations

import tomllib
import unicodedata
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    model_validator,
)

Modality = Literal["tabular", "image"]
ArtifactFormat = Literal["torchscript", "export", "safetensors"]
OutputKind = Literal["logits", "probabilities"]
# The model's inputs are float32: ranges and normalisation must fit it.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
# Size limits on the repository's files, checked from the file's size before it is read.
MAX_MODEL_TOML_BYTES = 1 << 20  # 1 MiB
MAX_ARTIFACT_BYTES = 2 << 30  # 2 GiB: the artifact (weights or archive) and background.npz


def _float32(number: float) -> float:
    if abs(number) > FLOAT32_MAX:
        raise ValueError(f"must be at most {FLOAT32_MAX:.8g} in magnitude (float32)")
    return number


Float32 = Annotated[FiniteFloat, AfterValidator(_float32)]


def _printable(text: str, allowed: str = "") -> str:
    """Refuse control characters (newlines, escape sequences) but `allowed`: labels reach
    terminals, tables, CSV headers and PNG text."""
    if any(unicodedata.category(char) == "Cc" and char not in allowed for char in text):
        raise ValueError("must not hold control characters")
    return text


# A name or label shown to people, on one line.
Label = Annotated[str, AfterValidator(_printable)]
# A text shown to people: lines and tabs allowed (a multi-line TOML string).
Text = Annotated[str, AfterValidator(lambda text: _printable(text, "\n\t"))]


class ModelConfigError(ValueError):
    """A `model.toml` that cannot be used: names the file and the key."""

    def __init__(self, path: Path, key: str, message: str) -> None:
        super().__init__(f"{path}: key '{key}': {message}")
        self.path = path
        self.key = key
        self.message = message


def _in_words(size: int) -> str:
    """A byte count as GiB, MiB or KiB when it is a whole number of them, else bytes."""
    for unit, power in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << power and size % (1 << power) == 0:
            return f"{size >> power} {unit}"
    return f"{size} bytes"


def _check_size(path: Path, limit: int, where: Path, key: str) -> None:
    size = path.stat().st_size
    if size > limit:
        raise ModelConfigError(
            where, key, f"{path.name} is {size} bytes, over the limit of {_in_words(limit)}"
        )


def check_artifact_size(path: Path, where: Path, key: str) -> None:
    """Raise ModelConfigError (naming `where` and `key`) when the file `path`, a model
    artifact or background, is larger than MAX_ARTIFACT_BYTES: checked before it is read."""
    _check_size(path, MAX_ARTIFACT_BYTES, where, key)


class _Strict(BaseModel):
    # Strict: TOML has types, so `channels = true` or `height = "64"` is a mistake, not 1
    # or 64 (integers are still taken where a float is expected).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FeatureRange(_Strict):
    """Valid range of a numeric feature, in its own units (inclusive)."""

    min: Float32
    max: Float32

    @model_validator(mode="after")
    def _ordered(self) -> FeatureRange:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class TabularSpec(_Strict):
    """Tabular input description: feature order and optional metadata."""

    features: Annotated[list[Label], Field(min_length=1)]
    # Units shown next to each feature (e.g. "mm", "EUR/year").
    units: dict[str, Label] = Field(default_factory=dict)
    # Valid ranges; inputs outside are rejected with a 422.
    ranges: dict[str, FeatureRange] = Field(default_factory=dict)
    # Categorical features: the model receives the category's index in this list.
    categorical: dict[str, list[Label]] = Field(default_factory=dict)
    # Adverse-action texts per feature, e.g. "Debt-to-income ratio too high".
    reasons: dict[str, Label] = Field(default_factory=dict)
    # Index of the adverse class (for reason codes), e.g. the "default" class.
    adverse_class: int | None = None
    # Protected attributes (e.g. age band): never given as adverse-action reasons; audits
    # report disparities between their groups.
    protected: list[str] = Field(default_factory=list)

    @property
    def numeric_features(self) -> list[str]:
        """The features that are not categorical, in feature order."""
        return [name for name in self.features if name not in self.categorical]

    @property
    def unranged_features(self) -> list[str]:
        """The numeric features without a range in `ranges`, in feature order."""
        return [name for name in self.numeric_features if name not in self.ranges]

    @model_validator(mode="after")
    def _known_features(self) -> TabularSpec:
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: names must be unique")
        known = set(self.features)
        for key in ("units", "ranges", "categorical", "reasons", "protected"):
            unknown = sorted(set(getattr(self, key)) - known)
            if unknown:
                raise ValueError(f"{key}: unknown feature(s) {unknown}")
        for name, cats in self.categorical.items():
            if len(cats) < 2 or len(set(cats)) != len(cats):
                raise ValueError(f"categorical.{name}: needs at least two distinct categories")
        return self


class ImageSpec(_Strict):
    """Image input description: size, channels and the normalisation the model expects."""

    height: Annotated[int, Field(ge=8, le=4096)]
    width: Annotated[int, Field(ge=8, le=4096)]
    channels: Annotated[int, Field(ge=1, le=3)]
    mean: list[Float32]
    std: list[Float32]
    # Dotted path of the convolution layer used by Grad-CAM, e.g. "features.3".
    gradcam_layer: str | None = None

    @model_validator(mode="after")
    def _per_channel(self) -> ImageSpec:
        if self.channels not in (1, 3):
            raise ValueError("channels: must be 1 or 3")
        for key in ("mean", "std"):
            if len(getattr(self, key)) != self.channels:
                raise ValueError(f"{key}: needs one value per channel ({self.channels})")
        if any(s < FLOAT32_TINY for s in self.std):  # a smaller std divides by zero in float32
            raise ValueError(f"std: values must be at least {FLOAT32_TINY:.8g} (float32)")
        return self


class ModelLimits(_Strict):
    """Per-model overrides of the service limits."""

    max_instances: Annotated[int, Field(ge=1)] | None = None
    max_n_steps: Annotated[int, Field(ge=1)] | None = None
    max_num_samples: Annotated[int, Field(ge=10)] | None = None
    max_depth: Annotated[int, Field(ge=1)] | None = None


class ModelSpec(_Strict):
    """A parsed, validated `model.toml`."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    version: Annotated[Label, Field(min_length=1, max_length=64)]
    modality: Modality
    format: ArtifactFormat
    artifact: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    classes: Annotated[list[Label], Field(min_length=2)]
    output: OutputKind
    factory: str | None = None
    description: Text = ""
    # Default IG baseline: "zeros" | "mean" | "blur" | "uniform".
    default_baseline: Literal["zeros", "mean", "blur", "uniform"] = "zeros"
    # An example input (a tabular row keyed by feature name) for docs and the viewer.
    example: dict[str, FiniteFloat | Label] | None = None
    tabular: TabularSpec | None = None
    image: ImageSpec | None = None
    limits: ModelLimits = Field(default_factory=ModelLimits)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.modality == "tabular" and self.tabular is None:
            raise ValueError("tabular: required when modality = 'tabular'")
        if self.modality == "image" and self.image is None:
            raise ValueError("image: required when modality = 'image'")
        if self.format == "safetensors" and not self.factory:
            raise ValueError("factory: required when format = 'safetensors'")
        if self.factory is not None and ":" not in self.factory:
            raise ValueError("factory: must look like 'package.module:function'")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes: names must be unique")
        adverse = self.tabular.adverse_class if self.tabular else None
        if adverse is not None and not 0 <= adverse < len(self.classes):
            raise ValueError("tabular.adverse_class: out of range of classes")
        if self.example is not None and self.tabular is not None:
            missing = sorted(set(self.tabular.features) - set(self.example))
            if missing:
                raise ValueError(f"example: missing feature(s) {missing}")
            unknown = sorted(set(self.example) - set(self.tabular.features))
            if unknown:
                raise ValueError(f"example: unknown feature(s) {unknown}")
        if self.default_baseline == "blur" and self.modality != "image":
            raise ValueError("default_baseline: 'blur' is for image models")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _first_error_key(error: ValidationError) -> tuple[str, str]:
    """The dotted key and message of the first validation error."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    msg = str(first["msg"])
    # Model-level validators report "field: message" with an empty location.
    if not loc and ": " in msg:
        key, _, msg = msg.removeprefix("Value error, ").partition(": ")
        return key, msg
    if first["type"] == "missing":
        msg = "missing required key"
    elif first["type"] == "extra_forbidden":
        msg = "unknown key"
    if ": " in msg and msg.startswith("Value error, "):
        sub, _, msg = msg.removeprefix("Value error, ").partition(": ")
        loc.append(sub)
    return ".".join(loc) or "<root>", msg.removeprefix("Value error, ")


def parse_model_toml(path: Path) -> ModelSpec:
    """Read and validate one `model.toml` (at most MAX_MODEL_TOML_BYTES); raise
    ModelConfigError naming the key."""
    try:
        _check_size(path, MAX_MODEL_TOML_BYTES, path, "<file>")
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(path, "<syntax>", str(exc)) from None
    except OSError as exc:
        raise ModelConfigError(path, "<file>", exc.strerror or str(exc)) from None
    try:
        return ModelSpec.model_validate(raw)
    except ValidationError as exc:
        key, msg = _first_error_key(exc)
        raise ModelConfigError(path, key, msg) from None
