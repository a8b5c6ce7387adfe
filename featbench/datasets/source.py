"""Lazy image sources and the views extractors take of their images.

A dataset split is an :class:`ImageSource`: an indexable, lazy collection of
(image, label) pairs. Folders and list files hold only the sorted file list
(paths relative to the dataset root) and the labels; images are decoded on
demand, in batches, by :func:`featbench.extraction` workers. Digits and the
CIFAR-10 pickles are in-memory arrays behind the same interface.

A :class:`View` is how one extractor sees an image, computed from the original
file and nothing else (no feature is computed from an image first shrunk for
another extractor): ``resize`` (the whole image resized to ``size`` x ``size``,
Pillow bilinear, the hand-crafted working size), ``resize-crop`` (the short side
resized to ``resize``, then a centered ``size`` x ``size`` crop: torchvision's
``weights.transforms()``), or ``native`` (the decoded image as it is).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..cache import fingerprint
from ..errors import DataError, ImageWarning
from .imageio import to_rgb8


@dataclass(frozen=True)
class View:
    """How an extractor sees each image, computed from the decoded original.

    Parameters
    ----------
    kind : {"native", "resize", "resize-crop"}
    size : int, optional
        Output side in pixels (``resize`` and ``resize-crop``). With ``native``: the
        side the extractor itself resizes the whole decoded image to (recorded only).
    resize : int, optional
        Short side before the center crop (``resize-crop``), ``round(size / crop_pct)``.
    interpolation : {"bilinear", "bicubic", "nearest"}
    """

    kind: str = "native"
    size: int | None = None
    resize: int | None = None
    interpolation: str = "bilinear"

    def describe(self) -> dict[str, Any]:
        """The view as a JSON-ready dict (records and cache keys)."""
        out: dict[str, Any] = {"transform": self.kind}
        if self.kind == "native" and self.size:
            # decoded as it is; the extractor resizes the whole image itself (CNNs on
            # CIFAR-sized datasets)
            out.update(then="whole image resized by the extractor", size=self.size,
                       interpolation=self.interpolation)
        if self.kind != "native":
            out["size"] = self.size
            out["interpolation"] = self.interpolation
        if self.kind == "resize-crop":
            out["resize"] = self.resize
        return out

    def text(self, shared: list[int] | None = None) -> str:
        """Short human wording, e.g. ``128x128 px (whole image resized)``; ``shared`` is
        the (height, width) every image of the dataset has, if any."""
        own = shared is not None and (self.kind == "native" or (
            self.kind == "resize" and tuple(shared) == (self.size, self.size)))
        if self.kind == "native" and self.size:
            return (f"whole image resized to {self.size}x{self.size} px "
                    f"({self.interpolation})")
        if own:
            return f"{shared[1]}x{shared[0]} px (the images' own size)"
        if self.kind == "resize":
            return f"{self.size}x{self.size} px (whole image resized)"
        if self.kind == "resize-crop":
            return (f"{self.size}x{self.size} px (short side resized to {self.resize}, "
                    f"center crop)")
        return "native size"

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The view of one decoded uint8 RGB image ``(h, w, 3)``."""
        if self.kind == "native":
            return rgb
        if self.kind == "resize":
            if rgb.shape[:2] == (self.size, self.size):
                return rgb
            resized = Image.fromarray(rgb).resize((self.size, self.size), _pil(self.interpolation))
            return np.asarray(resized, dtype=np.uint8)
        if self.kind == "resize-crop":
            # torchvision's ImageClassification preset on a PIL image, stage by stage
            import torchvision.transforms.functional as TF
            from torchvision.transforms import InterpolationMode

            mode = InterpolationMode(self.interpolation)
            img = TF.resize(Image.fromarray(rgb), [self.resize], interpolation=mode,
                            antialias=True)
            img = TF.center_crop(img, [self.size])
            return np.asarray(img, dtype=np.uint8)
        raise ValueError(f"unknown view {self.kind!r}")


def _pil(interpolation: str) -> Image.Resampling:
    return {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
            "nearest": Image.Resampling.NEAREST}[interpolation]


