"""Dataset loaders: ``digits`` (bundled), ``cifar10`` and ``folder:PATH``.

Every loader returns a :class:`Dataset` of uint8 ``(n, h, w, 3)`` images,
integer labels and class names, split into train and test.
"""

from __future__ import annotations

from pathlib import Path

from ..cache import ArrayCache
from ..errors import DataError
from ..registry import Registry
from .base import Dataset, data_root
from .cifar10 import load_cifar10
from .digits import load_digits
from .folder import DEFAULT_IMAGE_SIZE, load_image_folder

DATASETS = Registry("dataset")
DATASETS.register("digits", "scikit-learn's 8x8 digits as 32x32 RGB; no download (default).")(
    load_digits)
DATASETS.register("cifar10", "CIFAR-10: official python batches or train/test image folders.")(
    load_cifar10)
DATASETS.register("folder", "folder:PATH, PATH/train|test/<class>/* or PATH/<class>/*.")(
    load_image_folder)


def load_dataset(
    name: str = "digits",
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    test_fraction: float = 0.25,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    cache: ArrayCache | None = None,
) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        ``"digits"``, ``"cifar10"`` or ``"folder:PATH"``.
    data_dir : path, optional
        Data root for ``cifar10`` (default ``$FEATBENCH_DATA`` or the cache folder).
    download : bool
        Download CIFAR-10 when it is not found.
    image_size : int, optional
        Side images of a folder dataset are resized to (default 32).
    test_fraction : float
        Test share when a dataset has no predefined split (digits, flat folders).
    train_size, test_size : int, optional
        Seeded, stratified subsets of each split.
    seed : int
        Seed of every split and subset.
    cache : ArrayCache, optional
        Cache for decoded images.

    Examples
    --------
    >>> from featbench import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.X_train.shape[1:], ds.X_train.dtype, len(ds.classes)
    ((32, 32, 3), dtype('uint8'), 10)
    """
    kind, _, arg = name.partition(":")
    DATASETS.get(kind)
    if kind == "folder":
        if not arg:
            raise DataError("folder dataset needs a path: --dataset folder:PATH")
        ds = load_image_folder(arg, image_size=image_size or DEFAULT_IMAGE_SIZE,
                               test_fraction=test_fraction, seed=seed, cache=cache)
    elif arg:
        raise DataError(f"dataset {kind!r} takes no ':' argument; got {name!r}")
    elif kind == "digits":
        ds = load_digits(test_fraction=test_fraction, seed=seed)
    else:
        ds = load_cifar10(data_root(data_dir), download=download, cache=cache)
    if train_size is not None or test_size is not None:
        ds = ds.subset(train_size, test_size, seed=seed)
    return ds


__all__ = ["DATASETS", "Dataset", "data_root", "load_dataset"]
