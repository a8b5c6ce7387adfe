"""Color histograms: the hue histogram of the CS231n feature assignment, and joint ones.

Swain & Ballard's color indexing represents an image by the distribution of its
pixel colors. The bins cover fixed ranges, so one image's histogram never depends
on the other images of the batch.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2hsv

from .base import ImageExtractor

COLOR_SPACES = ("hue", "hsv", "rgb")


def color_histograms(images: np.ndarray, color_space: str = "hue", bins: int = 10) -> np.ndarray:
    """Normalized color histograms of uint8 RGB images, one row per image.

    Parameters
    ----------
    images : ndarray of shape (n, height, width, 3), uint8
    color_space : {"hue", "hsv", "rgb"}
        "hue": 1-D histogram of the hue channel of HSV (``bins`` bins over [0, 1)).
        "hsv", "rgb": joint 3-D histogram with ``bins`` bins per channel (``bins**3``
        numbers), channel values scaled to [0, 1].
    bins : int
        Bins per channel.

    Returns
    -------
    ndarray of shape (n, bins) or (n, bins**3), float32
        Fraction of the image's pixels in each bin (each row sums to 1).
    """
    if color_space not in COLOR_SPACES:
        raise ValueError(f"color_space must be one of {COLOR_SPACES}; got {color_space!r}")
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    n, pixels = len(images), images.shape[1] * images.shape[2]
    if color_space == "rgb":
        values = images.reshape(n, pixels, 3).astype(np.float64) / 255.0
    elif n:
        values = rgb2hsv(images.reshape(-1, 1, 3)).reshape(n, pixels, 3)
    else:
        values = np.zeros((0, pixels, 3))
    if color_space == "hue":
        values = values[..., :1]
    # Bin index per channel over the fixed range [0, 1]; 1.0 goes in the last bin.
    idx = np.minimum((values * bins).astype(np.int64), bins - 1)
    flat = np.zeros(idx.shape[:2], dtype=np.int64)
    for channel in range(idx.shape[2]):
        flat = flat * bins + idx[..., channel]
    n_bins = bins ** idx.shape[2]
    counts = np.bincount(
        (flat + np.arange(n)[:, None] * n_bins).ravel(), minlength=n * n_bins
    ).reshape(n, n_bins)
    return (counts / max(pixels, 1)).astype(np.float32)


class ColorHistogram(ImageExtractor):
    """Histogram of pixel colors: hue in HSV by default, or joint HSV / RGB.

    Parameters
    ----------
    color_space : {"hue", "hsv", "rgb"}, default="hue"
        "hue" bins the hue channel of HSV (the CS231n assignment's feature, 10 bins);
        "hsv" and "rgb" make a joint 3-D histogram with ``bins`` bins per channel.
    bins : int, default=10
        Bins per channel.

    Attributes
    ----------
    image_shape_ : tuple
        Shape of one image seen in ``fit``.

    Notes
    -----
    Hue comes from :func:`skimage.color.rgb2hsv` (in [0, 1); gray pixels get hue 0).
    Bins are fixed, so the transformer is stateless: an image's histogram does not
    depend on the batch it is in.

    References
    ----------
    .. [1] M. J. Swain and D. H. Ballard, "Color indexing", IJCV 7(1), 1991.
    .. [2] CS231n, assignment 1, "Image features" (hue histogram + HOG).

    Examples
    --------
    >>> import numpy as np
    >>> from featbench.features.color import ColorHistogram
    >>> red = np.zeros((1, 4, 4, 3), np.uint8); red[..., 0] = 255
    >>> ColorHistogram().fit_transform(red)[0, :3]
    array([1., 0., 0.], dtype=float32)
    """

    def __init__(self, color_space: str = "hue", bins: int = 10) -> None:
        self.color_space = color_space
        self.bins = bins

    def _fit(self, X, y=None) -> None:
        color_histograms(X[:0], self.color_space, self.bins)  # validates the parameters

    def _extract(self, images: np.ndarray) -> np.ndarray:
        return color_histograms(images, self.color_space, self.bins)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
