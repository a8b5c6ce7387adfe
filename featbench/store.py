"""A sharded feature store on a (possibly shared) file system.

An *entry* holds the features of one extractor (with its parameters, code
version and, for learned extractors, its codebook) on one split of one dataset:
``<root>/features/<key>-s<shard size>/`` with

- ``manifest.json``: what the entry is (extractor, parameters, view, split
  fingerprint, number of images, shard size, dtype), written once;
- ``shard-<j>.npy``: features of images ``j * shard_size`` ...
  ``(j + 1) * shard_size - 1``, float32 or float16 (part of the key);
- ``shard-<j>.<checksum>.json``: the BLAKE2 checksum of that array (in the name),
  its images that could not be decoded (``--skip-bad-images``), its compute time
  and runtime (device, precision).

Codebooks of learned extractors are ``<root>/codebooks/<key>.npz`` with their
checksum in ``<key>.<checksum>.sum``: plain numeric arrays (``np.savez``, stored
uncompressed) and a JSON header (the numbers of the state, and which arrays it
holds), read with ``allow_pickle=False``. Nothing the store reads can run code:
arrays, JSON and checksums only. Codebooks pickled by older featbench versions
(``<key>.pkl``) are never loaded: the codebook is fitted again, said once.

Checksums catch corruption (a truncated or damaged file), not tampering: they are
computed by the reader from files in the same folder, so whoever can write to the
store can plant wrong numbers (never code) that every reader uses.

Every file is written under a temporary name and published with ``os.link`` to
a name that does not depend on its content, which fails when the name exists:
the first writer wins (also when two writers' numbers differ in the last bit), a
shard or codebook that appears while another process computes it counts as
done, and no valid file is ever replaced. The checksum sidecar is published
before the array (and removed again when the array cannot be written), so a
shard exists exactly when its ``.npy`` does, and it is valid when a sidecar
named by the array's checksum exists. Files and folders get the mode the umask
gives (``0o666 & ~umask``, folders ``0o777 & ~umask``), so a store shared by a
team is readable by it (``umask 002`` makes it writable by the group too). A shard that fails
its checksum (or is not a file, or has an unreadable sidecar) is the only file
removed, and recomputed. Interrupted runs (Ctrl-C, SIGKILL, a crash, a full
disk) leave at most temporary files, which are ignored and swept when older
than a day.

The store never fails a run: it is a cache. The first file-system error (a
read-only, full or foreign folder, a path of the wrong type that cannot be
replaced, an unreadable file) is reported once per :class:`FeatureStore` as a
one-line :class:`StoreWarning` naming the folder or file and the system's
reason (see :meth:`FeatureStore.best_effort`); from then on the store writes
nothing, the shards computed are kept in memory by their :class:`StoreEntry`,
and valid entries already stored are still read. A path of the wrong type (a
file where an entry folder is expected, a folder where a shard or manifest is)
counts as a corrupt entry: it is replaced, with a warning naming it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .cache import cache_dir, fingerprint

DEFAULT_SHARD_SIZE = 1024
_SHARD = re.compile(r"^shard-(\d{6,})\.npy$")
_TMP_MAX_AGE_S = 86400
#: ``os.link`` errors that mean "no hard links here" (publish by renaming instead)
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                            errno.ENOSYS})
#: errors that mean the store may be read but not written
_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class StoreWarning(UserWarning):
    """The feature store could not be used as it should: a stored file was corrupt
    or of the wrong type (it is replaced), or the store cannot be written (features
    are computed but not stored). Never an error: the store is a cache."""


def _warn(message: str) -> None:
    """Warn with a :class:`StoreWarning` (one line) attributed to the first caller
    outside this module."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename in (__file__, contextlib.__file__):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, StoreWarning, stacklevel=level)


def _publish(tmp: Path, final: Path) -> bool:
    """Move ``tmp`` to ``final`` unless ``final`` exists; True when this call published it.

    ``tmp`` is removed in any case; other I/O errors (read-only or full folder) propagate.
    """
    try:
        os.link(tmp, final)  # atomic, and fails if the name exists: the first writer wins
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # a file system without hard links: rename when the name is free (a short race
        # remains there: two writers may both rename, the later one replacing the first)
        if final.exists():
            return False
        os.replace(tmp, final)
        return True
    finally:
        _discard(tmp)


