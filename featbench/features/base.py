"""The base class every image extractor derives from.

An extractor is a scikit-learn transformer: ``__init__`` stores its parameters
unchanged, ``fit`` learns (and stores in attributes ending with ``_``) whatever
the method needs, ``transform`` maps a batch of images to a 2-D feature matrix.
Subclasses implement :meth:`ImageExtractor._extract` on one chunk of images.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..parallel import map_chunks


def as_tuple(value, n: int | None = None) -> tuple:
    """``8`` -> ``(8, 8)`` (with ``n=2``) or ``(8,)``; sequences become tuples."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * (n or 1)
    return tuple(value)


def as_uint8_images(X, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as uint8 RGB images of shape ``(n, height, width, 3)``.

    Accepted: uint8 arrays ``(n, h, w, 3)`` or grayscale ``(n, h, w)`` (replicated
    to three channels), and float arrays with values in [0, 1] (scaled by 255 and
    rounded). Anything else raises a ValueError that says what was expected.
    """
    X = np.asarray(X)
    if X.ndim == 3:
        X = np.repeat(X[..., None], 3, axis=-1)
    if X.ndim != 4 or X.shape[-1] != 3:
        raise ValueError(
            f"{name} must be images of shape (n_images, height, width, 3) or "
            f"(n_images, height, width); got an array of shape {X.shape}"
        )
    if X.dtype == np.uint8:
        return X
    if X.dtype.kind == "f":
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{name} contains NaN or infinity")
        if X.size and (X.min() < 0 or X.max() > 1):
            raise ValueError(
                f"{name}: float images must have values in [0, 1]; got values in "
                f"[{X.min():.4g}, {X.max():.4g}] (pass uint8 images for 0-255 data)"
            )
        return np.round(X * 255).astype(np.uint8)
    if X.dtype.kind in "iub":
        if X.size and (X.min() < 0 or X.max() > 255):
            raise ValueError(f"{name}: integer images must have values in [0, 255]")
        return X.astype(np.uint8)
    raise ValueError(f"{name}: unsupported image dtype {X.dtype}")


class ImageExtractor(TransformerMixin, BaseEstimator):
    """Base class: maps ``(n, h, w, 3)`` uint8 images to ``(n, n_features)`` features.

    Fitting records the image shape (``image_shape_``); transforming images of
    another shape is an error. Extraction runs over chunks of images on all cores.
    """

    #: images per chunk handed to :meth:`_extract`
    _chunk_size = 1024
    #: worker threads for :meth:`_extract` (None: all cores)
    _n_jobs: int | None = None
    #: whether ``fit`` learns from the images (a codebook): the extraction layer then
    #: fits on a sample of the training split and stores the fitted state
    learns_from_images: bool = False

    def fit(self, X, y=None):
        """Validate the images and learn what the extractor needs (nothing by default)."""
        X = as_uint8_images(X)
        self.image_shape_ = tuple(X.shape[1:])
        self._fit(X, y)
        return self

    def _fit(self, X: np.ndarray, y=None) -> None:
        """Learn state from uint8 images (override in extractors that learn)."""

    #: fitted attributes (numeric arrays or numbers) a learned extractor's
    #: :meth:`fitted_state` exports, besides ``image_shape_``
    _state_names: tuple[str, ...] = ()

    def fitted_state(self) -> dict[str, np.ndarray | float | int | None]:
        """The fitted state as plain numeric arrays and numbers (what the feature store
        keeps, with no pickled objects); :meth:`set_fitted_state` restores it."""
        check_is_fitted(self, "image_shape_")
        return {"image_shape_": np.asarray(self.image_shape_, dtype=np.int64),
                **{name: getattr(self, name) for name in self._state_names}}

    def set_fitted_state(self, state: dict[str, np.ndarray | float | int | None]):
        """Restore a state exported by :meth:`fitted_state`: the extractor then encodes
        exactly as the one fitted.

        Raises
        ------
        ValueError
            When the state lacks something this extractor learns.
        """
        missing = sorted({"image_shape_", *self._state_names} - state.keys())
        if missing:
            raise ValueError(f"{type(self).__name__}: fitted state lacks {', '.join(missing)}")
        self.image_shape_ = tuple(int(v) for v in np.asarray(state["image_shape_"]))
        for name in self._state_names:
            setattr(self, name, state[name])
        return self

    def transform(self, X) -> np.ndarray:
        """Extract features from ``X``, images of the fitted shape."""
        if self.__sklearn_tags__().requires_fit or hasattr(self, "image_shape_"):
            check_is_fitted(self, "image_shape_")
        X = as_uint8_images(X)
        if hasattr(self, "image_shape_") and tuple(X.shape[1:]) != self.image_shape_:
            raise ValueError(
                f"{type(self).__name__} was fitted on images of shape {self.image_shape_}; "
                f"got images of shape {tuple(X.shape[1:])}"
            )
        return map_chunks(
            self._extract, X, chunk_size=self._chunk_rows(X.shape[1] * X.shape[2]),
            desc=type(self).__name__, n_jobs=self._n_jobs,
        )

    def _chunk_rows(self, pixels: int) -> int:
        """Images per chunk: ``_chunk_size`` at CIFAR's 32 x 32, fewer for larger images,
        so that a chunk's working arrays take the same memory at any resolution (the
        features do not change: each image's depend on that image alone)."""
        if self._n_jobs == 1:  # extractors that batch inside (CNNs, kmeans-patches)
            return self._chunk_size
        return max(1, min(self._chunk_size, self._chunk_size * 1024 // max(1, pixels)))

    def _extract(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names ``<prefix>0 ... <prefix>{n-1}`` of the output features."""
        check_is_fitted(self, "n_features_out_")
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_features_out_)], dtype=object)

    @property
    def n_features_out_(self) -> int:
        """Number of output features for the fitted image shape."""
        check_is_fitted(self, "image_shape_")
        probe = np.zeros((1, *self.image_shape_), dtype=np.uint8)
        return int(self._extract(probe).shape[1])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags
