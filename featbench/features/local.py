"""Dense local descriptors on a regular grid: SIFT through OpenCV, or normalized patches.

RootSIFT: R. Arandjelovic and A. Zisserman, "Three things everyone should know to
improve object retrieval", CVPR 2012.

Used by the bag-of-words family (:mod:`~featbench.features.bovw`,
:mod:`~featbench.features.vlad`, :mod:`~featbench.features.fisher`).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

DESCRIPTORS = ("sift", "rootsift", "patch")
_local = threading.local()


def grid_centers(height: int, width: int, step: int, patch_size: int) -> np.ndarray:
    """Centers ``(x, y)`` of the patches of a dense grid that fit inside the image."""
    half = patch_size / 2
    ys = np.arange(half, height - half + 1e-9, step)
    xs = np.arange(half, width - half + 1e-9, step)
    if len(xs) == 0 or len(ys) == 0:
        raise ValueError(f"patch_size {patch_size} does not fit in {height}x{width} images")
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def _sift():
    if not hasattr(_local, "sift"):
        _local.sift = cv2.SIFT_create()  # one per thread: compute() is not re-entrant
    return _local.sift


def dense_descriptors(
    images: np.ndarray, descriptor: str = "sift", step: int = 4,
    patch_sizes: tuple[int, ...] = (8,),
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of every patch of a dense grid, at one or more patch sizes.

    Parameters
    ----------
    images : ndarray of shape (n, height, width, 3), uint8
    descriptor : {"sift", "rootsift", "patch"}
        "sift": OpenCV's SIFT descriptor (128-D, upright) computed at grid keypoints
        scaled so that its 4 x 4 spatial bins cover the patch. "rootsift": the same,
        L1 normalized then square-rooted (Hellinger kernel; Arandjelovic & Zisserman
        2012), so Euclidean k-means and GMMs compare histograms better. "patch": the gray
        patch itself, resampled to 8 x 8 when larger, minus its mean and divided by
        its norm (64-D).
    step : int
        Grid spacing in pixels.
    patch_sizes : tuple of int
        Patch sizes (scales); each adds a full grid.

    Returns
    -------
    descriptors : ndarray of shape (n, n_patches, dim), float32
    positions : ndarray of shape (n_patches, 2)
        Patch centers ``(x, y)`` relative to the image size (in [0, 1)), for pyramids.
    """
    if descriptor not in DESCRIPTORS:
        raise ValueError(f"descriptor must be one of {DESCRIPTORS}; got {descriptor!r}")
    if int(step) < 1 or any(int(p) < 2 for p in patch_sizes):
        raise ValueError(f"step must be >= 1 and patch sizes >= 2; got {step}, {patch_sizes}")
    n, height, width = images.shape[:3]
    gray = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images]) if n else \
        np.zeros((0, height, width), np.uint8)
    centers = [grid_centers(height, width, step, p) for p in patch_sizes]
    positions = np.concatenate(centers) / np.array([width, height])
    dim = 64 if descriptor == "patch" else 128
    out = np.empty((n, len(positions), dim), np.float32)
    if descriptor in ("sift", "rootsift"):
        # OpenCV's descriptor spans 4 bins x 3 x (size / 2) = 6 x size pixels, so a
        # keypoint of size p / 6 describes exactly the p x p patch; angle 0 = upright.
        keypoints = [cv2.KeyPoint(float(x), float(y), p / 6.0, 0.0)
                     for p, c in zip(patch_sizes, centers, strict=True) for x, y in c]
        sift = _sift()
        for i in range(n):
            kps, desc = sift.compute(gray[i], keypoints)
            if desc is None or len(kps) != len(keypoints):
                raise ValueError("OpenCV dropped grid keypoints; use a smaller patch_size")
            out[i] = desc
        if descriptor == "rootsift":
            out /= out.sum(axis=2, keepdims=True) + 1e-7
            np.sqrt(out, out=out)
    else:
        col = 0
        for p, c in zip(patch_sizes, centers, strict=True):
            offs = (c - p / 2).astype(int)
            windows = np.lib.stride_tricks.sliding_window_view(gray, (p, p), axis=(1, 2))
            patches = windows[:, offs[:, 1], offs[:, 0]].astype(np.float32)  # (n, m, p, p)
            if p != 8:
                flat = patches.reshape(-1, p, p)
                patches = np.stack([cv2.resize(q, (8, 8), interpolation=cv2.INTER_AREA)
                                    for q in flat]).reshape(n, len(c), 8, 8)
            patches = patches.reshape(n, len(c), 64)
            patches -= patches.mean(axis=2, keepdims=True)
            patches /= np.linalg.norm(patches, axis=2, keepdims=True) + 1e-6
            out[:, col:col + len(c)] = patches
            col += len(c)
    return out, positions
