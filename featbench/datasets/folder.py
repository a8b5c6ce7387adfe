"""Image-folder datasets: ``train/<class>/*`` + ``test/<class>/*``, or ``<class>/*``.

Decoded arrays are cached (keyed by every file's path, size and modification
time, and the image size), so a second run does not decode the JPEGs again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cache import ArrayCache, make_key
from ..errors import DataError
from .base import Dataset, stratified_split
from .imageio import IMAGE_EXTENSIONS, read_images

#: Size images are resized to when no --image-size is given (that of CIFAR-10).
DEFAULT_IMAGE_SIZE = 32
_LOADER_VERSION = 1


def list_class_folder(root: Path, classes: list[str] | None = None) -> dict[str, list[Path]]:
    """Image files per class sub-folder of ``root`` (sorted; hidden files skipped)."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    found = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root} has no class sub-folders (expected {root}/<class>/<image>)")
    out = {}
    for folder in found:
        files = sorted(
            p for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise DataError(f"class folder {folder} is empty (no image files)")
        out[folder.name] = files
    if classes is not None:
        unknown = sorted(set(out) - set(classes))
        if unknown:
            raise DataError(f"{root}: unexpected class folders {unknown}; expected {classes}")
        out = {c: out[c] for c in classes if c in out}
    return out


def _flatten(per_class: dict[str, list[Path]], classes: list[str]):
    paths, labels = [], []
    for name, files in per_class.items():
        paths += files
        labels += [classes.index(name)] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def _listing_key(paths: list[Path], image_size: int | None) -> str:
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return make_key(listing=stats, image_size=image_size, version=_LOADER_VERSION)


def load_image_folder(
    root: str | Path,
    *,
    name: str | None = None,
    classes: list[str] | None = None,
    image_size: int | None = DEFAULT_IMAGE_SIZE,
    test_fraction: float = 0.25,
    seed: int = 0,
    cache: ArrayCache | None = None,
) -> Dataset:
    """Load an image folder as a :class:`Dataset`.

    Parameters
    ----------
    root : path
        Either ``root/train/<class>/*`` and ``root/test/<class>/*``, or
        ``root/<class>/*`` (then split by ``seed``, stratified, ``test_fraction``).
    name : str, optional
        Dataset name in records (default ``folder:<root>``).
    classes : list of str, optional
        Class order (default: sorted folder names).
    image_size : int or None
        Images are resized to ``image_size`` x ``image_size`` when they differ;
        None requires all images to share one size.
    cache : ArrayCache, optional
        Where decoded arrays are kept between runs.
    """
    root = Path(root).expanduser()
    name = name or f"folder:{root}"
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; expected {root}/train/<class>/*, "
            f"{root}/test/<class>/* or {root}/<class>/*"
        )
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    if split_layout:
        train = list_class_folder(root / "train", classes)
        test = list_class_folder(root / "test", classes)
        missing = sorted(set(test) - set(train))
        if missing:
            raise DataError(f"{root}: test classes missing from train: {', '.join(missing)}")
        names = classes or sorted(set(train) | set(test))
        names = [c for c in names if c in train]
        p_train, y_train = _flatten(train, names)
        p_test, y_test = _flatten(test, names)
        all_paths = p_train + p_test
    else:
        pool = list_class_folder(root, classes)
        names = list(pool) if classes is None else [c for c in classes if c in pool]
        all_paths, y_all = _flatten(pool, names)

    cache = cache or ArrayCache(enabled=False)
    key = _listing_key(all_paths, image_size)
    hit = cache.load("datasets", key)
    if hit is not None:
        X_all = hit["X"]
    else:
        X_all = read_images(all_paths, image_size, desc=f"decode {root.name}")
        cache.save("datasets", key, {"X": X_all}, {"root": str(root)})

    if split_layout:
        n = len(p_train)
        X_train, X_test = X_all[:n], X_all[n:]
    else:
        X_train, y_train, X_test, y_test = stratified_split(X_all, y_all, test_fraction, seed)
    return Dataset(name, X_train, y_train, X_test, y_test, list(names), source=str(root),
                   notes={"layout": "train/test" if split_layout else "class folders",
                          "image_size": image_size})
