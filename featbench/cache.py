"""The cache folder, content fingerprints and stable keys.

Features live in the sharded store (:mod:`featbench.store`) under
``<cache folder>/store``; this module gives the folder, BLAKE2 fingerprints of
arrays, and :func:`make_key`, which hashes arrays by their whole content.
"""

from __future__ import annotations

import hashlib
import json
import os
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
