"""Raw pixels, optionally downscaled: the baseline every feature must beat."""

from __future__ import annotations

import cv2
import numpy as np

from .base import ImageExtractor


class RawPixels(ImageExtractor):
    """The image's pixel values, scaled to [0, 1] and flattened.

    Parameters
    ----------
    size : int or None, default=None
        Downscale each image to ``size`` x ``size`` first (area interpolation,
        :func:`cv2.resize` with ``INTER_AREA``); None keeps the original size.
    grayscale : bool, default=False
        Use the luminance only (``cv2.COLOR_RGB2GRAY``) instead of the 3 channels.

    Attributes
    ----------
    image_shape_ : tuple
        Shape of one image seen in ``fit``.

    References
    ----------
    .. [1] CS231n, assignment 1: linear classifiers on raw CIFAR-10 pixels.
    """

    def __init__(self, size: int | None = None, grayscale: bool = False) -> None:
        self.size = size
        self.grayscale = grayscale

    def _fit(self, X, y=None) -> None:
        valid = isinstance(self.size, (int, np.integer)) and self.size >= 1
        if self.size is not None and not valid:
            raise ValueError(f"size must be a positive integer or None; got {self.size!r}")

    def _extract(self, images: np.ndarray) -> np.ndarray:
        out = images
        if self.size is not None and tuple(images.shape[1:3]) != (self.size, self.size):
            out = np.stack(
                [cv2.resize(im, (self.size, self.size), interpolation=cv2.INTER_AREA)
                 for im in images]
            ) if len(images) else np.zeros((0, self.size, self.size, 3), np.uint8)
        if self.grayscale:
            out = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in out]) if len(out) \
                else out[..., 0]
        return out.reshape(len(images), -1).astype(np.float32) / 255.0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