def _discard(path: Path) -> None:
    """Remove the temporary file ``path`` if it is there and can be removed; never raises."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    """Remove the file, link or folder (with its content) at ``path``; I/O errors propagate."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _tmp_file(folder: Path, suffix: str) -> Path:
    """A new empty file ``.tmp-<random><suffix>`` in ``folder``, with the mode a new file
    gets from the umask (``0o666 & ~umask``, as ``open`` gives; not ``mkstemp``'s 0600),
    so that a store shared by a team is readable by it."""
    for _ in range(100):
        path = folder / f".tmp-{os.urandom(8).hex()}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def _put(final: Path, write: Callable[[IO[bytes]], Any]) -> bool:
    """Write a new file with ``write(f)`` under a temporary name beside ``final``, flush
    it to disk and publish it as ``final`` (see :func:`_publish`).

    Returns
    -------
    bool
        True when this call published ``final``; False when it existed already.

    Raises
    ------
    OSError
        Any I/O error (read-only or full folder, a short write); the partial
        temporary file is removed first.
    """
    tmp = _tmp_file(final.parent, final.suffix)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _discard(tmp)
        raise
    return _publish(tmp, final)


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in the file ``path``; None when it is not one (a folder, a file of
    other content). Other I/O errors (missing, unreadable file) propagate."""
    try:
        value = json.loads(path.read_text())
    except (IsADirectoryError, ValueError):  # ValueError: not JSON, not UTF-8
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Shard:
    """A finished shard: its features file (or, when not stored, its array) and what
    its sidecar says."""

    index: int
    path: Path | None
    checksum: str
    bad: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: the features, when the store could not take them (``path`` is then None)
    array: np.ndarray | None = None

    def load(self) -> np.ndarray:
        """The features: the array kept in memory, or the file memory-mapped."""
        if self.array is not None:
            return self.array
        return np.load(self.path, mmap_mode="r", allow_pickle=False)


class StoreEntry:
    """The shards of one extractor on one split (see the module docstring).

    Parameters
    ----------
    path : Path
        The entry's folder.
    n_images : int
        Images in the split.
    shard_size : int
        Images per shard; boundaries depend only on these two numbers.
    manifest : dict
        Describes the entry; written once.
    store : FeatureStore, optional
        The store the entry belongs to, which reports I/O failures once and says
        whether to write at all; default: one rooted two folders above ``path``.

    Notes
    -----
    Shards that cannot be stored (see :meth:`FeatureStore.best_effort`) are kept
    in memory and read back from there, so callers need not know whether the
    store took them.
    """

    def __init__(self, path: Path, n_images: int, shard_size: int,
                 manifest: dict[str, Any], store: FeatureStore | None = None) -> None:
        self.path = Path(path)
        self.n_images = int(n_images)
        self.shard_size = int(shard_size)
        self.manifest = manifest
        self.store = store if store is not None else FeatureStore(self.path.parent.parent)
        self._verified: dict[int, Shard] = {}
        #: shards on disk that are unusable and could not be removed: computed in memory
        self._rejected: set[int] = set()

    @property
    def n_shards(self) -> int:
        return -(-self.n_images // self.shard_size)

    def bounds(self, j: int) -> tuple[int, int]:
        """Image indices ``[start, stop)`` of shard ``j``."""
        start = j * self.shard_size
        return start, min(self.n_images, start + self.shard_size)

    def _npy(self, j: int) -> Path:
        return self.path / f"shard-{j:06d}.npy"

    def create(self) -> None:
        """Make the folder and publish the manifest (first writer wins), replacing a path
        of the wrong type (or a manifest that is not one) in the way; best-effort."""
        if not self.store.writable:
            return
        with self.store.best_effort(self.path, "create"):
            self.store._make_dir(self.path)
            final = self.path / "manifest.json"
            if (final.exists() or final.is_symlink()) and _json_object(final) is None:
                self.store._replace(final, "is not a manifest")
            if not final.exists():
                text = json.dumps(self.manifest, indent=1, default=repr)
                _put(final, lambda f: f.write(text.encode()))
            self._sweep()

    def _sweep(self) -> None:
        """Remove temporary files of writers that died over a day ago."""
        now = time.time()
        for p in self.path.glob(".tmp-*"):
            try:
                if now - p.stat().st_mtime > _TMP_MAX_AGE_S:
                    p.unlink()
            except OSError:
                pass

    def _candidates(self) -> dict[int, Path]:
        out: dict[int, Path] = {}
        if not self.path.is_dir():
            return out
        with self.store.best_effort(self.path, "read"):
            for p in self.path.iterdir():
                m = _SHARD.match(p.name)
                if m:
                    out[int(m.group(1))] = p
        return out

    def finished(self) -> dict[int, Shard]:
        """Shards kept in memory, and those on disk whose checksum holds (each file
        checked once)."""
        out = {j: s for j, s in self._verified.items() if s.array is not None}
        for j, path in self._candidates().items():
            if j < self.n_shards and j not in out:
                shard = self._shard(j, path)
                if shard is not None:
                    out[j] = shard
        return out

    def _shard(self, j: int, path: Path) -> Shard | None:
        """Shard ``j`` at ``path`` when it is valid (checked once per file)."""
        if j in self._rejected:
            return None
        known = self._verified.get(j)
        if known is not None and known.path == path and path.exists():
            return known
        shard = self._check(j, path)
        if shard is not None:
            self._verified[j] = shard
        return shard

    def _check(self, j: int, path: Path) -> Shard | None:
        """The shard at ``path`` if it is a file whose shape, dtype and checksum hold and
        whose sidecar is readable; one that fails them is corrupt (see :meth:`_corrupt`),
        one that cannot be read is left alone (computed again, in memory)."""
        start, stop = self.bounds(j)
        dtype = self.manifest.get("dtype", "float32")
        if path.is_dir():
            return self._corrupt(j, path, "a folder, not a file")
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None  # removed by another process meanwhile
        except (ValueError, EOFError) as exc:  # truncated or not an array file
            return self._corrupt(j, path, str(exc) or "empty file")
        except OSError as exc:
            return self._unreadable(j, path, exc)
        if a.ndim != 2 or len(a) != stop - start or a.dtype != np.dtype(dtype):
            return self._corrupt(j, path, f"{a.dtype} {a.shape}, expected {stop - start} rows "
                                          f"of {dtype}")
        checksum = fingerprint(a)
        side = path.with_name(f"{path.stem}.{checksum}.json")
        try:
            meta = _json_object(side)
        except FileNotFoundError:
            return self._corrupt(j, path, "checksum mismatch")
        except OSError as exc:
            return self._unreadable(j, side, exc)
        if meta is None:
            return self._corrupt(j, path, f"unreadable sidecar {side.name}", side)
        return Shard(j, path, checksum, [int(i) for i in meta.get("bad", [])], meta)

    def _unreadable(self, j: int, path: Path, exc: OSError) -> None:
        """Shard ``j`` cannot be read (``exc`` at ``path``): not ours to remove; it is
        computed again, in memory."""
        self._rejected.add(j)
        self.store.give_up(path, exc, "read")
        return None

    def _corrupt(self, j: int, path: Path, why: str, *others: Path) -> None:
        """Warn that shard ``j`` at ``path`` is corrupt and remove it (and ``others``, e.g.
        its broken sidecar) so that it is computed again; one that cannot be removed is
        left alone and computed in memory."""
        _warn(f"featbench store: shard {path} is corrupt ({why}); recomputing it")
        self._rejected.add(j)
        self._verified.pop(j, None)
        if self.store.writable:
            with self.store.best_effort(path, "remove"):
                for p in (*others, path):
                    _remove(p)
                self._rejected.discard(j)
        return None

    def exists(self, j: int) -> bool:
        """Whether shard ``j`` is done: kept in memory, or published (by anyone) and valid."""
        known = self._verified.get(j)
        if known is not None and known.array is not None:
            return True
        path = self._npy(j)
        return path.is_file() and self._shard(j, path) is not None

    def missing(self) -> list[int]:
        """Shards still to compute."""
        done = self.finished()
        return [j for j in range(self.n_shards) if j not in done]

    def write(self, j: int, features: np.ndarray, *, bad: list[int] | None = None,
              meta: dict[str, Any] | None = None) -> bool:
        """Publish shard ``j``; False when another writer published a valid one first.

        When the store cannot take it (read-only or full, see
        :meth:`FeatureStore.best_effort`) the shard is kept in memory instead, and
        counts as written.
        """
        start, stop = self.bounds(j)
        F = np.ascontiguousarray(features, dtype=self.manifest.get("dtype", "float32"))
        if F.ndim != 2 or len(F) != stop - start:
            raise ValueError(f"shard {j} needs {stop - start} rows; got {F.shape}")
        checksum = fingerprint(F)
        bad = sorted(int(i) for i in (bad or []))
        meta = {"checksum": checksum, "bad": bad, **(meta or {})}
        final = self._npy(j)
        if self.store.writable:
            with self.store.best_effort(final, "write"):
                text = json.dumps(meta, default=repr)
                side = final.with_name(f"{final.stem}.{checksum}.json")
                side_is_ours = _put(side, lambda f: f.write(text.encode()))
                try:
                    published = _put(final, lambda f: np.save(f, F, allow_pickle=False))
                except BaseException:
                    # a full disk: no orphan sidecar (unless another writer's array uses it)
                    if side_is_ours and not final.exists():
                        _discard(side)
                    raise
                if published:
                    # verified as written; no need to read it back
                    self._verified[j] = Shard(j, final, checksum, bad, meta)
                    return True
                if self._shard(j, final) is not None:  # another writer's, and valid
                    return False
        self._verified[j] = Shard(j, None, checksum, bad, meta, array=F)
        return True

    @property
    def dim(self) -> int:
        """Feature width (from the first finished shard)."""
        done = self.finished()
        if not done:
            return int(self.manifest.get("dim") or 0)
        return int(done[min(done)].load().shape[1])

    def shards(self) -> list[np.ndarray]:
        """Every shard, memory-mapped (or from memory), in order (all must be finished)."""
        done = self.finished()
        if len(done) != self.n_shards:
            raise RuntimeError(f"{self.path}: {self.n_shards - len(done)} shard(s) missing")
        return [done[j].load() for j in range(self.n_shards)]

    def bad(self) -> list[int]:
        """Indices of the split's images that could not be decoded."""
        done = self.finished()
        return [self.bounds(j)[0] + i for j in sorted(done) for i in done[j].bad]

    def read_into(self, out: np.ndarray, column: int = 0) -> int:
        """Copy the features into ``out[:, column:column + dim]`` shard by shard (no
        whole-split temporary); returns the width."""
        for j, a in enumerate(self.shards()):
            start, stop = self.bounds(j)
            out[start:stop, column:column + a.shape[1]] = a
        return self.dim

    def read(self) -> tuple[np.ndarray, list[int]]:
        """All shards as one array, and the bad image indices."""
        dtype = self.manifest.get("dtype", "float32")
        out = np.empty((self.n_images, self.dim), dtype=dtype)
        self.read_into(out)
        return out, self.bad()

    def shard_meta(self) -> list[dict[str, Any]]:
        return [s.meta for _, s in sorted(self.finished().items())]


