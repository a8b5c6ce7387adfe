"""Bag of visual words (Csurka et al. 2004; Fei-Fei & Perona 2005) with spatial pyramids.

Dense local descriptors are quantized against a codebook learned with k-means on
a seeded sample of training descriptors; each image becomes a histogram of words,
per region of a spatial pyramid (Lazebnik, Schmid & Ponce 2006), then power and
L2 normalized. :class:`CodebookExtractor` holds the machinery the VLAD and Fisher
encoders share.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.utils import check_random_state

from ..errors import DataError, ParameterError
from .base import ImageExtractor, as_tuple
from .local import dense_descriptors, grid_centers


def power_l2(F: np.ndarray, power: bool = True) -> np.ndarray:
    """Signed square root (if ``power``) then L2 normalization of each row."""
    F = F.astype(np.float32, copy=True)
    if power:
        F = np.sign(F) * np.sqrt(np.abs(F))
    F /= np.linalg.norm(F, axis=1, keepdims=True) + 1e-12
    return F


def squared_distances(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``||x - c||^2`` for every row of ``X`` and of ``C`` (clipped at 0)."""
    d = (X * X).sum(1)[:, None] - 2.0 * (X @ C.T) + (C * C).sum(1)[None, :]
    return np.maximum(d, 0.0)


