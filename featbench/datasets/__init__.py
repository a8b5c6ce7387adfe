"""Dataset loaders: ``digits`` (bundled), ``cifar10`` and ``folder:PATH``.

Every loader returns a :class:`Dataset` of uint8 ``(n, h, w, 3)`` images,
integer labels and class names, split into train and test.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..registry import Registry
from .base import Dataset, data_root
from .cifar10 import load_cifar10
from .digits import load_digits
from .folder import load_image_folder, load_list_file
from .source import ArraySource, FileSource, ImageSource, View

DATASETS = Registry("dataset")
DATASETS.register("digits", "scikit-learn's 8x8 digits as 32x32 RGB; no download (default).")(
    load_digits)
DATASETS.register("cifar10", "CIFAR-10: official python batches or train/test image folders.")(
    load_cifar10)
DATASETS.register(
    "folder", "folder:PATH, PATH/train/ + test/ or val/ (+ both), or PATH/<class>/*.")(
    load_image_folder)
DATASETS.register("list", "list:FILE, a CSV/TSV of path,label[,split] rows (paths relative "
                          "to FILE).")(load_list_file)


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
    cache=None,
    skip_bad_images: bool = False,
) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        ``"digits"``, ``"cifar10"``, ``"folder:PATH"`` or ``"list:FILE"``.
    data_dir : path, optional
        Data root for ``cifar10`` (default ``$FEATBENCH_DATA`` or the cache folder).
    download : bool
        Download CIFAR-10 when it is not found.
    image_size : int, optional
        Side the hand-crafted extractors see, every image resized as a whole
        (default: the images' own size when they share one up to 128 px, else 128).
        CNNs always see their own resolution, from the original file.
    test_fraction : float
        Test share when a dataset has no predefined split (digits, flat folders).
    train_size, test_size : int, optional
        Seeded, stratified subsets of each split.
    seed : int
        Seed of every split and subset.
    cache : ignored
        Kept for callers of earlier versions (nothing is decoded when loading).
    skip_bad_images : bool
        Keep files that cannot be found (missing, broken links) in the listing, to be
        left out as bad images when decoded; by default the first one is refused here.

    Examples
    --------
    >>> from featbench import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.X_train.shape[1:], ds.X_train.dtype, len(ds.classes)
    ((32, 32, 3), dtype('uint8'), 10)
    """
    kind, _, arg = name.partition(":")
    if kind not in DATASETS and Path(name).expanduser().exists():
        what = "folder" if Path(name).expanduser().is_dir() else "list"
        raise DataError(f"unknown dataset {name!r}; for images in that "
                        f"{'folder' if what == 'folder' else 'list file'} use "
                        f"--dataset {what}:{name}")
    DATASETS.get(kind)
    if kind in ("folder", "list"):
        if not arg:
            what = "PATH" if kind == "folder" else "FILE"
            raise DataError(f"{kind} dataset needs a path: --dataset {kind}:{what}")
        loader = load_image_folder if kind == "folder" else load_list_file
        ds = loader(arg, image_size=image_size, test_fraction=test_fraction, seed=seed,
                    **({"skip_bad": skip_bad_images} if kind == "list" else {}))
    elif arg:
        raise DataError(f"dataset {kind!r} takes no ':' argument; got {name!r}")
    elif kind == "digits":
        ds = load_digits(test_fraction=test_fraction, seed=seed)
    else:
        ds = load_cifar10(data_root(data_dir), download=download)
    ds.image_size = image_size
    if train_size is not None or test_size is not None:
        ds = ds.subset(train_size, test_size, seed=seed)
    if not skip_bad_images:
        ds.check_readable()
    return ds


__all__ = ["DATASETS", "ArraySource", "Dataset", "FileSource", "ImageSource", "View",
           "data_root", "load_dataset"]
