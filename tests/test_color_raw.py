"""Color histograms and raw pixels on constructed images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.color import rgb2hsv

from featbench.features import ColorHistogram, RawPixels


def _solid(rgb, size=8):
    img = np.zeros((1, size, size, 3), np.uint8)
    img[...] = rgb
    return img


@pytest.mark.parametrize(
    "rgb, hue_bin",
    [((255, 0, 0), 0), ((255, 255, 0), 1), ((0, 255, 0), 3), ((0, 255, 255), 5),
     ((0, 0, 255), 6), ((255, 0, 255), 8), ((128, 128, 128), 0)],
)
def test_hue_of_solid_colors(rgb, hue_bin):
    hist = ColorHistogram().fit_transform(_solid(rgb))
    expected = np.zeros(10, np.float32)
    expected[hue_bin] = 1.0
    np.testing.assert_array_equal(hist[0], expected)


def test_mixed_image_fractions_and_batch_independence():
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[0, :1] = (255, 0, 0)  # 4 red pixels
    img[0, 1:] = (0, 0, 255)  # 12 blue pixels
    est = ColorHistogram()
    alone = est.fit_transform(img)[0]
    assert alone[0] == pytest.approx(0.25) and alone[6] == pytest.approx(0.75)
    batch = np.concatenate([img, _solid((0, 255, 0), 4)])
    np.testing.assert_array_equal(est.transform(batch)[0], alone)


def test_hue_matches_numpy_histogram():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    ours = ColorHistogram(bins=7).fit_transform(imgs)
    for img, row in zip(imgs, ours, strict=True):
        hue = rgb2hsv(img)[..., 0].ravel()
        counts, _ = np.histogram(hue, bins=7, range=(0, 1))
        np.testing.assert_allclose(row, counts / hue.size, atol=1e-7)


def test_joint_rgb_histogram():
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[0, 0, 0] = (255, 255, 255)  # last bin of each channel
    hist = ColorHistogram("rgb", bins=2).fit_transform(img)[0]
    assert hist.shape == (8,)
    assert hist[0] == pytest.approx(0.75) and hist[7] == pytest.approx(0.25)
    assert ColorHistogram("hsv", bins=4).fit_transform(img).shape == (1, 64)
    with pytest.raises(ValueError, match="color_space must be one of"):
        ColorHistogram("lab").fit(img)


def test_raw_pixels():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = RawPixels().fit_transform(imgs)
    np.testing.assert_allclose(out, imgs.reshape(3, -1) / 255.0, atol=1e-7)
    small = RawPixels(size=16).fit_transform(imgs)
    ref = cv2.resize(imgs[1], (16, 16), interpolation=cv2.INTER_AREA).ravel() / 255.0
    np.testing.assert_allclose(small[1], ref, atol=1e-7)
    assert RawPixels(size=8, grayscale=True).fit_transform(imgs).shape == (3, 64)


def _reference(images: np.ndarray, space: str, bins: int) -> np.ndarray:
    """The CS231n reference: ``np.histogram`` of rgb2hsv's hue over
    ``np.linspace(0, 1, bins + 1)`` (``np.histogramdd`` for joint histograms)."""
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for img in images:
        if space == "hue":
            counts = np.histogram(rgb2hsv(img)[..., 0].ravel(), bins=edges)[0]
        else:
            v = rgb2hsv(img).reshape(-1, 3) if space == "hsv" else img.reshape(-1, 3) / 255.0
            counts = np.histogramdd(v, bins=(edges, edges, edges))[0].ravel()
        rows.append(counts / (img.shape[0] * img.shape[1]))
    return np.array(rows)


@pytest.fixture(params=["direct", "table"])
def binning(request, monkeypatch):
    """Both ways featbench bins pixels: per pixel, and through the 2**24-color table."""
    from featbench.features import color

    monkeypatch.setattr(color, "TABLE_MIN_PIXELS", 0 if request.param == "table" else 1 << 62)
    if request.param == "direct":
        monkeypatch.setattr(color, "_TABLES", {})
    return request.param


def test_hues_on_bin_edges_are_binned_as_numpy_does(binning):
    # hue((1, 5, 0)) = (2 - 1/5) / 6 = 0.3 and hue((1, 7, 16)) = (4 - 6/15) / 6 = 0.6 in
    # float64; np.histogram's edges are 0.30000000000000004 and 0.6000000000000001, so
    # both fall in the bin below (floor(0.3 * 10) = 3 would put the first in bin 3)
    img = np.array([[[[1, 5, 0], [1, 7, 16], [2, 10, 0], [255, 0, 0]]]], np.uint8)
    expected = np.zeros(10)
    np.add.at(expected, [2, 5, 2, 0], 0.25)
    np.testing.assert_array_equal(ColorHistogram().fit_transform(img)[0], expected)
    np.testing.assert_array_equal(_reference(img, "hue", 10)[0], expected)


@pytest.mark.parametrize("space, bins", [("hue", 10), ("hsv", 4), ("rgb", 5)])
def test_histograms_equal_the_reference_on_cifar_and_edge_cases(cifar_sample, binning,
                                                                 space, bins):
    X, _ = cifar_sample
    flat = np.full((2, 7, 5, 3), 77, np.uint8)  # gray: hue 0, odd size
    saturated = np.zeros((2, 7, 5, 3), np.uint8)
    saturated[..., 0] = 255
    saturated[1, ..., 1] = np.arange(5, dtype=np.uint8) * 60
    rng = np.random.default_rng(3)
    edge = np.array([[1, 5, 0], [1, 7, 16], [6, 10, 16], [0, 0, 0], [255, 255, 255]], np.uint8)
    edges = edge[rng.integers(0, len(edge), (2, 7, 5))]
    for images in (X[:64], flat, saturated, edges):
        ours = ColorHistogram(space, bins).fit_transform(images)
        np.testing.assert_allclose(ours, _reference(images, space, bins), rtol=0, atol=1e-7)