class CodebookExtractor(ImageExtractor):
    """Base of the encoders: dense descriptors, and a sample of them to learn from.

    Subclasses learn their codebook from :meth:`_sample_descriptors` (descriptors
    and their positions) in :meth:`_fit_codebook` and encode ``(n, n_patches, dim)`` descriptors in
    :meth:`_encode`.
    """

    _chunk_size = 256
    learns_from_images = True
    #: fitted attributes (numeric arrays or numbers) that :meth:`fitted_state` exports
    _state_names: tuple[str, ...] = ("codebook_",)

    #: how users name the extractor in ``-p NAME.PARAM=VALUE`` (in messages)
    _param_name = "bovw"

    def _count_limits(self) -> dict[str, int]:
        """Parameters that must not exceed the number of descriptors fitted on."""
        return {"n_words": int(self.n_words)}

    def check_plan(self, name: str, fit_images: tuple[int, int, int] | None = None) -> None:
        """Fail before any work on settings the fit cannot meet (featbench's names).

        ``fit_images`` is ``(n_images, height, width)`` of the training images the
        codebook will be fitted on, when known: the descriptors they give (at most
        ``max_descriptors``) must be at least the codebook size.
        """
        if fit_images is None:
            return
        n, h, w = fit_images
        sizes = as_tuple(self.patch_sizes)
        too_big = [p for p in sizes if int(p) > min(h, w)]
        if too_big:
            raise ParameterError(
                f"-p {name}.patch_sizes={','.join(map(str, sizes))}: a patch of {too_big[0]} "
                f"px does not fit in the {h}x{w} px images the extractor sees")
        per_image = sum(len(grid_centers(h, w, int(self.step), int(p))) for p in sizes)
        available = min(int(self.max_descriptors), n * per_image)
        self._check_counts(name, available, ParameterError,
                           f" ({n} training images of {h}x{w} px, {per_image} each; "
                           f"max_descriptors={self.max_descriptors})")

    def _check_counts(self, name: str, available: int, error: type[Exception],
                      why: str = "") -> None:
        for param, value in self._count_limits().items():
            if value > available:
                raise error(f"-p {name}.{param}={value}: must be at most {available}, the "
                            f"number of descriptors the codebook is fitted on{why}")

    def _descriptors(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return dense_descriptors(images, self.descriptor, self.step, as_tuple(self.patch_sizes))

    def _sample_descriptors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A seeded sample of at most ``max_descriptors`` training descriptors.

        Returns the descriptors ``(m, dim)`` and their relative positions ``(m, 2)``.
        """
        rng = check_random_state(self.random_state)
        first, positions = self._descriptors(X[:1])
        n_images = min(len(X), max(1, -(-self.max_descriptors // len(positions))))
        idx = np.sort(rng.choice(len(X), n_images, replace=False))
        from ..parallel import map_chunks

        D = map_chunks(lambda im: self._descriptors(im)[0].reshape(len(im), -1), X[idx],
                       chunk_size=self._chunk_size, desc=f"{type(self).__name__} sample")
        D = D.reshape(-1, first.shape[2])
        P = np.tile(positions, (n_images, 1))
        if len(D) > self.max_descriptors:
            keep = np.sort(rng.choice(len(D), self.max_descriptors, replace=False))
            D, P = D[keep], P[keep]
        return D, P

    def _fit(self, X, y=None) -> None:
        self.check_plan(self._param_name)
        D, P = self._sample_descriptors(X)
        self._check_counts(self._param_name, len(D), DataError,
                           f" ({len(X)} training images of {X.shape[1]}x{X.shape[2]} px)")
        self._fit_codebook(D, P)

    def _kmeans_centers(self, D: np.ndarray) -> np.ndarray:
        """``n_words`` k-means centers of descriptors ``D`` (seeded MiniBatchKMeans)."""
        km = MiniBatchKMeans(n_clusters=self.n_words, random_state=self.random_state,
                             batch_size=4096, n_init=3, max_iter=100)
        return km.fit(D).cluster_centers_.astype(np.float32)

    def _extract(self, images: np.ndarray) -> np.ndarray:
        desc, positions = self._descriptors(images)
        return self._encode(desc, positions)


class BagOfVisualWords(CodebookExtractor):
    """Histogram of visual words over a spatial pyramid.

    Parameters
    ----------
    n_words : int, default=1024
        Codebook size (k-means clusters).
    descriptor : {"sift", "rootsift", "patch"}, default="sift"
        Dense SIFT (OpenCV, at grid keypoints), RootSIFT (its Hellinger map) or
        normalized gray patches (see :func:`~featbench.features.local.dense_descriptors`).
    step : int, default=2
        Grid spacing in pixels (sampling density).
    patch_sizes : tuple of int, default=(8,)
        Patch sizes; several give multi-scale sampling.
    assignment : {"hard", "soft"}, default="hard"
        Hard: each descriptor votes for its nearest word. Soft (kernel codebook,
        van Gemert et al. 2008): votes ``exp(-d^2 / (2 sigma^2))``, normalized per
        descriptor, for its ``soft_neighbors`` nearest words.
    soft_sigma : float or None, default=None
        Kernel width; None uses the median distance of training descriptors to
        their nearest word (learned in ``fit`` as ``sigma_``).
    soft_neighbors : int, default=5
        Words that share a soft vote.
    pyramid_levels : int, default=2
        1: the whole image; 2: plus 2 x 2 regions; 3: plus 4 x 4 regions.
        Region histograms are concatenated (``n_words * (1 + 4 + 16)`` at 3 levels).
    power_norm : bool, default=True
        Signed square root before the final L2 normalization.
    max_descriptors : int, default=100000
        Training descriptors sampled to learn the codebook.
    random_state : int, default=0
        Seed of the sample and of k-means.

    Attributes
    ----------
    codebook_ : ndarray of shape (n_words, dim)
    sigma_ : float
        Soft-assignment kernel width used.

    References
    ----------
    .. [1] L. Fei-Fei and P. Perona, "A Bayesian hierarchical model for learning
       natural scene categories", CVPR 2005.
    .. [2] S. Lazebnik, C. Schmid and J. Ponce, "Beyond bags of features: spatial
       pyramid matching for recognizing natural scene categories", CVPR 2006.
    .. [3] J. C. van Gemert et al., "Kernel codebooks for scene categorization",
       ECCV 2008.
    """

    def __init__(self, n_words: int = 1024, descriptor: str = "sift", step: int = 2,
                 patch_sizes: tuple[int, ...] = (8,), assignment: str = "hard",
                 soft_sigma: float | None = None, soft_neighbors: int = 5,
                 pyramid_levels: int = 2, power_norm: bool = True,
                 max_descriptors: int = 100_000, random_state: int | None = 0) -> None:
        self.n_words = n_words
        self.descriptor = descriptor
        self.step = step
        self.patch_sizes = patch_sizes
        self.assignment = assignment
        self.soft_sigma = soft_sigma
        self.soft_neighbors = soft_neighbors
        self.pyramid_levels = pyramid_levels
        self.power_norm = power_norm
        self.max_descriptors = max_descriptors
        self.random_state = random_state

    _state_names = ("codebook_", "sigma_")

    def _fit_codebook(self, D: np.ndarray, positions: np.ndarray) -> None:
        if self.assignment not in ("hard", "soft"):
            raise ValueError(f"assignment must be 'hard' or 'soft'; got {self.assignment!r}")
        if int(self.pyramid_levels) < 1:
            raise ValueError(f"pyramid_levels must be >= 1; got {self.pyramid_levels}")
        self.codebook_ = self._kmeans_centers(D)
        nearest = np.sqrt(squared_distances(D[:20000], self.codebook_).min(1))
        self.sigma_ = float(np.median(nearest) or 1.0) if self.soft_sigma is None \
            else float(self.soft_sigma)

    def _weights(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Word indices ``(m, k)`` and vote weights ``(m, k)`` per descriptor."""
        d2 = squared_distances(flat, self.codebook_)
        if self.assignment == "hard":
            return d2.argmin(1)[:, None], np.ones((len(flat), 1), np.float32)
        k = min(self.soft_neighbors, self.n_words)
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(d2, idx, axis=1)
        w = np.exp(-(near - near.min(1, keepdims=True)) / (2 * self.sigma_**2))
        return idx, (w / w.sum(1, keepdims=True)).astype(np.float32)

    def _encode(self, desc: np.ndarray, positions: np.ndarray) -> np.ndarray:
        n, m, _ = desc.shape
        K = self.n_words
        idx, w = self._weights(desc.reshape(n * m, -1))
        blocks = []
        for level in range(self.pyramid_levels):
            g = 2**level
            cell = (np.minimum((positions[:, 1] * g).astype(int), g - 1) * g
                    + np.minimum((positions[:, 0] * g).astype(int), g - 1))  # (m,)
            region = np.tile(cell, n)[:, None]  # (n*m, 1)
            image = np.repeat(np.arange(n), m)[:, None]
            flat = (image * g * g + region) * K + idx
            hist = np.bincount(flat.ravel(), weights=w.ravel(), minlength=n * g * g * K)
            blocks.append(hist.reshape(n, g * g * K))
        return power_l2(np.hstack(blocks), self.power_norm)
