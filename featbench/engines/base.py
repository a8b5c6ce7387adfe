"""The extraction engine contract: what to compute (:class:`Work`) and where to put it.

:func:`featbench.extraction.extract_split` decides the work: the store entry of one
extractor on one split (its key, shard boundaries and the shards still missing among
those asked for); it refuses another machine's half-filled entry, creates the entry
and fits the extractor. It then hands the work to an engine, an object with a
``name`` and a ``compute(work)`` method (:class:`Engine`), which computes every shard
of ``work.todo`` and writes each one with ``work.entry.write`` (a shard another
process published meanwhile is counted as reused), and counts what it did in
``work.result``. Each row of a shard holds the features of the image of that index
(zeros and the file's message in ``bad_files`` for an undecodable image under
``skip_bad``; without it the first one raises :class:`~featbench.errors.DataError`
naming the file), so every engine stores the same shards.

Two engines implement it, chosen by the caller (:func:`featbench.engines.get_engine`):
:class:`featbench.extraction.LocalEngine` (this process: a thread pool or DataLoader
workers decode) and :class:`featbench.engines.ray_data.RayEngine` (a Ray Data
pipeline). This module imports neither, nor :mod:`featbench.extraction`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator

from ..datasets.source import ImageSource, View
from ..errors import DataError
from ..store import StoreEntry


@dataclass
class SplitResult:
    """What :func:`~featbench.extraction.extract_split` did on one split."""

    entry: StoreEntry
    computed: int = 0
    reused: int = 0
    bad: list[str] = field(default_factory=list)
    runtime: dict[str, Any] | None = None


@dataclass
class Work:
    """Shards to compute and the store entry to put them in.

    Attributes
    ----------
    name : str
        The extractor's name (progress bars, messages).
    split : str
        The split's name.
    estimator : BaseEstimator
        The extractor, fitted (or its codebook loaded).
    view : View
        How each image is decoded for it.
    source : ImageSource
        The split's images.
    entry : StoreEntry
        Where the shards go (created; its boundaries say which images a shard holds).
    todo : list of int
        Shard indices to compute, ascending.
    skip_bad : bool
        Leave undecodable images out (rows of zeros) instead of raising.
    n_workers : int or None
        Decoding workers (or CPUs) the engine may use; None: all.
    result : SplitResult
        Counts the engine updates: ``computed``, ``reused``, ``bad``, ``runtime``.
    """

    name: str
    split: str
    estimator: BaseEstimator
    view: View
    source: ImageSource
    entry: StoreEntry
    todo: list[int]
    skip_bad: bool
    n_workers: int | None
    result: SplitResult

    @property
    def n_images(self) -> int:
        """Images in the shards to compute."""
        return sum(self.entry.bounds(j)[1] - self.entry.bounds(j)[0] for j in self.todo)


class Engine(Protocol):
    """What an extraction engine implements (see the module's docstring)."""

    #: as ``--engine`` names it
    name: str

    def compute(self, work: Work) -> None:
        """Compute and write every shard of ``work.todo`` into ``work.entry``."""


def decode(source: ImageSource, view: View, i: int) -> np.ndarray:
    """Image ``i`` of ``source`` under ``view`` (a DataError names an unreadable file)."""
    return view.apply(source.read(i))


def first_good(source: ImageSource, view: View) -> np.ndarray:
    """The first decodable image among the first 64 (sets an extractor's input shape);
    when none is, the first one's error naming its file."""
    for i in range(min(len(source), 64)):
        try:
            return decode(source, view, i)
        except DataError:
            continue
    return decode(source, view, 0)  # raises the error naming the file


def device_type(est: BaseEstimator) -> str:
    """The device type an extractor runs on: ``cpu`` without a ``device`` parameter."""
    device = getattr(est, "device", None)
    if device is None:
        return "cpu"
    from ..runtime import check_device

    return check_device(str(device)).type
