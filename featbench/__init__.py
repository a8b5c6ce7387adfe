"""featbench: how far do hand-crafted image features get, and what do ConvNet features buy?

>>> from featbench import get_extractor, get_classifier, load_dataset
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__version__ = "0.3.0"

# OpenMP threads (torch's intra-op pool, scikit-learn's) that wait for work sleep rather
# than spin: on a machine shared with other CPU-bound processes, spinning threads hold
# the cores the others need and each parallel region waits for a descheduled thread
# (a logreg fit took 2.6x its quiet time beside two busy processes, 2.1x with this; on a
# quiet machine it costs ~15 %). Read once, when the OpenMP runtime loads: set before
# torch is imported; an OMP_WAIT_POLICY of the user's own wins (ACTIVE: spin).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
#: whether torch's OpenMP runtime loads after that (records say "unknown" otherwise)
OMP_POLICY_APPLIED = "torch" not in sys.modules

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
