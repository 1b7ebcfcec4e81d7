"""One superpixel segmentation per image, shared by LIME, the tree surrogate and SHAP.

SLIC (scikit-image) with the number of segments scaled to the image area: about one
superpixel per 12x12 pixels, between 16 and 100 (64x64 -> 28, 224x224 -> 100), compactness
10, Gaussian smoothing sigma 1. Labels run 0..n-1, as lime expects.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import slic

PIXELS_PER_SEGMENT = 144
MIN_SEGMENTS = 16
MAX_SEGMENTS = 100
COMPACTNESS = 10.0
SIGMA = 1.0


def segment_count(height: int, width: int) -> int:
    """The requested number of superpixels for an image of this size."""
    return int(np.clip(height * width // PIXELS_PER_SEGMENT, MIN_SEGMENTS, MAX_SEGMENTS))


def segment_image(image_hwc: np.ndarray) -> np.ndarray:
    """`(H, W, C)` pixels in [0, 1] -> `(H, W)` int labels 0..n-1."""
    height, width, channels = image_hwc.shape
    labels = slic(
        image_hwc if channels > 1 else image_hwc[..., 0],
        n_segments=segment_count(height, width),
        compactness=COMPACTNESS,
        sigma=SIGMA,
        start_label=0,
        channel_axis=-1 if channels > 1 else None,
    )
    # Relabel to 0..n-1 without gaps.
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(height, width).astype(np.int64)
