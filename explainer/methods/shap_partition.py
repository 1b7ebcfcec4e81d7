"""shap's Partition explainer for images, with fixes that save its Python time.

All keep shap's numbers bit for bit (`tests/explainer/test_parity.py` compares with shap
as it comes):

- `BlurOnceImageMasker`: shap's Image masker keys the blurred image by the `id()` of a
  flattened copy that it makes on every call, so an `(H, W, C)` image is blurred again for
  every masked sample (and a recycled id could serve the blur of an earlier image). Here
  the image is flattened and blurred once per image.
- The same masker hands shap's explainer the masks rather than masked images: shap's
  masker builds each masked image in Python (a copy and two boolean-indexed reads), and
  the explainer concatenates them. The model function (`masked_images`) builds a chunk of
  images from a chunk of masks in one tensor operation, on the model's device.
- `MaskRows`: the explainer reads one row of its cluster-mask matrix (a scipy CSR matrix)
  for every node it expands, and scipy's row slicing costs tens of microseconds each time;
  these rows are read straight from the CSR arrays instead.

On lesion-64 they take SHAP from about 157 to 87 ms (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse
import shap
import torch

from explainer.methods.blend import shown_or_hidden

# Dense mask rows kept per explainer: 2,700 rows of a 64x64x3 image, 220 at 224x224x3.
ROW_CACHE_BYTES = 32 * 1024**2


class BlurOnceImageMasker(shap.maskers.Image):
    """shap's blurring Image masker that hands the model masks, not masked images.

    On a new image it flattens it once and lets shap's own masker blur it once (shap's
    fully masked sample is the blurred image). Each call then returns the mask itself, a
    `(1, H*W*C)` boolean row, and `masked_images` turns a chunk of them into images in one
    tensor operation where the model runs: the image's pixels where the mask is on, the
    blurred image's where it is off, as shap's masker would have made them.

    Explanations are serialised by the engine's lock, so the kept image is not shared.
    """

    def __init__(self, mask_value: str, shape: tuple[int, ...]) -> None:
        super().__init__(mask_value, shape)
        self._image: Any = None
        self._flat = np.empty(0)
        self._blurred = np.empty(0)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, mask: np.ndarray | None, x: Any) -> tuple[np.ndarray]:
        if x is not self._image:
            self._flat = np.ascontiguousarray(x).reshape(-1)
            self._blurred = super().__call__(None, self._flat)[0].reshape(-1)
            self._image = x
            self._on_device = {}
        if mask is None:
            return (np.zeros((1, self._flat.size), dtype=bool),)
        return (np.array(mask, dtype=bool).reshape(1, -1),)

    def masked_images(self, masks: np.ndarray, device: torch.device) -> torch.Tensor:
        """`(B, H*W*C)` masks of the current image -> `(B, C, H, W)` float32 images."""
        if device not in self._on_device:
            self._on_device[device] = (
                self._chw(self._flat, device),
                self._chw(self._blurred, device),
            )
        image, blurred = self._on_device[device]
        height, width, channels = self.input_shape
        keep = torch.from_numpy(masks).to(device).view(len(masks), height, width, channels)
        return shown_or_hidden(image, blurred, keep.permute(0, 3, 1, 2).to(image.dtype))

    def _chw(self, flat: np.ndarray, device: torch.device) -> torch.Tensor:
        tensor = torch.from_numpy(np.asarray(flat, dtype=np.float32)).reshape(self.input_shape)
        return tensor.permute(2, 0, 1).contiguous().to(device)


class MaskRows:
    """A CSR boolean matrix whose `[row, :]` is a dense row read from its arrays.

    Rows read are kept (read-only, up to ROW_CACHE_BYTES per matrix; the first rows read,
    the clusters near the root, are the ones every image expands). Any other indexing,
    and every other attribute, is the matrix's own.
    """

    def __init__(self, matrix: scipy.sparse.csr_matrix) -> None:
        self.matrix = matrix
        self._indptr, self._indices = matrix.indptr, matrix.indices
        self._width = matrix.shape[1]
        self._kept: dict[int, np.ndarray] = {}
        self._keep_at_most = max(1, ROW_CACHE_BYTES // max(1, self._width))

    def __getitem__(self, key: Any) -> Any:
        if (
            isinstance(key, tuple)
            and len(key) == 2
            and isinstance(key[0], int | np.integer)
            and isinstance(key[1], slice)
            and key[1] == slice(None)
            and 0 <= key[0] < len(self._indptr) - 1
        ):
            index = int(key[0])
            row = self._kept.get(index)
            if row is None:
                row = np.zeros(self._width, dtype=bool)
                row[self._indices[self._indptr[index] : self._indptr[index + 1]]] = True
                row.flags.writeable = False
                if len(self._kept) < self._keep_at_most:
                    self._kept[index] = row
            return row
        return self.matrix[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.matrix, name)


def partition_explainer(
    score: Callable[[np.ndarray], np.ndarray], masker: BlurOnceImageMasker
) -> shap.explainers.PartitionExplainer:
    """`shap.Explainer(score, masker, algorithm="partition")`, reading its masks faster."""
    explainer = shap.Explainer(score, masker, algorithm="partition")
    masks = getattr(explainer, "_mask_matrix", None)
    if isinstance(masks, scipy.sparse.csr_matrix) and masks.dtype == bool:
        explainer._mask_matrix = MaskRows(masks)
    return explainer