class FeatureStore:
    """The root of a feature store (default ``<cache folder>/store``).

    Parameters
    ----------
    root : path, optional

    Attributes
    ----------
    writable : bool
        False once a write (or read) failed: nothing more is written, and shards are
        kept in memory by their entries (see :meth:`best_effort`).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "store"
        self.writable = True
        self._warned = False
        #: whether codebooks pickled by older versions were looked for (said once)
        self._legacy_checked = False

    # -- failures -------------------------------------------------------------------
    @contextlib.contextmanager
    def best_effort(self, path: Path, doing: str = "write") -> Iterator[None]:
        """Run the store I/O of the ``with`` block best-effort: an ``OSError`` in it
        (read-only or full folder, permission, a path of the wrong type, a short write)
        is not raised but reported by :meth:`give_up`, and the caller goes on after the
        block (e.g. keeping features in memory).

        Parameters
        ----------
        path : Path
            The file or folder the block works on, named in the warning.
        doing : str
            What the block does to it ("write", "create", "read", "remove").
        """
        try:
            yield
        except OSError as exc:
            self.give_up(path, exc, doing)

    def give_up(self, path: Path, exc: OSError, doing: str = "write") -> None:
        """Stop writing to this store, and say so once (a :class:`StoreWarning` naming
        the store, ``path`` and the system's reason)."""
        self.writable = False
        if self._warned:
            return
        self._warned = True
        reason = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno in _NOT_WRITABLE and doing != "read":
            what = f"is not writable ({reason}: {path})"
        else:
            what = f"cannot {doing} {path} ({reason})"
        _warn(f"feature store {self.root} {what}: features are computed but not stored")

    def _make_dir(self, path: Path) -> None:
        """Create the folder ``path`` (inside the store) and its parents; a file (or
        anything but a folder) in the way below the root is replaced (see
        :meth:`_replace`). I/O errors propagate (run it in :meth:`best_effort`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        p = self.root
        for part in Path(path).relative_to(self.root).parts:
            p = p / part
            if not p.is_dir():
                if p.exists() or p.is_symlink():
                    self._replace(p, "is not a folder")
                p.mkdir(exist_ok=True)

    def _replace(self, path: Path, why: str) -> None:
        """Warn that ``path`` (inside the store) ``why`` and remove it, so that it can be
        written again. I/O errors propagate (run it in :meth:`best_effort`)."""
        _warn(f"featbench store: {path} {why}; replacing it")
        _remove(path)

    # -- entries --------------------------------------------------------------------
    def entry(self, key: str, n_images: int, shard_size: int = DEFAULT_SHARD_SIZE,
              manifest: dict[str, Any] | None = None) -> StoreEntry:
        # shard boundaries are part of what an entry is
        path = self.root / "features" / f"{key}-s{int(shard_size)}"
        return StoreEntry(path, n_images, shard_size,
                          {**(manifest or {}), "n_images": int(n_images),
                           "shard_size": int(shard_size)}, self)

    def entries_of(self, key: str) -> list[StoreEntry]:
        """Existing entries of ``key`` with any shard size (from their manifests)."""
        out = []
        for path in sorted((self.root / "features").glob(f"{key}-s*")):
            try:
                manifest = json.loads((path / "manifest.json").read_text())
                out.append(StoreEntry(path, manifest["n_images"], manifest["shard_size"],
                                      manifest, self))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    # -- codebooks ------------------------------------------------------------------
    def load_codebook(self, key: str) -> tuple[dict[str, Any], str] | None:
        """The fitted state stored under ``key`` and its checksum, or None: also when it is
        corrupt (removed), holds anything but plain arrays and numbers (refused, removed)
        or is unreadable. Pickled codebooks of older versions are never read (see
        :meth:`_legacy_pickles`)."""
        folder = self.root / "codebooks"
        self._legacy_pickles(folder)
        path = folder / f"{key}.npz"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            return self._bad_codebook(path, "is corrupt")
        except OSError as exc:
            self.give_up(path, exc, "read")
            return None
        checksum = fingerprint(np.frombuffer(data, np.uint8))
        if not path.with_name(f"{key}.{checksum}.sum").exists():
            return self._bad_codebook(path, "is corrupt")
        try:
            # the bytes just checked, not the file again: it may change meanwhile
            return _read_state(data), checksum
        except (ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            return self._bad_codebook(path, f"holds something other than plain arrays "
                                            f"({why}), not loaded")

    def _legacy_pickles(self, folder: Path) -> None:
        """Say once per store that codebooks pickled by an older featbench are in
        ``folder``: never loaded (a pickle can run code), so those extractors are
        fitted again. The files are left alone (an older featbench may share the store)."""
        if self._legacy_checked:
            return
        self._legacy_checked = True
        try:
            found = sorted(folder.glob("*.pkl"))
        except OSError:
            return
        if len(found) == 1:
            _warn(f"featbench store: codebook {found[0]} is a pickle written by an older "
                  f"featbench; not loaded, refitting")
        elif found:
            _warn(f"featbench store: {len(found)} codebooks in {folder} ({found[0].name}, ...) "
                  f"are pickles written by an older featbench; not loaded, refitting")

    def _bad_codebook(self, path: Path, why: str) -> None:
        """Warn that the codebook at ``path`` ``why`` (one line) and remove it if possible."""
        _warn(f"featbench store: codebook {path} {why}; refitting it")
        if self.writable:
            with self.best_effort(path, "remove"):
                _remove(path)
        return None

    def save_codebook(self, key: str, state: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Publish ``state`` (names to numeric arrays, numbers or None) under ``key``;
        returns the state (and checksum) every writer must use: another process's
        codebook when it was published first, else ``state`` (also when the store
        cannot take it).

        Raises
        ------
        TypeError
            A value that is not a numeric array, a number or None (featbench's bug).
        """
        data = _state_bytes(state)
        checksum = fingerprint(np.frombuffer(data, np.uint8))
        folder = self.root / "codebooks"
        if self.writable:
            with self.best_effort(folder / f"{key}.npz", "write"):
                self._make_dir(folder)
                _put(folder / f"{key}.{checksum}.sum", lambda f: None)
                _put(folder / f"{key}.npz", lambda f: f.write(data))
                return self.load_codebook(key) or (state, checksum)
        return state, checksum


#: name of the JSON header inside a codebook's ``.npz``
_HEADER = "__header__"
_FORMAT = "featbench codebook"


def _state_bytes(state: dict[str, Any]) -> bytes:
    """A fitted state as ``.npz`` bytes: its arrays, uncompressed, and a JSON header
    with its numbers and the names of its arrays (see :func:`_read_state`)."""
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, bool | int | float | None] = {}
    for name, value in state.items():
        if not name.isidentifier() or name in (_HEADER, "file", "allow_pickle"):
            raise TypeError(f"codebook state name {name!r} is not allowed")
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise TypeError(f"codebook state {name!r} is a {value.dtype} array; "
                                f"only numeric arrays are stored")
            arrays[name] = value
        elif value is None or isinstance(value, (bool, int, float, np.bool_, np.number)):
            scalars[name] = value.item() if isinstance(value, np.generic) else value
        else:
            raise TypeError(f"codebook state {name!r} is a {type(value).__name__}; "
                            f"only numeric arrays, numbers and None are stored")
    header = {"format": _FORMAT, "version": 1, "scalars": scalars, "arrays": sorted(arrays)}
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays,
             **{_HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    return buf.getvalue()


def _read_state(data: bytes) -> dict[str, Any]:
    """The fitted state in ``.npz`` bytes written by :func:`_state_bytes`. Nothing in it
    can run code: arrays are read with ``allow_pickle=False`` and must be numeric,
    members must be stored uncompressed (no decompression bomb), the header is JSON.

    Raises
    ------
    ValueError, KeyError, zipfile.BadZipFile
        Anything else: an object array, an unknown or missing member, a bad header.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                raise ValueError(f"member {info.filename} is compressed")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(npz[_HEADER].tobytes().decode())
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError("no featbench codebook header")
        names, scalars = header["arrays"], header["scalars"]
        if not isinstance(names, list) or not isinstance(scalars, dict):
            raise ValueError("malformed header")
        if sorted(npz.files) != sorted([_HEADER, *names]):
            raise ValueError(f"members {sorted(npz.files)} differ from the header's "
                             f"arrays {sorted(names)}")
        state: dict[str, Any] = {}
        for name, value in scalars.items():
            if value is not None and not isinstance(value, (bool, int, float)):
                raise ValueError(f"{name} is not a number")
            state[name] = value
        for name in names:
            value = npz[name]  # an object array raises here, before any unpickling
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                raise ValueError(f"{name} is not a numeric array")
            state[name] = value
    return state
