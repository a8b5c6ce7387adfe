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



def _reference_bins(g_row: np.ndarray, g_col: np.ndarray, orientations: int) -> np.ndarray:
    """skimage's binning: angle = rad2deg(arctan2) % 180, bin i holds [i, i + 1) * 180 / o
    (``orientations``: no bin, for angles that round to 180)."""
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    return np.searchsorted(180.0 / orientations * np.arange(1, orientations + 1), angle,
                           side="right")


@pytest.mark.parametrize("orientations", [9, 4, 8, 12])
def test_orientation_bins_on_edges_equal_skimage_binning(orientations):
    from featbench.features.hog import _orientation_bins

    per180 = 180.0 / orientations
    phi = np.deg2rad(per180 * np.arange(orientations + 1))
    rows, cols = [], []
    for s, c in zip(np.sin(phi), np.cos(phi), strict=True):  # gradients on every edge ...
        for ds in (-1, 0, 1):  # ... and one ulp either side
            rows += [np.nextafter(s, s + ds) if ds else s, -s]
            cols += [c, -np.nextafter(c, c + ds) if ds else -c]
    # zero and tiny gradients: angles of exactly 0 and 180, and those rounding to 180
    for r, c in [(0.0, 1.0), (0.0, -1.0), (-0.0, 1.0), (0.0, 0.0), (-1e-300, 1.0),
                 (1e-300, -1.0), (-1e-17, 1.0), (1.0, 0.0), (-1.0, 0.0), (-1e-300, -1.0)]:
        rows.append(r)
        cols.append(c)
    g_row, g_col = np.array(rows), np.array(cols)
    theta = np.rad2deg(np.arctan2(g_row, g_col))
    theta = np.where(theta < 0, theta + 180.0, np.where(theta == 180.0, 0.0, theta))
    np.testing.assert_array_equal(_orientation_bins(theta, orientations),
                                  _reference_bins(g_row, g_col, orientations))


@pytest.mark.parametrize("orientations", [4, 8, 9])
def test_exact_diagonals_and_vanishing_gradients_equal_skimage(orientations):
    # diagonal steps give angles of exactly 45 and 135 degrees (bin edges for 4 and 8
    # orientations); rows of -1e-300 next to 0 give angles that round to exactly 180
    img = np.zeros((16, 16))
    img[np.triu_indices(16)] = 1.0
    img[8:, :] = np.fliplr(img[8:, :])
    img[::3, 5] = -1e-300
    img[1::3, 9] = 1e-300
    kw = dict(orientations=orientations, pixels_per_cell=(4, 4), cells_per_block=(1, 1))
    ours = hog_batch(img[None], block_norm=None, **kw)[0].reshape(-1, orientations)
    ref = sk_hog(img, block_norm="L1", feature_vector=True, **kw).reshape(-1, orientations)
    norm = ours / (ours.sum(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(norm, ref, rtol=0, atol=1e-6)  # skimage sums in float32


def test_chunked_extraction_equals_one_batch(cifar_sample):
    images, _ = cifar_sample
    est = HOG().fit(images)
    whole = hog_batch(rgb2gray(images), block_norm="L2-Hys")
    np.testing.assert_allclose(est.transform(images), whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("orientations", range(1, 25))
def test_orientation_bins_of_angles_on_and_beside_every_edge(orientations):
    from featbench.features.hog import _orientation_bins

    edges = 180.0 / orientations * np.arange(orientations + 1)
    theta = np.concatenate([edges, np.nextafter(edges, -1.0), np.nextafter(edges, 181.0),
                            np.linspace(0, 180, 1001)])
    theta = theta[(theta >= 0) & (theta <= 180)]
    upper = 180.0 / orientations * np.arange(1, orientations + 1)
    np.testing.assert_array_equal(_orientation_bins(theta, orientations),
                                  np.searchsorted(upper, theta, side="right"))
