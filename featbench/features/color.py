"""Color histograms: the hue histogram of the CS231n feature assignment, and joint ones.

Swain & Ballard's color indexing represents an image by the distribution of its
pixel colors. The bins cover fixed ranges, so one image's histogram never depends
on the other images of the batch.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
from skimage.color import rgb2hsv

from .base import ImageExtractor

COLOR_SPACES = ("hue", "hsv", "rgb")


#: pixels in a batch from which the joint bin of every 24-bit color is looked up in a
#: table (2**24 colors binned once: ~3 s, then kept in the cache folder) rather than
#: computed per pixel: one shard of 1,024 CIFAR-10 images
TABLE_MIN_PIXELS = 1 << 20


def _edges(bins: int) -> np.ndarray:
    """Bin edges over [0, 1], as ``np.histogram(v, bins, range=(0, 1))`` makes them."""
    return np.linspace(0.0, 1.0, bins + 1)


def _bin_of(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of values in [0, 1] exactly as ``np.histogram`` bins them: bin ``k``
    is ``[e_k, e_{k+1})`` for the edges of :func:`_edges`, the last bin closed."""
    idx = np.searchsorted(_edges(bins), values, side="right") - 1
    return np.clip(idx, 0, bins - 1)


def _joint_bins(rgb: np.ndarray, color_space: str, bins: int) -> np.ndarray:
    """Joint bin index of each pixel of ``rgb`` (``(m, 3)`` uint8), computed directly."""
    if color_space == "rgb":
        per_level = _bin_of(np.arange(256) / 255.0, bins)  # the same for each channel
        idx = per_level[rgb]
    else:
        idx = _bin_of(rgb2hsv(rgb.reshape(-1, 1, 3)).reshape(-1, 3), bins)
        if color_space == "hue":
            idx = idx[:, :1]
    flat = np.zeros(len(rgb), dtype=np.int64)
    for channel in range(idx.shape[1]):
        flat = flat * bins + idx[:, channel]
    return flat


_TABLES: dict[tuple[str, int], np.ndarray] = {}
_TABLES_LOCK = threading.Lock()


def _color_table(color_space: str, bins: int) -> np.ndarray:
    """Joint bin of every 24-bit color, indexed by ``r | g << 8 | b << 16`` (computed by
    :func:`_joint_bins` itself, so that both paths bin every pixel alike).

    Built once per machine and kept in the cache folder (``tables/``, keyed by this
    module's code and scikit-image's version; a file that is not the expected array is
    rebuilt), loaded once per process (extraction threads wait for the first).
    """
    with _TABLES_LOCK:
        if (color_space, bins) not in _TABLES:
            path = _table_path(color_space, bins)
            table = _read_table(path)
            if table is None:
                table = _build_table(color_space, bins)
                _write_table(path, table)
            _TABLES[color_space, bins] = table
        return _TABLES[color_space, bins]


def _table_path(color_space: str, bins: int) -> Path:
    import skimage

    from ..cache import cache_dir

    with open(__file__, "rb") as f:
        code = hashlib.blake2b(f.read() + skimage.__version__.encode(), digest_size=8)
    return cache_dir() / "tables" / f"color-{color_space}-{bins}-{code.hexdigest()}.npy"


def _read_table(path: Path) -> np.ndarray | None:
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    ok = table.shape == (1 << 24,) and table.dtype.kind in "iu"
    return table if ok else None


def _write_table(path: Path, table: np.ndarray) -> None:
    """Keep ``table`` at ``path`` (best-effort: an unwritable cache only costs time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{path.name}")
        np.save(tmp, table, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass


def _build_table(color_space: str, bins: int) -> np.ndarray:
    n_bins = bins ** (1 if color_space == "hue" else 3)
    table = np.empty(1 << 24, dtype=np.uint16 if n_bins <= 1 << 16 else np.int64)
    step = 1 << 20
    for start in range(0, 1 << 24, step):
        code = np.arange(start, start + step, dtype=np.uint32)
        rgb = np.stack([code & 255, (code >> 8) & 255, code >> 16], axis=1).astype(np.uint8)
        table[start:start + step] = _joint_bins(rgb, color_space, bins)
    return table


def _packed(images: np.ndarray) -> np.ndarray:
    """Each pixel's color as one integer ``r | g << 8 | b << 16``, shape ``(n, pixels)``."""
    n = len(images)
    padded = np.zeros((*images.shape[:-1], 4), dtype=np.uint8)
    padded[..., :3] = images
    return padded.view("<u4").reshape(n, -1)


def color_histograms(images: np.ndarray, color_space: str = "hue", bins: int = 10) -> np.ndarray:
    """Normalized color histograms of uint8 RGB images, one row per image.

    Parameters
    ----------
    images : ndarray of shape (n, height, width, 3), uint8
    color_space : {"hue", "hsv", "rgb"}
        "hue": 1-D histogram of the hue channel of HSV (``bins`` bins over [0, 1]).
        "hsv", "rgb": joint 3-D histogram with ``bins`` bins per channel (``bins**3``
        numbers), channel values scaled to [0, 1].
    bins : int
        Bins per channel.

    Returns
    -------
    ndarray of shape (n, bins) or (n, bins**3), float32
        Fraction of the image's pixels in each bin (each row sums to 1).

    Notes
    -----
    Every value is binned exactly as the CS231n reference does,
    ``np.histogram(hue, bins=np.linspace(0, 1, bins + 1))``: bin ``k`` holds
    ``e_k <= v < e_{k+1}`` (the last bin also holds 1.0), with HSV from
    :func:`skimage.color.rgb2hsv`. A pixel's bin depends on its 24-bit color alone,
    so on large batches each of the 2**24 colors is binned once (a table built on
    first use and kept in the cache folder) and pixels are looked up in it.
    """
    if color_space not in COLOR_SPACES:
        raise ValueError(f"color_space must be one of {COLOR_SPACES}; got {color_space!r}")
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    bins = int(bins)
    n, pixels = len(images), images.shape[1] * images.shape[2]
    n_bins = bins ** (1 if color_space == "hue" else 3)
    if n == 0:
        return np.zeros((0, n_bins), dtype=np.float32)
    if color_space != "rgb" and (n * pixels >= TABLE_MIN_PIXELS
                                 or (color_space, bins) in _TABLES):
        flat = _color_table(color_space, bins)[_packed(images)].astype(np.int64)
    else:
        flat = _joint_bins(images.reshape(-1, 3), color_space, bins).reshape(n, pixels)
    counts = np.bincount((flat + np.arange(n)[:, None] * n_bins).ravel(),
                         minlength=n * n_bins).reshape(n, n_bins)
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
