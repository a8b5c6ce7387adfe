"""scikit-learn's bundled handwritten digits, served as 32 x 32 RGB images.

1,797 8 x 8 images with 17 gray levels (Alpaydin & Kaynak, UCI), so the
benchmark runs on any machine without a download. Each image is scaled from
0-16 to 0-255, upsampled to 32 x 32 with bilinear interpolation (the size of
CIFAR-10, so HOG's 8 x 8 cells see a 4 x 4 grid), and replicated to 3 channels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .base import Dataset, stratified_split

SIZE = 32


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """The digits as a seeded, stratified train/test :class:`Dataset`."""
    from sklearn.datasets import load_digits as _sk_load_digits  # not at `featbench list`

    bunch = _sk_load_digits()
    gray = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    big = np.stack([
        np.asarray(Image.fromarray(im).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
        for im in gray
    ])
    X = np.repeat(big[..., None], 3, axis=-1)
    y = bunch.target.astype(np.int64)
    X_train, y_train, X_test, y_test = stratified_split(X, y, test_fraction, seed)
    return Dataset.from_arrays("digits", X_train, y_train, X_test, y_test,
                               [str(c) for c in bunch.target_names],
                               source="sklearn.datasets.load_digits",
                               layout="arrays (split by seed)",
                               notes={"test_fraction": test_fraction, "split_seed": seed})
