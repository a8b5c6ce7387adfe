"""VLAD: vector of locally aggregated descriptors (Jégou et al. 2010)."""

from __future__ import annotations

import numpy as np

from .bovw import CodebookExtractor, power_l2, squared_distances


def vlad_encode(desc: np.ndarray, centers: np.ndarray, intra_norm: bool = False,
                power: bool = True) -> np.ndarray:
    """VLAD of each image: per word, the sum of residuals of its nearest descriptors.

    Parameters
    ----------
    desc : ndarray of shape (n, m, dim)
    centers : ndarray of shape (K, dim)
    intra_norm : bool
        L2-normalize each word's residual sum first (Arandjelović & Zisserman 2013).
    power : bool
        Signed square root before the final L2 normalization.

    Returns
    -------
    ndarray of shape (n, K * dim)
    """
    n, m, d = desc.shape
    K = len(centers)
    flat = desc.reshape(n * m, d)
    nearest = squared_distances(flat, centers).argmin(1)
    residual = flat - centers[nearest]
    slot = np.repeat(np.arange(n), m) * K + nearest
    V = np.zeros((n * K, d), np.float64)
    np.add.at(V, slot, residual)
    V = V.reshape(n, K, d)
    if intra_norm:
        V /= np.linalg.norm(V, axis=2, keepdims=True) + 1e-12
    return power_l2(V.reshape(n, K * d), power)


class VLAD(CodebookExtractor):
    """VLAD encoding of dense local descriptors.

    Parameters
    ----------
    n_words : int, default=64
        Codebook size K; the output has ``K * dim`` numbers (8,192 for SIFT, K=64).
    descriptor, step, patch_sizes, max_descriptors, random_state
        As in :class:`~featbench.features.bovw.BagOfVisualWords`.
    intra_norm : bool, default=False
        Normalize each word's block before the global normalization.
    power_norm : bool, default=True
        Signed square root before L2 normalization.

    Attributes
    ----------
    codebook_ : ndarray of shape (n_words, dim)

    References
    ----------
    .. [1] H. Jégou, M. Douze, C. Schmid and P. Pérez, "Aggregating local descriptors
       into a compact image representation", CVPR 2010.
    """

    _param_name = "vlad"

    def __init__(self, n_words: int = 64, descriptor: str = "sift", step: int = 2,
                 patch_sizes: tuple[int, ...] = (8,), intra_norm: bool = False,
                 power_norm: bool = True, max_descriptors: int = 100_000,
                 random_state: int | None = 0) -> None:
        self.n_words = n_words
        self.descriptor = descriptor
        self.step = step
        self.patch_sizes = patch_sizes
        self.intra_norm = intra_norm
        self.power_norm = power_norm
        self.max_descriptors = max_descriptors
        self.random_state = random_state

    def _fit_codebook(self, D: np.ndarray, positions: np.ndarray) -> None:
        self.codebook_ = self._kmeans_centers(D)

    def _encode(self, desc: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return vlad_encode(desc, self.codebook_, self.intra_norm, self.power_norm)
