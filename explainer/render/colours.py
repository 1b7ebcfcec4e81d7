"""Colour maps (matplotlib's, colour-blind-safe ones only) and value normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps

from models.errors import ErrorItem, InvalidInput

# Signed maps: white at zero, hue tells the sign.
DIVERGING_COLORMAPS = ("RdBu_r", "coolwarm", "PuOr_r", "BrBG")
# Magnitudes: perceptually uniform, readable in grey.
SEQUENTIAL_COLORMAPS = ("viridis", "cividis", "magma", "inferno", "plasma")
COLORMAPS = DIVERGING_COLORMAPS + SEQUENTIAL_COLORMAPS
STYLES = ("overlay", "map")
DEFAULT_DIVERGING = "RdBu_r"
DEFAULT_SEQUENTIAL = "viridis"


class RenderError(InvalidInput):
    """A rendering parameter (style, colormap, alpha) is not allowed (422)."""


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RenderError(
            f"unknown {name}", [ErrorItem((name,), f"must be one of {list(allowed)}")]
        )


def check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise RenderError("alpha out of range", [ErrorItem(("alpha",), "must be within [0, 1]")])


@dataclass(frozen=True)
class Scale:
    """How values map onto [0, 1] colour positions: [-max|v|, max|v|] (zero in the middle)
    when symmetric, else [0, max v], so that colour and strength always measure from zero."""

    low: float
    high: float

    @classmethod
    def for_values(cls, values: np.ndarray, symmetric: bool) -> Scale:
        finite = values[np.isfinite(values)]
        bound = (float(np.abs(finite).max()) if finite.size else 0.0) or 1.0
        return cls(-bound, bound) if symmetric else cls(0.0, bound)

    def positions(self, values: np.ndarray) -> np.ndarray:
        """Values -> [0, 1]; non-finite values go to the middle (symmetric) or bottom."""
        scaled = (values - self.low) / (self.high - self.low)
        fallback = 0.5 if self.low < 0 < self.high else 0.0
        return np.clip(np.where(np.isfinite(scaled), scaled, fallback), 0.0, 1.0)

    def strengths(self, values: np.ndarray) -> np.ndarray:
        """|v| / the scale's largest |v|, in [0, 1]; non-finite values have none."""
        strength = np.abs(values) / max(abs(self.low), abs(self.high))
        return np.clip(np.where(np.isfinite(strength), strength, 0.0), 0.0, 1.0)


def is_signed(values: np.ndarray) -> bool:
    """A map with any negative value is drawn with a diverging colour map."""
    finite = values[np.isfinite(values)]
    return bool(finite.size and finite.min() < 0)


def is_symmetric(colormap: str, signed: bool) -> bool:
    """Signed data, or any data on a diverging colour map, is scaled symmetrically (white at
    zero): a diverging map from min to max would paint weak values as "away"."""
    return signed or colormap in DIVERGING_COLORMAPS


def pick_colormap(colormap: str | None, signed: bool) -> str:
    """The requested colour map (checked against the whitelist) or the default for the data."""
    if colormap is None:
        return DEFAULT_DIVERGING if signed else DEFAULT_SEQUENTIAL
    check_choice("colormap", colormap, COLORMAPS)
    return colormap


def to_rgb(positions: np.ndarray, colormap: str) -> np.ndarray:
    """[0, 1] positions of any shape -> uint8 RGB with a trailing axis of 3."""
    rgba = colormaps[colormap](positions)
    return np.asarray(np.round(rgba[..., :3] * 255), dtype=np.uint8)
