"""Provenance: what determines a number, in one place.

Store keys (:mod:`featbench.extraction`, :mod:`featbench.store`), study keys
(:mod:`featbench.reproduce`) and run records (:mod:`featbench.results`) all take
what they say about a computation from here: package versions, hashes of the
code that computes, parameters in canonical form, and the images and labels a
learned extractor was fitted on. This module knows nothing of extractors or
classifiers: it reads any scikit-learn estimator through ``get_params`` and the
optional hooks ``cache_token()`` and ``_cache_exclude``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .cache import fingerprint, make_key

__all__ = ["NOT_HASHED", "canonical", "code_hash", "estimator_provenance", "fingerprint",
           "fit_provenance", "make_key", "package_versions"]

#: modules that cannot change a number (exception classes, progress display): edits
#: leave stored features valid
NOT_HASHED = ("featbench.errors", "featbench.progress")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Versions of featbench, Python and the libraries that compute results."""
    out = {"featbench": __version__, "python": platform.python_version()}
    for dist in ("numpy", "scikit-learn", "scikit-image", "opencv-python-headless", "pillow",
                 "torch", "torchvision", "openvino"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


@functools.cache
def code_hash(cls: type) -> str:
    """Hash of the source of ``cls``'s module and every featbench module it uses.

    Editing an extractor (or a helper it imports) invalidates its stored features,
    and only its own: adding an extractor leaves the others' entries valid.
    """
    seen: set[str] = set()
    stack = [cls.__module__]
    while stack:
        name = stack.pop()
        module = sys.modules.get(name)
        if name in seen or module is None or not name.startswith("featbench.") \
                or name in NOT_HASHED:
            continue
        seen.add(name)
        for value in vars(module).values():
            dep = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(dep, str) and dep.startswith("featbench.") and dep not in seen:
                stack.append(dep)
    h = hashlib.sha256()
    for name in sorted(seen):
        file = getattr(sys.modules[name], "__file__", None)
        if file:
            h.update(name.encode() + Path(file).read_bytes())
    return h.hexdigest()[:16]


def canonical(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters sorted, tuples as lists (JSON-stable)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(params.items())}


def estimator_provenance(est: Any, view: dict[str, Any], view_cls: type) -> dict[str, Any]:
    """Everything about a fitted-or-not estimator that determines its numbers.

    Class, parameters (less those in ``est._cache_exclude``: device, batch size),
    its ``cache_token()`` (e.g. the resolved precision), featbench's version and the
    hash of the code it runs, library versions, and the view of the images it sees
    (``view``, with the hash of ``view_cls``'s code).
    """
    params = canonical(est.get_params(deep=False))
    exclude = getattr(est, "_cache_exclude", ())
    token = est.cache_token() if hasattr(est, "cache_token") else None
    return {"cls": f"{type(est).__module__}.{type(est).__qualname__}",
            "params": {k: v for k, v in params.items() if k not in exclude},
            **({"token": token} if token else {}), "version": __version__,
            "code": code_hash(type(est)), "libs": package_versions(),
            "view": view, "view_code": code_hash(view_cls)}


def fit_provenance(data: str, indices: np.ndarray, labels: np.ndarray, seed: int
                   ) -> dict[str, Any]:
    """What a learned extractor was fitted on: the training split's fingerprint
    (``data``), the indices of the images it saw, the digest of their labels and the
    seed that chose them (a part of a store key)."""
    return {"data": data, "indices": fingerprint(np.asarray(indices, np.int64)),
            "labels": fingerprint(np.asarray(labels, np.int64)), "seed": int(seed),
            "n": int(len(indices))}
