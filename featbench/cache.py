"""On-disk cache of arrays (extracted features, decoded datasets).

An entry is a folder ``<root>/<namespace>/<key>/`` holding one ``.npy`` file per
array and a ``meta.json`` with each array's shape, dtype and BLAKE2 checksum. It is
written to a temporary folder and renamed into place, so an interrupted write
leaves no entry; an entry that fails any check on load (missing file, truncated
array, wrong checksum) is deleted and reported as a miss, so it gets recomputed.
Arrays are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def cache_dir() -> Path:
    """``$FEATBENCH_CACHE``, else ``$XDG_CACHE_HOME/featbench``, else ``~/.cache/featbench``."""
    if os.environ.get("FEATBENCH_CACHE"):
        return Path(os.environ["FEATBENCH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "featbench"


def fingerprint(*arrays: np.ndarray) -> str:
    """A content hash of arrays (shape, dtype and bytes), hex, 32 characters."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _key_default(value: Any) -> Any:
    """JSON stand-in for values of a key: arrays by their full content, never ``repr``.

    ``repr`` abbreviates arrays beyond 1,000 elements, so two different arrays could
    share a key; their content hash cannot.
    """
    if isinstance(value, np.ndarray):
        return {"ndarray": fingerprint(value)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(map(repr, value))
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def make_key(**parts: Any) -> str:
    """A stable hash of parts (order of keywords does not matter; arrays by content)."""
    text = json.dumps(parts, sort_keys=True, default=_key_default)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class ArrayCache:
    """Content-addressed store of named arrays.

    Parameters
    ----------
    root : path, optional
        Cache folder; defaults to :func:`cache_dir`.
    enabled : bool
        When False, :meth:`load` always misses and :meth:`save` does nothing.
    """

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.enabled = enabled

    def path(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key

    def load(self, namespace: str, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None on a miss or an invalid entry."""
        if not self.enabled:
            return None
        entry = self.path(namespace, key)
        if not entry.exists():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text())
            arrays = {}
            for name, info in meta["arrays"].items():
                a = np.load(entry / f"{name}.npy", allow_pickle=False)
                if list(a.shape) != info["shape"] or a.dtype.str != info["dtype"]:
                    raise ValueError(f"{name}: shape or dtype differs from meta.json")
                if fingerprint(a) != info["blake2b"]:
                    raise ValueError(f"{name}: checksum mismatch")
                arrays[name] = a
            return arrays
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            warnings.warn(
                f"featbench cache entry {entry} is corrupt ({exc}); recomputing it",
                stacklevel=2,
            )
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def save(self, namespace: str, key: str, arrays: dict[str, np.ndarray],
             meta: dict[str, Any] | None = None) -> None:
        """Store ``arrays`` under ``key`` atomically (temporary folder + rename)."""
        if not self.enabled:
            return
        entry = self.path(namespace, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
        try:
            info = {}
            for name, a in arrays.items():
                a = np.ascontiguousarray(a)
                np.save(tmp / f"{name}.npy", a, allow_pickle=False)
                info[name] = {"shape": list(a.shape), "dtype": a.dtype.str,
                              "blake2b": fingerprint(a)}
            (tmp / "meta.json").write_text(
                json.dumps({"arrays": info, **(meta or {})}, indent=1, default=repr)
            )
            if entry.exists():
                shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
