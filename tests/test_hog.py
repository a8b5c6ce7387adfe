"""HOG must equal scikit-image's reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.feature import hog as sk_hog

from featbench.features.hog import HOG, cell_histograms, hog_batch


def _reference(images, **kw):
    return np.stack([sk_hog(rgb2gray(im), feature_vector=True, **kw) for im in images])


@pytest.mark.parametrize("block_norm", ["L2-Hys", "L2", "L1", "L1-sqrt"])
def test_equals_skimage_on_cifar(cifar_sample, block_norm):
    images, _ = cifar_sample
    ours = HOG(block_norm=block_norm).fit_transform(images)
    ref = _reference(images, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                     block_norm=block_norm)
    assert ours.shape == (len(images), 9 * 3 * 3 * 2 * 2)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "kw",
    [
        dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)),
        dict(orientations=12, pixels_per_cell=(6, 5), cells_per_block=(3, 2)),
        dict(orientations=7, pixels_per_cell=(4, 4), cells_per_block=(1, 1),
             transform_sqrt=True),
    ],
)
def test_equals_skimage_on_photographs(natural_images, kw):
    ours = HOG(**kw).fit_transform(natural_images)
    ref = _reference(natural_images, block_norm="L2-Hys", **kw)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_cs231n_variant_is_unnormalized_cells(cifar_sample):
    images, _ = cifar_sample
    ours = HOG(block_norm=None).fit_transform(images)
    assert ours.shape == (len(images), 144)  # 4 x 4 cells x 9 bins for 32 x 32
    # with 1 x 1 blocks and L1 normalization, skimage divides each cell by its sum
    ref = _reference(images, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(1, 1),
                     block_norm="L1").reshape(len(images), 16, 9)
    cells = ours.reshape(len(images), 16, 9).astype(np.float64)
    np.testing.assert_allclose(cells / (cells.sum(-1, keepdims=True) + 1e-5), ref, atol=1e-6)


def test_cell_histogram_by_hand():
    # a vertical step edge: gradient along columns only -> orientation 0 -> bin 0
    img = np.zeros((1, 8, 8))
    img[0, :, 4:] = 1.0
    cells = cell_histograms(img, orientations=9, pixels_per_cell=(8, 8))
    # columns 3 and 4 see a central difference of 1 on all 8 rows: 16 votes of 1 / 64
    expected = np.zeros(9)
    expected[0] = 16 / 64
    np.testing.assert_allclose(cells[0, 0, 0], expected)
    # a horizontal edge votes in the 90-degree bin (index 4)
    cells_t = cell_histograms(img.transpose(0, 2, 1), orientations=9, pixels_per_cell=(8, 8))
    assert cells_t[0, 0, 0].argmax() == 4 and cells_t[0, 0, 0, 4] == pytest.approx(16 / 64)


def test_size_arithmetic_and_too_small():
    imgs = np.zeros((2, 40, 24))
    assert hog_batch(imgs, pixels_per_cell=(8, 8), cells_per_block=(2, 2)).shape == \
        (2, (5 - 1) * (3 - 1) * 2 * 2 * 9)
    with pytest.raises(ValueError, match="at least: 16 rows and 16 cols"):
        HOG().fit(np.zeros((1, 12, 12, 3), np.uint8))
    with pytest.raises(ValueError, match="block_norm must be one of"):
        HOG(block_norm="L3").fit(np.zeros((1, 32, 32, 3), np.uint8))

