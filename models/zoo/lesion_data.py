"""Generated 64x64 "skin lesion" images with ground-truth lesion masks (the `lesion-64` model).

Each image is skin-like textured background with one brown lesion. The class depends ONLY on
the lesion's INTERIOR colouring (after the "C", colour variegation, of dermoscopy's ABCD rule):

* 0 "benign": a uniform brown interior (faint mottling only);
* 1 "malignant": a multi-coloured interior: a blue-grey veil patch and dark brown-black dots
  (globules), all drawn strictly inside the lesion (at least `INNER_MARGIN` px from its edge).

The lesion's outline is NOT informative: both classes draw round, elliptical and irregular
(lobed or spiky) outlines with the same probabilities. Size, position, outline, skin tone,
lesion colour and mottling are drawn independently of the class. Distractors that do NOT
affect the class are added at random: hairs (thin dark curves across the image, also over
the lesion) and a purple ink mark (a short thick stroke, as left by a surgical marker) placed
outside the lesion. The mask is the lesion itself (hairs not removed): every pixel that
decides the class lies inside it, so it is the ground-truth region for explanations.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt
from skimage.draw import line_aa
from skimage.filters import gaussian

SIZE = 64
CLASSES = ("benign", "malignant")

# Fixed split: training and test sets come from separate seeds.
TRAIN_SEED, TRAIN_SIZE = 1, 1600
TEST_SEED, TEST_SIZE = 2, 1000

HAIR_PROB = 0.4
INK_PROB = 0.4
IRREGULAR_PROB = 0.5  # share of irregular outlines, the same in both classes
INNER_MARGIN = 2.5  # px: malignant colours stay at least this far inside the lesion's edge


@dataclass(frozen=True)
class LesionData:
    """Images (N, 64, 64, 3) uint8, labels (N,) int64, lesion masks (N, 64, 64) bool."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def _outline_radius(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Relative outline radius r(theta) (mean about 1); independent of the class."""
    stretch = rng.uniform(0.0, 0.15)
    radius = 1.0 + stretch * np.cos(2.0 * (theta - rng.uniform(0.0, np.pi)))
    radius += rng.uniform(0.0, 0.04) * np.cos(3.0 * theta + rng.uniform(0.0, 2 * np.pi))
    if rng.uniform() < IRREGULAR_PROB:
        for k in rng.choice(np.arange(3, 12), size=3, replace=False):
            amplitude = rng.uniform(0.05, 0.14)
            radius += amplitude * np.cos(k * theta + rng.uniform(0.0, 2 * np.pi))
    return radius


def _skin(rng: np.random.Generator) -> np.ndarray:
    """Skin-like background (64, 64, 3) float in [0, 255]: a tone plus smooth texture."""
    tone = np.array([226.0, 178.0, 146.0]) * rng.uniform(0.78, 1.05) + rng.normal(0.0, 6.0, 3)
    texture = gaussian(rng.normal(0.0, 1.0, (SIZE, SIZE)), sigma=3.0) * 60.0
    fine = rng.normal(0.0, 3.0, (SIZE, SIZE, 3))
    return tone[None, None, :] + texture[:, :, None] + fine


