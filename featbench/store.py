"""A sharded feature store on a (possibly shared) file system.

An *entry* holds the features of one extractor (with its parameters, code
version and, for learned extractors, its codebook) on one split of one dataset:
``<root>/features/<key>/`` with

- ``manifest.json``: what the entry is (extractor, parameters, view, split
  fingerprint, number of images, shard size, dtype), written once;
- ``shard-<j>-<checksum>.npy``: features of images ``j * shard_size`` ...
  ``(j + 1) * shard_size - 1``, float32 (or float16), the BLAKE2 checksum of the
  array in the name;
- ``shard-<j>-<checksum>.json``: that shard's images that could not be decoded
  (``--skip-bad-images``), its compute time and runtime (device, precision).

Codebooks of learned extractors are ``<root>/codebooks/<key>-<checksum>.pkl``.

Every file is written under a temporary name and published with ``os.link``,
which fails when the name exists: the first writer wins, a shard or codebook
that appears while another process computes it counts as done, and no valid
file is ever replaced or deleted. The ``.json`` of a shard is published before
its ``.npy``, so a shard exists exactly when its ``.npy`` does. A shard is
recomputed only when its checksum fails (the bad file is then removed).
Interrupted runs (Ctrl-C, SIGKILL, a crash, a full disk) leave at most
temporary files, which are ignored and swept when older than a day.
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
_SHARD = re.compile(r"^shard-(\d{6})-([0-9a-f]{32})\.npy$")
_TMP_MAX_AGE_S = 86400


def _publish(tmp: Path, final: Path) -> bool:
    """Move ``tmp`` to ``final`` unless ``final`` exists; True when this call published it."""
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        return False
    except OSError:
        # file systems without hard links: an exclusive-create marker decides the winner
        try:
            fd = os.open(str(final) + ".lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        os.replace(tmp, final)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _tmp_file(folder: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


def file_checksum(path: Path) -> str:
    """BLAKE2 (16 bytes, hex) of an array file's contents, as :func:`fingerprint`."""
    a = np.load(path, mmap_mode="r", allow_pickle=False)
    return fingerprint(a)


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

    def _candidates(self) -> dict[int, list[tuple[Path, str]]]:
        out: dict[int, list[tuple[Path, str]]] = {}
        if not self.path.is_dir():
            return out
        for p in sorted(self.path.iterdir()):
            m = _SHARD.match(p.name)
            if m:
                out.setdefault(int(m.group(1)), []).append((p, m.group(2)))
        return out

    def finished(self) -> dict[int, Shard]:
        """Shards present on disk whose checksum holds (each file checked once)."""
        out = {}
        for j, files in self._candidates().items():
            if j >= self.n_shards:
                continue
            if j in self._verified and self._verified[j].path.exists():
                out[j] = self._verified[j]
                continue
            for path, checksum in files:
                shard = self._check(j, path, checksum)
                if shard is not None:
                    self._verified[j] = out[j] = shard
                    break
        return out

    def _check(self, j: int, path: Path, checksum: str) -> Shard | None:
        start, stop = self.bounds(j)
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
            if a.ndim != 2 or len(a) != stop - start:
                raise ValueError(f"shape {a.shape} for {stop - start} images")
            if fingerprint(a) != checksum:
                raise ValueError("checksum mismatch")
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            warnings.warn(f"featbench store: shard {path} is corrupt ({exc}); recomputing it",
                          stacklevel=3)
            path.unlink(missing_ok=True)  # invalid: the only file ever removed
            return None
        return Shard(j, path, checksum, [int(i) for i in meta.get("bad", [])], meta)

    def missing(self) -> list[int]:
        """Shards still to compute."""
        done = self.finished()
        return [j for j in range(self.n_shards) if j not in done]

    def write(self, j: int, features: np.ndarray, *, bad: list[int] | None = None,
              meta: dict[str, Any] | None = None, dtype: str = "float32") -> bool:
        """Publish shard ``j``; False when another writer published it first."""
        start, stop = self.bounds(j)
        F = np.ascontiguousarray(features, dtype=dtype)
        if F.ndim != 2 or len(F) != stop - start:
            raise ValueError(f"shard {j} needs {stop - start} rows; got {F.shape}")
        checksum = fingerprint(F)
        name = f"shard-{j:06d}-{checksum}"
        side = _tmp_file(self.path, ".json")
        side.write_text(json.dumps({"bad": sorted(int(i) for i in (bad or [])),
                                    **(meta or {})}, default=repr))
        _publish(side, self.path / f"{name}.json")
        tmp = _tmp_file(self.path, ".npy")
        try:
            with open(tmp, "wb") as f:
                np.save(f, F, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        won = _publish(tmp, self.path / f"{name}.npy")
        return won

    def read(self, mmap: bool = True) -> tuple[np.ndarray, list[int]]:
        """All shards concatenated (memory-mapped pieces) and the bad image indices."""
        done = self.finished()
        if len(done) != self.n_shards:
            raise RuntimeError(f"{self.path}: {self.n_shards - len(done)} shard(s) missing")
        parts = [np.load(done[j].path, mmap_mode="r" if mmap else None, allow_pickle=False)
                 for j in range(self.n_shards)]
        bad = [self.bounds(j)[0] + i for j in range(self.n_shards) for i in done[j].bad]
        if not parts:
            dim = int(self.manifest.get("dim") or 0)
            return np.zeros((0, dim), np.float32), []
        F = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return F, bad

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

    # -- codebooks ------------------------------------------------------------------
    def _codebook_files(self, key: str) -> list[Path]:
        folder = self.root / "codebooks"
        return sorted(folder.glob(f"{key}-*.pkl"), key=lambda p: (p.stat().st_mtime_ns, p.name)) \
            if folder.is_dir() else []

    def load_codebook(self, key: str) -> dict[str, Any] | None:
        """The fitted state stored under ``key`` (the first published), or None."""
        for path in self._codebook_files(key):
            checksum = path.stem.rsplit("-", 1)[1]
            data = path.read_bytes()
            if fingerprint(np.frombuffer(data, np.uint8)) != checksum:
                warnings.warn(f"featbench store: codebook {path} is corrupt; refitting",
                              stacklevel=2)
                path.unlink(missing_ok=True)
                continue
            return pickle.loads(data)  # noqa: S301 - our own file, checksum verified
        return None

    def save_codebook(self, key: str, state: dict[str, Any]) -> dict[str, Any]:
        """Publish ``state`` under ``key``; returns the state every writer must use.

        When another process published a codebook for the same key first, that one
        is returned, so all shards of a store share one codebook.
        """
        folder = self.root / "codebooks"
        folder.mkdir(parents=True, exist_ok=True)
        existing = self.load_codebook(key)
        if existing is not None:
            return existing
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        checksum = fingerprint(np.frombuffer(data, np.uint8))
        tmp = _tmp_file(folder, ".pkl")
        tmp.write_bytes(data)
        _publish(tmp, folder / f"{key}-{checksum}.pkl")
        return self.load_codebook(key) or state
