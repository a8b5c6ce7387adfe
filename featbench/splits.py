"""The tuning split: which training images tune, and which may be fitted on.

It is decided once per dataset, seed and validation size, before any extractor
is fitted: the folder's own ``val/`` when it has one, else a seeded, stratified
part of the training split (:func:`~featbench.classifiers.tuning.split_validation`,
the same images for the same seed as featbench always held out). Every learned
extractor (bag of words, VLAD, Fisher vectors, k-means patches) is fitted on the
training images *outside* it, so that validation accuracy is measured on images
nothing has been fitted on; the classifiers tune on it and refit on train plus
validation as before.

Departure from common practice: much of the literature fits unsupervised
codebooks on every training image, validation included (a mild leak); featbench
does not, so that the same rule holds for extractors trained on labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cache import fingerprint


@dataclass(frozen=True)
class TuningSplit:
    """Where a dataset's validation images come from, fixed before extraction.

    Attributes
    ----------
    fit : ndarray of int
        Indices into the training split that may be fitted on (learned extractors,
        and the classifiers while tuning): all of train minus ``val``.
    val : ndarray of int or None
        Indices into the training split held out for validation, or None when the
        dataset has its own ``val/`` split (which is then the validation split).
    n_val : int
        Validation images (before undecodable ones are left out).
    seed : int
        Seed of the split (recorded; it chooses ``val`` when carved from train).
    source : str
        ``"val/"`` or ``"train"``.
    """

    fit: np.ndarray
    val: np.ndarray | None
    n_val: int
    seed: int
    source: str

    def val_mask(self, n_train: int) -> np.ndarray:
        """Boolean mask over the training split: True for its validation images."""
        mask = np.zeros(n_train, dtype=bool)
        if self.val is not None:
            mask[self.val] = True
        return mask

    def describe(self) -> dict[str, Any]:
        """What a record says about the split (sizes, source, seed, digest)."""
        out = {"source": self.source, "n_val": int(self.n_val), "n_fit": int(len(self.fit)),
               "seed": int(self.seed)}
        if self.val is not None:
            out["val_indices"] = fingerprint(np.asarray(self.val, np.int64))
        return out


def tuning_split(ds, seed: int = 0, val_size: int | float | None = None) -> TuningSplit:
    """The tuning split of ``ds`` (see the module docstring).

    Parameters
    ----------
    ds : Dataset
    seed : int
        Chooses the validation images when they are carved from train.
    val_size : int or float, optional
        Validation images (count, or fraction of train) when ``ds`` has no ``val/``;
        default :func:`~featbench.classifiers.tuning.validation_size`. Ignored when
        the dataset has its own ``val/`` split.
    """
    from .classifiers.tuning import split_validation, validation_size

    n_train = len(ds.train)
    if ds.val is not None:
        return TuningSplit(np.arange(n_train), None, len(ds.val), int(seed), "val/")
    y = np.asarray(ds.train.labels)
    n_val = validation_size(n_train, val_size)
    mask = split_validation(y, n_val, seed)
    return TuningSplit(np.flatnonzero(~mask), np.flatnonzero(mask), int(n_val), int(seed),
                       "train")
