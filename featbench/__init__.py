"""featbench: how far do hand-crafted image features get, and what do ConvNet features buy?

>>> from featbench import get_extractor, get_classifier, load_dataset
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"

#: imported on first use, so that ``featbench --help`` (and Ctrl-C) do not wait for torch
_LAZY = {"get_classifier": ".classifiers", "load_dataset": ".datasets",
         "get_extractor": ".features"}

__all__ = ["__version__", "get_classifier", "get_extractor", "load_dataset"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'featbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
