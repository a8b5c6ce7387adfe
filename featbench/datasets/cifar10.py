"""CIFAR-10 (Krizhevsky 2009): the official python batches or an image-folder copy.

Looked for under the data root, in this order: ``cifar-10-batches-py/`` (the
official pickles, each batch and ``batches.meta`` md5-verified before it is
unpickled), the root itself when it holds the batches or ``train/`` + ``test/``
class folders, then ``cifar10-jpeg/``,
``cifar10/`` and ``CIFAR-10-images/`` folder copies. With ``download=True`` and
nothing found, the official archive is downloaded (md5-verified, progress bar).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Dataset
from .folder import load_image_folder

CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_DIR = "cifar-10-batches-py"
#: md5 of every official batch file and of ``batches.meta`` (the values torchvision
#: checks too): each is verified before it is unpickled, so no other file is loaded
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
FOLDER_COPIES = ("cifar10-jpeg", "cifar10", "CIFAR-10-images")


def find_cifar10(root: Path) -> tuple[str, Path] | None:
    """``("pickle", folder)`` or ``("folder", folder)`` for the first copy found, else None."""
    for candidate in (root / BATCHES_DIR, root):
        if (candidate / "data_batch_1").is_file():
            return "pickle", candidate
    for candidate in (root, *(root / c for c in FOLDER_COPIES)):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return "folder", candidate
    return None


def download_cifar10(root: Path) -> Path:
    """Download the official archive into ``root``, verify its md5 and extract it."""
    import tarfile
    import urllib.request

    from ..parallel import progress

    root.mkdir(parents=True, exist_ok=True)
    archive = root / Path(URL).name
    partial = archive.with_suffix(".part")
    try:
        with urllib.request.urlopen(URL, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress(total=total, desc="download CIFAR-10", unit="B", unit_scale=True,
                          disable=False) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        if _md5(partial) != ARCHIVE_MD5:
            raise ValueError("md5 of the downloaded archive differs from the official one")
        partial.replace(archive)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, filter="data")
    except (OSError, ValueError, tarfile.TarError) as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"could not download CIFAR-10 from {URL} into {root}: {exc}. "
            f"Download and extract it by hand so that {root / BATCHES_DIR} exists, "
            "or point --data-dir at an image-folder copy (train/<class>/*, test/<class>/*)"
        ) from None
    return root / BATCHES_DIR


def _md5(path: Path) -> str:
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _str_keys(entry: dict) -> dict:
    """Batches pickled by Python 2 have str keys under latin1; others have bytes keys."""
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"CIFAR-10 batch {path} is missing; rerun with --download")
    expected = BATCH_MD5.get(path.name)
    if expected is not None and _md5(path) != expected:
        raise DataError(
            f"CIFAR-10 batch {path} is corrupt (md5 differs from the official file); "
            "delete the folder and rerun with --download"
        )
    try:
        with open(path, "rb") as f:
            entry = _str_keys(pickle.load(f, encoding="latin1"))
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as exc:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {exc}") from None
    return np.ascontiguousarray(images), labels


def load_cifar10_batches(folder: Path) -> Dataset:
    """Read the official python batches in ``folder``."""
    parts = [_read_batch(folder / b) for b in TRAIN_BATCHES]
    X_test, y_test = _read_batch(folder / "test_batch")
    classes = CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        if _md5(meta) != BATCH_MD5["batches.meta"]:  # a pickle can run code: check first
            raise DataError(
                f"CIFAR-10 {meta} differs from the official file (md5) and is not loaded; "
                "delete the folder and rerun with --download")
        try:
            with open(meta, "rb") as f:
                names = _str_keys(pickle.load(f, encoding="latin1"))["label_names"]
        except Exception as exc:
            raise DataError(f"cannot read CIFAR-10 {meta}: {exc}") from None
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return Dataset.from_arrays(
        "cifar10",
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        X_test, y_test, classes, source=str(folder), layout="python batches",
    )


def load_cifar10(root: Path, *, download: bool = False, cache=None) -> Dataset:
    """CIFAR-10 from under ``root`` (see the module docstring for the search order)."""
    found = find_cifar10(root)
    if found is None and download:
        found = ("pickle", download_cifar10(root))
    if found is None:
        looked = [root / BATCHES_DIR, root, *(root / c for c in FOLDER_COPIES)]
        raise DataError(
            "CIFAR-10 not found; looked in " + ", ".join(map(str, looked)) + ". "
            "Pass --download to fetch the official batches, or --data-dir DIR where DIR "
            "holds cifar-10-batches-py/ or an image-folder copy (train/<class>/*, "
            "test/<class>/*)"
        )
    kind, folder = found
    if kind == "pickle":
        return load_cifar10_batches(folder)
    ds = load_image_folder(folder, name="cifar10", classes=CLASSES)
    ds.layout = f"image folder copy, {ds.layout}"
    return ds
