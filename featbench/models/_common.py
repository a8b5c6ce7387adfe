"""Helpers the source modules share: reading a state-dict file safely, loading it into
a model with a one-line error, seeded random initialization, importing a source's
library with a one-line error. torch is imported inside the functions."""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, UnknownNameError

if TYPE_CHECKING:
    from torch import nn


def state_dict_from_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint a user points to, safely (``weights_only=True``)."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise DataError(f"cannot load weights file {path}: {exc}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DataError(f"weights file {path} does not hold a state dict")
    return state


def load_into(model: nn.Module, state: dict, source: str) -> None:
    """``model.load_state_dict(state)``; a mismatch is a one-line :class:`DataError`."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise DataError(f"weights in {source} do not fit this model: "
                        f"{' '.join(first[:3])[:300]}") from None


def seeded_init(factory: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    """``factory()`` under ``torch.manual_seed(seed)`` (0 for None), the global RNG kept."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else seed)
        return factory()


def import_source(family: str, arch: str, module: str, package: str, extra: str):
    """The library of a model source (``timm``, ``open_clip``), after checking that it
    knows ``arch``: one-line errors naming the package to install, or the closest names."""
    try:
        lib = importlib.import_module(module)
    except ImportError:
        raise DataError(f"{family}:{arch} needs the package {package}: "
                        f'pip install -e ".[{extra}]"') from None
    known = lib.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f" Did you mean {', '.join(f'{family}:{c}' for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {family} model {arch!r}.{hint}")
    return lib


def first_line(exc: BaseException, limit: int = 120) -> str:
    """``Type: first line of the message`` (for one-line errors)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit] if lines else ''}"
