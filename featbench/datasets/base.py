"""The :class:`Dataset` every loader returns, subsetting, and the data root."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import cache_dir, fingerprint
from ..errors import DataError
from .source import UNREADABLE_DIGEST, ArraySource, ImageSource, View

#: Datasets whose images are all at most this many pixels on a side are "small":
#: CNN inputs are the whole image resized (CIFAR-10, digits), not a center crop.
SMALL_MAX_SIDE = 64
#: Hand-crafted working size when the images do not share one size up to 128 px.
DEFAULT_WORKING_SIZE = 128
SPLITS = ("train", "val", "test")


def data_root(data_dir: str | Path | None = None) -> Path:
    """``data_dir``, else ``$FEATBENCH_DATA``, else ``<cache folder>/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("FEATBENCH_DATA"):
        return Path(os.environ["FEATBENCH_DATA"]).expanduser()
    return cache_dir() / "data"


@dataclass
class Dataset:
    """An image classification dataset: lazy train and test splits, optionally val.

    Attributes
    ----------
    name : str
        How it was asked for (``"cifar10"``, ``"folder:/path"``, ...).
    train, test : ImageSource
        The training split and the evaluation split.
    classes : list of str
    val : ImageSource, optional
        A validation split of the dataset's own (``train/ + val/ + test/``): used for
        tuning instead of a split carved out of ``train``.
    source : str
        Where the images came from (a path, or "sklearn").
    layout : str
        The layout found, e.g. ``"train/ + val/ (val is the evaluation split)"``.
    image_size : int, optional
        ``--image-size``: side the hand-crafted extractors see (None: see
        :attr:`working_view`).
    notes : dict
        Extra provenance (split seed, subset sizes, ...) stored in run records.
    """

    name: str
    train: ImageSource
    test: ImageSource
    classes: list[str]
    val: ImageSource | None = None
    source: str = ""
    layout: str = ""
    image_size: int | None = None
    notes: dict = field(default_factory=dict)
    #: max side and shared size of the whole dataset's images (before any subset)
    scan: dict | None = None
    _memo: dict = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for split in SPLITS:
            src = self.split(split)
            if src is None:
                continue
            if len(src) == 0:
                raise DataError(f"{self.name}: the {split} split is empty")
        seen = set(np.unique(self.train.labels).tolist())
        if len(seen) < 2:
            raise DataError(f"{self.name}: the training split has {len(seen)} class "
                            f"({', '.join(self.classes[i] for i in seen)}); a classifier "
                            f"needs at least 2")
        for split in ("val", "test"):
            src = self.split(split)
            if src is None:
                continue
            missing = sorted(set(np.unique(src.labels).tolist()) - seen)
            if missing:
                names = ", ".join(self.classes[i] for i in missing)
                raise DataError(f"{self.name}: {split} classes missing from train: {names}")

    @classmethod
    def from_arrays(cls, name: str, X_train, y_train, X_test, y_test, classes, **kwargs
                    ) -> Dataset:
        """A dataset of in-memory uint8 ``(n, h, w, 3)`` arrays."""
        return cls(name, ArraySource(X_train, y_train, f"{name}:train"),
                   ArraySource(X_test, y_test, f"{name}:test"), list(classes), **kwargs)

    # -- splits ---------------------------------------------------------------------
    def split(self, split: str) -> ImageSource | None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
        return getattr(self, split)

    def splits(self) -> dict[str, ImageSource]:
        """The splits present, in order train, val, test."""
        return {s: self.split(s) for s in SPLITS if self.split(s) is not None}

    @property
    def y_train(self) -> np.ndarray:
        return self.train.labels

    @property
    def y_test(self) -> np.ndarray:
        return self.test.labels

    @property
    def y_val(self) -> np.ndarray | None:
        return None if self.val is None else self.val.labels

    @property
    def X_train(self) -> np.ndarray:
        """Training images decoded at the working size (small datasets and tests only)."""
        return self._materialized("train")

    @property
    def X_test(self) -> np.ndarray:
        """Test images decoded at the working size (small datasets and tests only)."""
        return self._materialized("test")

    def _materialized(self, split: str) -> np.ndarray:
        if split not in self._memo.get("X", {}):
            self._memo.setdefault("X", {})[split] = self.split(split).load(self.working_view())
        return self._memo["X"][split]

    # -- resolution -----------------------------------------------------------------
    def image_scan(self) -> dict[str, Any]:
        """Largest side and the shared size (if any) of every image, from file headers."""
        if self.scan is None:
            sizes = np.concatenate([s.image_sizes() for s in self.splits().values()])
            ok = sizes[(sizes > 0).all(axis=1)]
            shared = np.unique(ok, axis=0)
            self.scan = {
                "max_side": int(ok.max()) if len(ok) else 0,
                "shared_size": [int(v) for v in shared[0]] if len(shared) == 1 else None,
            }
        return self.scan

    @property
    def small(self) -> bool:
        """Every image at most 64 px on a side (CIFAR-10, digits): CNNs see whole images."""
        return self.image_scan()["max_side"] <= SMALL_MAX_SIDE

    def working_view(self) -> View:
        """What the hand-crafted extractors see.

        ``--image-size S``: every image resized as a whole to S x S. Otherwise the
        images' own size when they all share one up to 128 px, else 128 x 128.
        """
        if self.image_size is not None:
            return View("resize", int(self.image_size))
        shared = self.image_scan()["shared_size"]
        if shared is not None and max(shared) <= DEFAULT_WORKING_SIZE:
            if shared[0] == shared[1]:
                return View("resize", int(shared[0]))  # = native: no image is resized
            return View("native")
        return View("resize", DEFAULT_WORKING_SIZE)

    # -- identity -------------------------------------------------------------------
    def split_fingerprint(self, split: str) -> str:
        """Fingerprint of one split: the image arrays, or the files' bytes (folders)."""
        return self.split(split).fingerprint

    @property
    def fingerprint(self) -> str:
        """Hash of every split's fingerprint, the labels and the class names."""
        if "all" not in self._memo:
            parts = [f"{s}:{src.fingerprint}" for s, src in self.splits().items()]
            names = "\n".join([*parts, *self.classes]).encode()
            labels = [src.labels for src in self.splits().values()]
            self._memo["all"] = fingerprint(np.frombuffer(names, np.uint8), *labels)
        return self._memo["all"]

    def subset(self, train_size: int | None = None, test_size: int | None = None,
               seed: int = 0) -> Dataset:
        """A seeded, stratified subset of train and test (None keeps the whole split)."""
        self.image_scan()  # the resolution rule is the whole dataset's
        train = _stratified(self.train, train_size, seed, "train")
        test = _stratified(self.test, test_size, seed, "test")
        notes = {**self.notes, "subset": {"train_size": train_size, "test_size": test_size,
                                          "seed": seed}}
        return replace(self, train=train, test=test, notes=notes)

    def duplicates_of_train(self) -> dict[str, int]:
        """Images of each held-out split (``"val"``, ``"test"``) whose content is
        byte-identical to a training image (files: their bytes; in-memory datasets:
        their pixels), from the digests the fingerprint is made of."""
        if "dups" not in self._memo:
            def keys(src: ImageSource) -> list[bytes]:
                return [d.tobytes() for d in src.content_digests()]

            train = set(keys(self.train)) - {UNREADABLE_DIGEST}
            self._memo["dups"] = {
                s: sum(k in train for k in keys(src))
                for s, src in self.splits().items() if s != "train"}
        return self._memo["dups"]

    def check_readable(self) -> None:
        """Raise :class:`DataError` naming the first file that cannot be found (a missing
        file, a broken link); ``--skip-bad-images`` leaves such files out instead."""
        for src in self.splits().values():
            bad = src.unreadable()
            if bad:
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                raise DataError(f"{bad[0]}{more}; --skip-bad-images leaves such images out")

    def check_memory(self, shard_size: int, n_workers: int | None = None) -> None:
        """Refuse, before any work, a working size (``--image-size``) whose decoded shards
        cannot fit in the memory this machine has available.

        The estimate (:func:`working_memory`) counts what extraction always holds: the
        shard of decoded images being extracted and the next one being decoded, plus one
        float64 copy of an image per worker. Nothing is checked without ``--image-size``
        (the working size is then at most 128 px).

        Raises
        ------
        DataError
            Naming ``--image-size``, the estimate and the memory available.
        """
        if self.image_size is None:
            return
        view = self.working_view()
        largest = max(len(src) for src in self.splits().values())
        need = working_memory(int(view.size), min(shard_size, largest),
                              n_workers or os.cpu_count() or 1)
        have = available_memory()
        if have is not None and need > have:
            raise DataError(
                f"--image-size {self.image_size}: extraction would hold about {_gib(need)} "
                f"of decoded images ({min(shard_size, largest)} per shard, "
                f"{view.size}x{view.size} px) but {_gib(have)} of memory is available; "
                f"use a smaller --image-size (or --shard-size)")

    def describe(self) -> str:
        """One line: name, layout, images per split, classes (and held-out images
        byte-identical to training images, list-file paths outside its folder)."""
        counts = " / ".join(f"{len(src)} {'val (tuning)' if s == 'val' else s}"
                            for s, src in self.splits().items())
        layout = f" [{self.layout}]" if self.layout else ""
        notes = [f"{n} of {len(self.split(s))} {s} images byte-identical to training images"
                 for s, n in self.duplicates_of_train().items() if n]
        outside = self.notes.get("paths_outside_list_folder")
        if outside:
            notes.append(f"{outside} listed paths outside the list file's folder "
                         f"(absolute or ..)")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return f"{self.name}{layout}: {counts} images, {len(self.classes)} classes{extra}"

    def summary(self) -> dict:
        """Sizes, layout, resolution rule and fingerprint, for run records."""
        out = {
            "name": self.name,
            "source": self.source,
            "layout": self.layout,
            "fingerprint": self.fingerprint,
            "n_train": int(len(self.train)),
            "n_test": int(len(self.test)),
            "n_classes": len(self.classes),
            "classes": list(self.classes),
            "image_scan": self.image_scan(),
            "working_view": self.working_view().describe(),
        }
        if self.val is not None:
            out["n_val_split"] = int(len(self.val))
        for split, n in self.duplicates_of_train().items():
            out[f"{split}_duplicates_of_train"] = int(n)
        shared = self.image_scan()["shared_size"]
        if shared is not None:
            out["image_shape"] = [*shared, 3]
        if self.notes:
            out["notes"] = self.notes
        return out


