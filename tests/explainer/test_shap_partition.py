"""The speed-ups of shap's Partition explainer keep shap's numbers (see also test_parity)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import shap
import torch

from explainer.methods.blend import shown_or_hidden
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
    images = [_image(1).astype(np.float32), _image(2).astype(np.float32)]
    theirs = shap.maskers.Image("blur(4,4)", SHAPE)
    expected = [np.stack([theirs(mask, image)[0][0] for mask in masks]) for image in images]
    calls = _counting_blur(monkeypatch)
    ours = BlurOnceImageMasker("blur(4,4)", SHAPE)
    for image, theirs_masked in zip(images, expected, strict=True):
        handed = np.concatenate([ours(mask, image)[0] for mask in masks])
        np.testing.assert_array_equal(handed, masks)  # the model is handed the masks
        got = ours.masked_images(handed, torch.device("cpu")).numpy()  # (20, C, H, W)
        np.testing.assert_array_equal(got.transpose(0, 2, 3, 1), theirs_masked)
        whole = ours.masked_images(np.ones((1, masks.shape[1]), dtype=bool), torch.device("cpu"))
        np.testing.assert_array_equal(whole[0].numpy().transpose(1, 2, 0), image)
    assert len(calls) == len(images)  # shap's own masker blurs for (nearly) every sample


def test_shown_or_hidden_is_exact() -> None:
    generator = torch.Generator().manual_seed(0)
    shown = torch.randn((3, 8, 8), generator=generator) * 1e3
    hidden = torch.randn((3, 8, 8), generator=generator) * 1e-3
    keep = torch.rand((5, 1, 8, 8), generator=generator) < 0.5
    expected = torch.where(keep, shown, hidden)
    assert torch.equal(shown_or_hidden(shown, hidden, keep.float()), expected)


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


def test_mask_rows_keep_read_only_rows_up_to_their_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import explainer.methods.shap_partition as shap_partition

    dense = np.random.default_rng(1).random((30, 50)) < 0.2
    monkeypatch.setattr(shap_partition, "ROW_CACHE_BYTES", 10 * dense.shape[1])
    rows = MaskRows(scipy.sparse.csr_matrix(dense))
    for _ in range(2):
        for index in range(len(dense)):
            row = rows[index, :]
            np.testing.assert_array_equal(row, dense[index])
            assert not row.flags.writeable  # shap only adds rows into its own masks
    assert len(rows._kept) == 10
