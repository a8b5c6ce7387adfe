"""Extraction engines: how the missing shards of a split are computed.

``local`` is :func:`featbench.extraction.extract_split` (a thread pool decodes,
the extractor runs in this process). ``ray`` is
:func:`featbench.engines.ray_data.extract_split_ray`: the same contract (store
entry, shard boundaries, ``ready()``, bad images, return value) as a Ray Data
pipeline, on this machine or on a Ray cluster. Engines are imported on first
use: ``import featbench`` never imports Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: engine names, as ``--engine`` takes them
ENGINES = ("local", "ray")


def get_engine(name: str) -> Callable[..., Any]:
    """The ``extract_split``-compatible function of engine ``name`` (imported now).

    Raises
    ------
    ParameterError
        An unknown engine name.
    """
    if name == "local":
        from ..extraction import extract_split

        return extract_split
    if name == "ray":
        from .ray_data import extract_split_ray

        return extract_split_ray
    from ..errors import ParameterError

    raise ParameterError(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}")
