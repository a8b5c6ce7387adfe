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

Codebooks of learned extractors are ``<root>/codebooks/<key>.pkl`` with their
checksum in ``<key>.<checksum>.sum``.

Every file is written under a temporary name and published with ``os.link`` to
a name that does not depend on its content, which fails when the name exists:
the first writer wins (also when two writers' numbers differ in the last bit), a
shard or codebook that appears while another process computes it counts as
done, and no valid file is ever replaced. The checksum sidecar is published
before the array, so a shard exists exactly when its ``.npy`` does, and it is
valid when a sidecar named by the array's checksum exists. A failed checksum is
the only reason a shard is removed and recomputed. Interrupted runs (Ctrl-C,
SIGKILL, a crash, a full disk) leave at most temporary files, which are ignored
and swept when older than a day.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cache import cache_dir, fingerprint

DEFAULT_SHARD_SIZE = 1024
_SHARD = re.compile(r"^shard-(\d{6,})\.npy$")
_TMP_MAX_AGE_S = 86400


def _publish(tmp: Path, final: Path) -> bool:
    """Move ``tmp`` to ``final`` unless ``final`` exists; True when this call published it."""
    try:
        os.link(tmp, final)  # atomic, and fails if the name exists: the first writer wins
        return True
    except FileExistsError:
        return False
    except OSError:
        # a file system without hard links: rename when the name is free (a short race
        # remains there: two writers may both rename, the later one replacing the first)
        if final.exists():
            return False
        os.replace(tmp, final)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _tmp_file(folder: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


@dataclass
class Shard:
    """A finished shard: its features file and what its sidecar says."""

    index: int
    path: Path
    checksum: str
    bad: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


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
    """

    def __init__(self, path: Path, n_images: int, shard_size: int,
                 manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.n_images = int(n_images)
        self.shard_size = int(shard_size)
        self.manifest = manifest
        self._verified: dict[int, Shard] = {}

    @property
    def n_shards(self) -> int:
        return -(-self.n_images // self.shard_size)

    def bounds(self, j: int) -> tuple[int, int]:
        """Image indices ``[start, stop)`` of shard ``j``."""
        start = j * self.shard_size
        return start, min(self.n_images, start + self.shard_size)

    def create(self) -> None:
        """Make the folder and publish the manifest (first writer wins)."""
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / "manifest.json"
        if not final.exists():
            tmp = _tmp_file(self.path, ".json")
            tmp.write_text(json.dumps(self.manifest, indent=1, default=repr))
            _publish(tmp, final)
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
        for p in self.path.iterdir():
            m = _SHARD.match(p.name)
            if m:
                out[int(m.group(1))] = p
        return out

    def finished(self) -> dict[int, Shard]:
        """Shards present on disk whose checksum holds (each file checked once)."""
        out = {}
        for j, path in self._candidates().items():
            if j >= self.n_shards:
                continue
            if j in self._verified and self._verified[j].path.exists():
                out[j] = self._verified[j]
                continue
            shard = self._check(j, path)
            if shard is not None:
                self._verified[j] = out[j] = shard
        return out

    def _check(self, j: int, path: Path) -> Shard | None:
        """The shard at ``path`` if its shape, dtype and checksum hold; a file that fails
        them is removed (the only file ever removed). I/O errors propagate."""
        start, stop = self.bounds(j)
        dtype = self.manifest.get("dtype", "float32")
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None  # removed by another process meanwhile
        except ValueError as exc:  # truncated or not an array file
            return self._corrupt(path, str(exc))
        if a.ndim != 2 or len(a) != stop - start or a.dtype != np.dtype(dtype):
            return self._corrupt(path, f"{a.dtype} {a.shape}, expected {stop - start} rows "
                                       f"of {dtype}")
        checksum = fingerprint(a)
        side = path.with_name(f"{path.stem}.{checksum}.json")
        if not side.exists():
            return self._corrupt(path, "checksum mismatch")
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError:
            meta = {}
        return Shard(j, path, checksum, [int(i) for i in meta.get("bad", [])], meta)

    def _corrupt(self, path: Path, why: str) -> None:
        warnings.warn(f"featbench store: shard {path} is corrupt ({why}); recomputing it",
                      stacklevel=4)
        path.unlink(missing_ok=True)
        return None

    def exists(self, j: int) -> bool:
        """Whether shard ``j`` has been published (by anyone; checked when read)."""
        return (self.path / f"shard-{j:06d}.npy").exists()

    def missing(self) -> list[int]:
        """Shards still to compute."""
        done = self.finished()
        return [j for j in range(self.n_shards) if j not in done]

    def write(self, j: int, features: np.ndarray, *, bad: list[int] | None = None,
              meta: dict[str, Any] | None = None) -> bool:
        """Publish shard ``j``; False when another writer published it first."""
        start, stop = self.bounds(j)
        F = np.ascontiguousarray(features, dtype=self.manifest.get("dtype", "float32"))
        if F.ndim != 2 or len(F) != stop - start:
            raise ValueError(f"shard {j} needs {stop - start} rows; got {F.shape}")
        checksum = fingerprint(F)
        side = _tmp_file(self.path, ".json")
        side.write_text(json.dumps({"checksum": checksum,
                                    "bad": sorted(int(i) for i in (bad or [])),
                                    **(meta or {})}, default=repr))
        _publish(side, self.path / f"shard-{j:06d}.{checksum}.json")
        tmp = _tmp_file(self.path, ".npy")
        try:
            with open(tmp, "wb") as f:
                np.save(f, F, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        final = self.path / f"shard-{j:06d}.npy"
        won = _publish(tmp, final)
        if won:  # verified as written; no need to read it back
            self._verified[j] = Shard(j, final, checksum, sorted(int(i) for i in (bad or [])),
                                      {"checksum": checksum, **(meta or {})})
        return won

    @property
    def dim(self) -> int:
        """Feature width (from the first finished shard)."""
        done = self.finished()
        if not done:
            return int(self.manifest.get("dim") or 0)
        return int(np.load(done[min(done)].path, mmap_mode="r").shape[1])

    def shards(self) -> list[np.ndarray]:
        """Every shard, memory-mapped, in order (all must be finished)."""
        done = self.finished()
        if len(done) != self.n_shards:
            raise RuntimeError(f"{self.path}: {self.n_shards - len(done)} shard(s) missing")
        return [np.load(done[j].path, mmap_mode="r", allow_pickle=False)
                for j in range(self.n_shards)]

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
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "store"

    def entry(self, key: str, n_images: int, shard_size: int = DEFAULT_SHARD_SIZE,
              manifest: dict[str, Any] | None = None) -> StoreEntry:
        # shard boundaries are part of what an entry is
        path = self.root / "features" / f"{key}-s{int(shard_size)}"
        return StoreEntry(path, n_images, shard_size,
                          {**(manifest or {}), "n_images": int(n_images),
                           "shard_size": int(shard_size)})

    def entries_of(self, key: str) -> list[StoreEntry]:
        """Existing entries of ``key`` with any shard size (from their manifests)."""
        out = []
        for path in sorted((self.root / "features").glob(f"{key}-s*")):
            try:
                manifest = json.loads((path / "manifest.json").read_text())
                out.append(StoreEntry(path, manifest["n_images"], manifest["shard_size"],
                                      manifest))
            except (OSError, ValueError, KeyError):
                continue
        return out

    # -- codebooks ------------------------------------------------------------------
    def load_codebook(self, key: str) -> tuple[dict[str, Any], str] | None:
        """The fitted state stored under ``key`` and its checksum, or None."""
        path = self.root / "codebooks" / f"{key}.pkl"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        checksum = fingerprint(np.frombuffer(data, np.uint8))
        if not path.with_name(f"{key}.{checksum}.sum").exists():
            warnings.warn(f"featbench store: codebook {path} is corrupt; refitting it",
                          stacklevel=2)
            path.unlink(missing_ok=True)
            return None
        return pickle.loads(data), checksum  # noqa: S301 - our own file, checksum verified

    def save_codebook(self, key: str, state: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Publish ``state`` under ``key``; returns the state (and checksum) every writer
        must use: another process's codebook when it was published first."""
        folder = self.root / "codebooks"
        folder.mkdir(parents=True, exist_ok=True)
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        checksum = fingerprint(np.frombuffer(data, np.uint8))
        side = _tmp_file(folder, ".sum")
        _publish(side, folder / f"{key}.{checksum}.sum")
        tmp = _tmp_file(folder, ".pkl")
        tmp.write_bytes(data)
        _publish(tmp, folder / f"{key}.pkl")
        return self.load_codebook(key) or (state, checksum)
