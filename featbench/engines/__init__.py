"""Extraction engines: how the missing shards of a split are computed.

The contract (:mod:`featbench.engines.base`): :func:`featbench.extraction.extract_split`
decides what to compute and where to put it (a :class:`~featbench.engines.base.Work`:
the store entry, the missing shards, the fitted extractor) and an engine computes it.
``local`` is :class:`featbench.extraction.LocalEngine` (a thread pool decodes, the
extractor runs in this process); ``ray`` is
:class:`featbench.engines.ray_data.RayEngine` (a Ray Data pipeline, on this machine or
a Ray cluster). The caller chooses one with :func:`get_engine` and passes it to
:func:`~featbench.extraction.extract_features`; the engines never import
:mod:`featbench.extraction`. Engines are imported on first use: ``import featbench``
never imports Ray.
"""

from __future__ import annotations

from .base import Engine, SplitResult, Work

#: engine names, as ``--engine`` takes them
ENGINES = ("local", "ray")

__all__ = ["ENGINES", "Engine", "SplitResult", "Work", "get_engine"]


def get_engine(name: str, address: str | None = None) -> Engine:
    """The engine ``name`` (imported now); ``address``: the Ray cluster of ``ray`` (None:
    a local Ray instance).

    Raises
    ------
    ParameterError
        An unknown engine name, an ``address`` for the local engine, or ``ray`` without
        Ray Data installed.
    """
    from ..errors import ParameterError

    if name == "local":
        if address is not None:
            raise ParameterError("--ray-address: only with --engine ray")
        from ..extraction import LocalEngine

        return LocalEngine()
    if name == "ray":
        from .ray_data import RayEngine

        return RayEngine(address)
    raise ParameterError(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}")
