"""The :class:`Dataset` every loader returns, subsetting, and the data root."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ..cache import cache_dir, fingerprint
from ..errors import DataError


def data_root(data_dir: str | Path | None = None) -> Path:
    """``data_dir``, else ``$FEATBENCH_DATA``, else ``<cache folder>/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("FEATBENCH_DATA"):
        return Path(os.environ["FEATBENCH_DATA"]).expanduser()
    return cache_dir() / "data"


@dataclass
class Dataset:
    """An image classification dataset with a train and a test split.

    Attributes
    ----------
    name : str
        How it was asked for (``"cifar10"``, ``"folder:/path"``, ...).
    X_train, X_test : ndarray of shape (n, height, width, 3), uint8
    y_train, y_test : ndarray of shape (n,), int64
        Class indices into ``classes``.
    classes : list of str
    source : str
        Where the images came from (a path, or "sklearn").
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str = ""
    notes: dict = field(default_factory=dict)
    # memoized hashes; not an init field, so ``replace`` (subsets) never copies them
    _memo: dict = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if X.dtype != np.uint8 or X.ndim != 4 or X.shape[-1] != 3:
                raise DataError(f"{self.name}: {split} images must be uint8 (n, h, w, 3)")
            if len(X) != len(y):
                raise DataError(f"{self.name}: {len(X)} {split} images but {len(y)} labels")
            if len(y) == 0:
                raise DataError(f"{self.name}: the {split} split is empty")
        missing = sorted(set(np.unique(self.y_test)) - set(np.unique(self.y_train)))
        if missing:
            names = ", ".join(self.classes[i] for i in missing)
            raise DataError(f"{self.name}: test classes missing from train: {names}")

    @property
    def fingerprint(self) -> str:
        """Content hash of both splits and the class names."""
        if "all" not in self._memo:
            names = np.frombuffer("\n".join(self.classes).encode(), dtype=np.uint8)
            self._memo["all"] = fingerprint(
                self.X_train, self.y_train, self.X_test, self.y_test, names
            )
        return self._memo["all"]

    def split_fingerprint(self, split: str) -> str:
        """Content hash of the images of one split (``"train"`` or ``"test"``)."""
        if split not in self._memo:
            self._memo[split] = fingerprint(getattr(self, f"X_{split}"))
        return self._memo[split]

    def subset(self, train_size: int | None = None, test_size: int | None = None,
               seed: int = 0) -> Dataset:
        """A seeded, stratified subset of each split (None keeps the whole split)."""
        X_train, y_train = _stratified(self.X_train, self.y_train, train_size, seed, "train")
        X_test, y_test = _stratified(self.X_test, self.y_test, test_size, seed, "test")
        notes = {**self.notes, "subset": {"train_size": train_size, "test_size": test_size,
                                          "seed": seed}}
        return replace(self, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                       notes=notes)

    def summary(self) -> dict:
        """Sizes, shape and fingerprint, for run records."""
        return {
            "name": self.name,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)),
            "n_classes": len(self.classes),
            "classes": list(self.classes),
            "image_shape": list(self.X_train.shape[1:]),
        }


def _stratified(X, y, size, seed, split):
    if size is None or size >= len(y):
        if size is not None and size > len(y):
            raise DataError(f"asked for {size} {split} images but the split has {len(y)}")
        return X, y
    if size < 1:
        raise DataError(f"--{split}-size must be positive; got {size}")
    counts = np.bincount(y)
    stratify = y if size >= len(np.unique(y)) and counts[counts > 0].min() >= 2 else None
    idx, _ = train_test_split(np.arange(len(y)), train_size=size, random_state=seed,
                              stratify=stratify)
    idx = np.sort(idx)
    return X[idx], y[idx]


def stratified_split(X, y, test_fraction: float, seed: int):
    """Seeded, stratified train/test split of one labelled pool of images."""
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must be in (0, 1); got {test_fraction}")
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                      random_state=seed, stratify=stratify)
    idx_tr, idx_te = np.sort(idx_tr), np.sort(idx_te)
    return X[idx_tr], y[idx_tr], X[idx_te], y[idx_te]
