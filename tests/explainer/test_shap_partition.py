"""The speed-ups of shap's Partition explainer keep shap's numbers (see also test_parity)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import shap

from explainer.methods.shap_partition import BlurOnceImageMasker, MaskRows

SHAPE = (16, 16, 3)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(SHAPE)


def _counting_blur(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import shap.maskers._image as image_module

    calls: list[int] = []
    blur = image_module.cv2.blur

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return blur(*args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(image_module.cv2, "blur", counted)
    return calls


def test_the_masker_blurs_each_image_once_with_shaps_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    masks = np.random.default_rng(0).random((20, int(np.prod(SHAPE)))) < 0.5
    images = [_image(1), _image(2)]
    theirs = shap.maskers.Image("blur(4,4)", SHAPE)
    expected = [theirs(mask, image)[0] for image in images for mask in masks]
    calls = _counting_blur(monkeypatch)
    ours = BlurOnceImageMasker("blur(4,4)", SHAPE)
    got = [ours(mask, image)[0] for image in images for mask in masks]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.reshape(b.shape), b)
    assert len(calls) == len(images)  # shap's own masker blurs for (nearly) every sample


def test_mask_rows_read_the_same_rows_and_defer_everything_else() -> None:
    dense = np.random.default_rng(0).random((30, 50)) < 0.2
    matrix = scipy.sparse.csr_matrix(dense)
    rows = MaskRows(matrix)
    for index in range(len(dense)):
        np.testing.assert_array_equal(rows[index, :], dense[index])
        np.testing.assert_array_equal(rows[np.int64(index), :], dense[index])
    np.testing.assert_array_equal(rows[2:5, :].toarray(), dense[2:5])  # the matrix's own
    np.testing.assert_array_equal(rows[3, np.array([1, 4])].toarray()[0], dense[3, [1, 4]])
    assert rows.shape == matrix.shape