class ImageSource:
    """A lazy, indexable split of (image, label) pairs.

    Subclasses implement :meth:`read`, :meth:`name_of`, :meth:`take`,
    :meth:`image_sizes` and :attr:`fingerprint`.

    Attributes
    ----------
    labels : ndarray of shape (n,), int64
        Class indices.
    """

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        """Image ``i`` decoded to uint8 RGB ``(h, w, 3)`` at its own size."""
        raise NotImplementedError

    def name_of(self, i: int) -> str:  # pragma: no cover - abstract
        """What to call image ``i`` in messages (a path, or ``name[i]``)."""
        raise NotImplementedError

    def take(self, indices: np.ndarray) -> ImageSource:  # pragma: no cover - abstract
        """The sub-source of the images at ``indices`` (in that order)."""
        raise NotImplementedError

    def image_sizes(self) -> np.ndarray:  # pragma: no cover - abstract
        """``(n, 2)`` heights and widths, without decoding the images."""
        raise NotImplementedError

    def unreadable(self) -> list[str]:
        """One message per image that cannot be found (files only): none here."""
        return []

    @property
    def fingerprint(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def content_digests(self) -> np.ndarray:  # pragma: no cover - abstract
        """BLAKE2b-128 of every image's content (a file's bytes, an array's pixels),
        ``(n, 16)`` uint8; :data:`UNREADABLE_DIGEST` for a file that cannot be read."""
        raise NotImplementedError

    def load(self, view: View | None = None, indices=None) -> np.ndarray:
        """Decode images (all, or ``indices``) into one uint8 array under ``view``.

        Convenience for small sources and tests; the extraction layer streams instead.
        """
        view = view or View()
        idx = range(len(self)) if indices is None else indices
        images = [view.apply(self.read(int(i))) for i in idx]
        if not images:
            return np.zeros((0, view.size or 0, view.size or 0, 3), np.uint8)
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise DataError(f"images of {self.name_of(0)}'s split differ in size "
                            f"({sorted(shapes)[:3]} ...); use a resizing view")
        return np.stack(images)


class ArraySource(ImageSource):
    """Images already in memory, ``(n, h, w, 3)`` uint8 (digits, CIFAR-10 pickles)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str = "images") -> None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(f"{name}: images must be uint8 (n, h, w, 3); got "
                            f"{images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.name = name
        self._fp: str | None = None

    def read(self, i: int) -> np.ndarray:
        return self.images[i]

    def name_of(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def take(self, indices) -> ArraySource:
        return ArraySource(self.images[indices], self.labels[indices], self.name)

    def image_sizes(self) -> np.ndarray:
        return np.tile(np.asarray(self.images.shape[1:3]), (len(self), 1))

    def load(self, view: View | None = None, indices=None) -> np.ndarray:
        if view is None or view.kind == "native" or (
                view.kind == "resize" and self.images.shape[1:3] == (view.size, view.size)):
            return self.images if indices is None else self.images[np.asarray(indices)]
        return super().load(view, indices)

    def content_digests(self) -> np.ndarray:
        """BLAKE2b-128 of every image's pixels (shape and bytes)."""
        import hashlib

        out = np.empty((len(self), 16), np.uint8)
        for k, img in enumerate(self.images):
            h = hashlib.blake2b(f"{img.shape}".encode(), digest_size=16)
            h.update(np.ascontiguousarray(img).tobytes())
            out[k] = np.frombuffer(h.digest(), np.uint8)
        return out

    @property
    def fingerprint(self) -> str:
        """Content hash of the images (as the in-memory datasets always had)."""
        if self._fp is None:
            self._fp = fingerprint(self.images)
        return self._fp


class FileSource(ImageSource):
    """Image files under a root folder, listed once, decoded on demand.

    Parameters
    ----------
    root : path
        Folder the ``paths`` are relative to (the dataset root).
    paths : list of str
        POSIX paths relative to ``root``.
    labels : array of int
    stats : list of (size, mtime_ns, inode, ctime_ns), optional
        ``os.stat`` fields of every file (read when absent).
    """

    def __init__(self, root: str | Path, paths: list[str], labels, stats=None) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise DataError(f"{root}: {len(self.paths)} files but {len(self.labels)} labels")
        self._stats = stats
        self._sizes: np.ndarray | None = None
        self._digests: np.ndarray | None = None
        self._fp: str | None = None
        self._listing_fp: str | None = None

    def path(self, i: int) -> Path:
        return self.root / self.paths[i]

    def read(self, i: int) -> np.ndarray:
        return read_file(self.path(i))

    def name_of(self, i: int) -> str:
        return str(self.path(i))

    def take(self, indices) -> FileSource:
        idx = [int(i) for i in indices]
        stats = None if self._stats is None else [self._stats[i] for i in idx]
        out = FileSource(self.root, [self.paths[i] for i in idx], self.labels[idx], stats)
        if self._sizes is not None:
            out._sizes = self._sizes[idx]
        if self._digests is not None:
            out._digests = self._digests[idx]
        return out

    def stats(self) -> list[tuple[int, int, int, int]]:
        """Size, mtime, inode and ctime (ns) of every file, read once
        (:data:`UNREADABLE_STAT` for a file that cannot be found: see :meth:`unreadable`)."""
        if self._stats is None:
            self._stats = []
            for p in self.paths:
                try:
                    st = os.stat(self.root / p)
                except OSError:  # missing, a broken link: a bad image, reported when decoded
                    self._stats.append(UNREADABLE_STAT)
                    continue
                self._stats.append((st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns))
        return self._stats

    def unreadable(self) -> list[str]:
        """``"cannot read image PATH: reason"`` for every file that cannot be found (a
        missing file, a broken link), in order."""
        out = []
        for p, st in zip(self.paths, self.stats(), strict=True):
            if st == UNREADABLE_STAT:
                try:
                    os.stat(self.root / p)
                    continue  # there again
                except OSError as exc:
                    out.append(f"cannot read image {self.root / p}: {exc.strerror or exc}")
        return out

    @property
    def listing_fingerprint(self) -> str:
        """Hash of the listing: relative path, size and mtime of every file, and labels.

        No file is read. It changes whenever a file is touched or the folder is
        copied without its times, so it only keys memos (file digests, image sizes),
        never stored features: see :attr:`fingerprint`.
        """
        if self._listing_fp is None:
            listing = json.dumps([[p, st[0], st[1]] for p, st in zip(self.paths, self.stats(),
                                                                     strict=True)])
            self._listing_fp = fingerprint(np.frombuffer(listing.encode(), np.uint8),
                                           self.labels)
        return self._listing_fp

    @property
    def fingerprint(self) -> str:
        """Content hash: every file's relative path and the BLAKE2 digest of its bytes,
        and the labels.

        Copies of a folder (``cp`` without ``-p``, a re-provisioned volume, another
        machine) keep their keys; touching a file does not change it, editing one does.
        The per-file digests are remembered in the cache folder, keyed by the folder's
        resolved path and every file's path, size, mtime, inode and ctime, so the files
        are read again only after one of those changed (any write changes the ctime,
        whatever happens to the mtime).
        """
        if self._fp is None:
            names = json.dumps(self.paths).encode()
            self._fp = fingerprint(np.frombuffer(names, np.uint8), self.file_digests(),
                                   self.labels)
        return self._fp

    def content_digests(self) -> np.ndarray:
        """The files' digests (:meth:`file_digests`)."""
        return self.file_digests()

    def file_digests(self) -> np.ndarray:
        """BLAKE2b-128 digest of every file's bytes, shape ``(n, 16)``, uint8
        (:data:`UNREADABLE_DIGEST` for a file that cannot be read)."""
        if self._digests is not None:
            return self._digests
        from ..cache import cache_dir

        where = json.dumps([str(self.root.resolve()), self.paths, self.stats()]).encode()
        memo = cache_dir() / "listings" / (
            f"{fingerprint(np.frombuffer(where, np.uint8), self.labels)}.blake2b.npy")
        digests = _load_memo(memo)
        if digests is not None and digests.shape == (len(self), 16) \
                and digests.dtype == np.uint8:
            self._digests = digests
            return digests
        from ..parallel import progress

        # one thread: ~30 us per CIFAR-sized file; threads only add GIL traffic
        out = np.empty((len(self), 16), np.uint8)
        complete = True
        with progress(total=len(self), desc="hash files", unit="file",
                      mininterval=0.5) as bar:
            for k, p in enumerate(self.paths):
                try:
                    out[k] = np.frombuffer(file_digest(self.root / p), np.uint8)
                except DataError:  # a bad image, reported (or skipped) when decoded
                    out[k] = np.frombuffer(UNREADABLE_DIGEST, np.uint8)
                    complete = False
                if k % 1024 == 1023:
                    bar.update(1024)
            bar.update(len(self) % 1024)
        self._digests = out
        if complete:  # a file unreadable for a moment is hashed again next time
            _save_memo(memo, out)
        return out

    def image_sizes(self) -> np.ndarray:
        """Heights and widths from the file headers (EXIF rotation applied), remembered
        per listing in the cache folder."""
        if self._sizes is not None:
            return self._sizes
        from ..cache import cache_dir

        # remembered per listing: reading 60,000 headers takes ~15 s on 2 cores
        memo = cache_dir() / "listings" / f"{self.listing_fingerprint}.sizes.npy"
        sizes = _load_memo(memo)
        if sizes is not None and sizes.shape == (len(self), 2):
            self._sizes = sizes
            return sizes
        from ..parallel import progress

        # one thread: header parsing holds the GIL, threads only slow it down (~85 us/file)
        sizes = []
        with progress(total=len(self), desc="read image sizes", unit="img",
                      mininterval=0.5) as bar:
            for k, p in enumerate(self.paths):
                sizes.append(header_size(self.root / p))
                if k % 1024 == 1023:
                    bar.update(1024)
            bar.update(len(self) % 1024)
        self._sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        _save_memo(memo, self._sizes)
        return self._sizes


#: :meth:`FileSource.stats` of a file that cannot be found (missing, a broken link)
UNREADABLE_STAT = (-1, -1, -1, -1)
#: :meth:`FileSource.file_digests` row of a file that cannot be read: the fingerprint
#: says so, and changes once the file can be read
UNREADABLE_DIGEST = bytes(16)


def file_digest(path: Path) -> bytes:
    """BLAKE2b-128 of the bytes of ``path``; :class:`DataError` naming it if unreadable."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    return h.digest()


def _load_memo(path: Path) -> np.ndarray | None:
    """A memo written by :func:`_save_memo`, or None when absent or unreadable (a
    truncated or foreign file is ignored and rewritten, never an error)."""
    try:
        return np.load(path, allow_pickle=False)
    except Exception:  # noqa: BLE001 - OSError, EOFError, ValueError, ...
        return None


def _save_memo(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically; a read-only or full cache only costs
    the scan next time."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp, array, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def read_file(path: Path) -> np.ndarray:
    """Decode ``path`` to uint8 RGB with its EXIF orientation applied.

    Raises
    ------
    DataError
        Naming the file, when it cannot be decoded.
    """
    _quiet_pillow_bomb_warning()
    try:
        with Image.open(path) as image:
            _check_pixels(image, path)
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb8(image)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError,
            Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


#: Pillow's DecompressionBombWarning does not name the file: featbench warns itself,
#: naming it (:func:`_check_pixels`); files above twice the limit still fail to decode
_BOMB_FILTER = ("ignore", None, Image.DecompressionBombWarning, None, 0)


def _quiet_pillow_bomb_warning() -> None:
    """Ignore Pillow's nameless DecompressionBombWarning (opening a file warns before
    featbench can name it); (re)installed where a caller reset the filters."""
    if _BOMB_FILTER not in warnings.filters:
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _check_pixels(image: Image.Image, path: Path) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    pixels = image.size[0] * image.size[1]
    if limit and limit < pixels <= 2 * limit:
        warnings.warn(f"image {path} has {pixels} pixels, more than Pillow's limit of {limit} "
                      f"against decompression bombs; decoding it anyway", ImageWarning,
                      stacklevel=2)


def header_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header, after EXIF rotation; (0, 0) if unreadable.

    Pillow's decompression-bomb warning is not given here (it names no file): the file
    is named by :func:`read_file`'s warning when it is decoded.
    """
    _quiet_pillow_bomb_warning()
    try:
        with Image.open(path) as image:
            w, h = image.size
            orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a bad file is reported when it is decoded
        return (0, 0)
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)