def _inner_points(inner: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random (row, col) pixel centres drawn from the True pixels of `inner`."""
    rows, cols = np.nonzero(inner)
    pick = rng.integers(0, len(rows), count)
    return np.stack([rows[pick], cols[pick]], axis=1).astype(np.float64)


def _variegation(lesion: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a blue-grey veil and dark dots strictly inside `mask` onto `lesion`."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    depth = distance_transform_edt(mask)
    inner = depth >= INNER_MARGIN
    # Blue-grey veil: a soft patch of radius 3-6 px, centred where it fits.
    fits = depth >= INNER_MARGIN + 3.0
    ((vy, vx),) = _inner_points(fits if fits.any() else inner, 1, rng)
    veil_radius = rng.uniform(3.0, 6.0)
    veil = np.clip(veil_radius - np.hypot(yy - vy, xx - vx) + 0.5, 0.0, 1.0) * 0.8 * inner
    veil_colour = np.array([108.0, 122.0, 150.0]) * rng.uniform(0.8, 1.1) + rng.normal(0, 5, 3)
    lesion = veil[:, :, None] * veil_colour + (1.0 - veil[:, :, None]) * lesion
    # Dark brown-black dots and globules (radius 0.8-1.8 px).
    for dy, dx in _inner_points(inner, int(rng.integers(5, 12)), rng):
        dot = np.clip(rng.uniform(0.8, 1.8) - np.hypot(yy - dy, xx - dx) + 0.5, 0.0, 1.0)
        dot = dot * inner
        dot_colour = np.array([38.0, 24.0, 20.0]) * rng.uniform(0.6, 1.3)
        lesion = dot[:, :, None] * dot_colour + (1.0 - dot[:, :, None]) * lesion
    return lesion


def _lesion(
    image: np.ndarray, label: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Paint a lesion onto `image`; return the image and the lesion mask."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    cy, cx = rng.uniform(22.0, 42.0, 2)
    base = rng.uniform(10.0, 15.0)
    theta = np.arctan2(yy - cy, xx - cx)
    distance = np.hypot(yy - cy, xx - cx)
    edge = base * _outline_radius(theta, rng)
    # Soft anti-aliased border (about one pixel wide); the mask is the lesion's interior.
    alpha = np.clip(edge - distance + 0.5, 0.0, 1.0)
    mask = alpha >= 0.5
    colour = np.array([128.0, 82.0, 58.0]) * rng.uniform(0.75, 1.15) + rng.normal(0.0, 6.0, 3)
    mottle = gaussian(rng.normal(0.0, 1.0, (SIZE, SIZE)), sigma=2.0) * 25.0
    lesion = colour[None, None, :] + mottle[:, :, None]
    if label == 1:
        lesion = _variegation(lesion, mask, rng)
    blended = alpha[:, :, None] * lesion + (1.0 - alpha[:, :, None]) * image
    return blended, mask


def _hairs(image: np.ndarray, rng: np.random.Generator) -> None:
    """Draw 1-3 thin dark hairs (slightly curved polylines) across the image, in place."""
    for _ in range(rng.integers(1, 4)):
        points = rng.uniform(-8.0, SIZE + 8.0, (3, 2))
        darkness = rng.uniform(0.3, 0.6)
        for (r0, c0), (r1, c1) in itertools.pairwise(points):
            rows, cols, val = line_aa(int(r0), int(c0), int(r1), int(c1))
            keep = (rows >= 0) & (rows < SIZE) & (cols >= 0) & (cols < SIZE)
            rows, cols, val = rows[keep], cols[keep], val[keep]
            image[rows, cols] *= 1.0 - darkness * val[:, None]


def _ink_mark(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a short purple marker stroke outside the lesion, in place (if one fits)."""
    free = ~gaussian(mask.astype(np.float64), sigma=3.0).astype(bool)
    for _ in range(20):
        r0, c0 = rng.integers(4, SIZE - 4, 2)
        angle = rng.uniform(0.0, np.pi)
        length = rng.uniform(5.0, 10.0)
        r1 = int(np.clip(r0 + length * np.sin(angle), 0, SIZE - 1))
        c1 = int(np.clip(c0 + length * np.cos(angle), 0, SIZE - 1))
        rows, cols, _ = line_aa(int(r0), int(c0), r1, c1)
        rows = np.concatenate([rows, np.clip(rows + 1, 0, SIZE - 1)])
        cols = np.concatenate([cols, cols])
        if free[rows, cols].all():
            image[rows, cols] = np.array([92.0, 52.0, 140.0]) + rng.normal(0.0, 6.0, 3)
            return


def generate(n: int, seed: int) -> LesionData:
    """Draw `n` images with balanced random labels using `numpy.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int64)
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.empty((n, SIZE, SIZE), dtype=bool)
    for i, label in enumerate(labels):
        image, mask = _lesion(_skin(rng), int(label), rng)
        if rng.uniform() < HAIR_PROB:
            _hairs(image, rng)
        if rng.uniform() < INK_PROB:
            _ink_mark(image, mask, rng)
        images[i] = np.clip(np.round(image), 0, 255).astype(np.uint8)
        masks[i] = mask
    return LesionData(images=images, labels=labels, masks=masks)