def working_memory(size: int, shard_images: int, n_workers: int) -> int:
    """Bytes extraction holds at a working size of ``size`` x ``size`` px, at least: two
    shards of ``shard_images`` decoded uint8 RGB images (one extracted, the next one being
    decoded) and one float64 copy of an image per worker."""
    image = size * size * 3
    return 2 * shard_images * image + n_workers * 8 * image


def available_memory() -> int | None:
    """Bytes of memory available to this process: ``MemAvailable`` of /proc/meminfo (or
    the physical memory where there is none), within a cgroup (container) limit; None
    when neither can be read."""
    have = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    have = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if have is None:
        try:
            have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    try:  # cgroup v2: limit minus what the group uses already
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit.isdigit():
            have = min(have, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return have


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _stratified(src: ImageSource, size: int | None, seed: int, split: str) -> ImageSource:
    y = src.labels
    if size is None or size >= len(y):
        if size is not None and size > len(y):
            raise DataError(f"asked for {size} {split} images but the split has {len(y)}")
        return src
    if size < 1:
        raise DataError(f"--{split}-size must be positive; got {size}")
    n_classes = len(np.unique(y))
    if split == "train" and size < n_classes:
        raise DataError(f"--train-size {size}: a stratified subset needs at least one image "
                        f"per class ({n_classes} classes)")
    counts = np.bincount(y)
    stratify = y if size >= len(np.unique(y)) and counts[counts > 0].min() >= 2 else None
    from sklearn.model_selection import train_test_split  # not at import: `featbench list`

    idx, _ = train_test_split(np.arange(len(y)), train_size=size, random_state=seed,
                              stratify=stratify)
    return src.take(np.sort(idx))


def stratified_indices(y: np.ndarray, test_fraction: float, seed: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified train/test indices of one labelled pool of images."""
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must be in (0, 1); got {test_fraction}")
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    from sklearn.model_selection import train_test_split  # not at import: `featbench list`

    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                      random_state=seed, stratify=stratify)
    return np.sort(idx_tr), np.sort(idx_te)


def stratified_split(X, y, test_fraction: float, seed: int):
    """Seeded, stratified train/test split of one labelled pool of in-memory images."""
    idx_tr, idx_te = stratified_indices(y, test_fraction, seed)
    return X[idx_tr], y[idx_tr], X[idx_te], y[idx_te]
