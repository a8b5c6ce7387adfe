"""Chunked, multi-threaded map over an image batch, with a progress bar.

The hand-crafted extractors are vectorized NumPy over a chunk of images; NumPy
releases the GIL inside its ufuncs, so threads use every core without copying
images between processes. Memory stays bounded by the chunk size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .progress import progress, progress_disabled, set_progress  # noqa: F401 - re-exported

_settings: dict[str, object] = {"n_jobs": None}


def set_options(*, n_jobs: int | None = None, progress: bool | None = None) -> None:
    """Set the worker count (None: all cores) and progress display (None: bars on a
    terminal, plain lines otherwise; see :mod:`featbench.progress`)."""
    _settings["n_jobs"] = n_jobs
    set_progress(progress)


#: cgroup v2's CPU limit of this process's group: "<quota> <period>" or "max <period>"
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def available_cores() -> int:
    """Cores this process may use: its CPU affinity (``taskset``, SLURM's and Kubernetes'
    cpusets), capped by a cgroup v2 CPU quota (``cpu.max``: container CPU limits), not
    the machine's count (``os.cpu_count``), which oversubscribes such a process."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    try:
        with open(CGROUP_CPU_MAX) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def get_n_jobs() -> int:
    """Number of worker threads: the configured value, ``$FEATBENCH_JOBS`` or the cores
    this process may use (:func:`available_cores`)."""
    n = _settings["n_jobs"] or os.environ.get("FEATBENCH_JOBS") or available_cores()
    return max(1, int(n))


def limit_threads(n: int | None = None) -> dict[str, int | str]:
    """Size every thread pool featbench's computations use to ``n`` (default
    :func:`get_n_jobs`): torch's intra-op threads and the BLAS/OpenMP pools of NumPy,
    SciPy and scikit-learn (``threadpoolctl``). Pools larger than the cores a process
    may use spin-wait against each other when other work shares the CPU (a fit several
    times slower than a fair share); returns the sizes set and OpenMP's wait policy
    (``OMP_WAIT_POLICY``, PASSIVE unless the user set it: see :mod:`featbench`),
    recorded with results."""
    n = max(1, int(n or get_n_jobs()))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    out: dict = {"threads": n, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
    import sys

    if "torch" in sys.modules:  # torch is imported by the extractors that use it
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        out["torch_threads"] = torch.get_num_threads()
    return out


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15-minute load averages (None where there are none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def map_chunks(
    fn: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    *,
    chunk_size: int = 1024,
    desc: str | None = None,
    n_jobs: int | None = None,
) -> np.ndarray:
    """Apply ``fn`` to consecutive chunks of ``X`` and stack the 2-D results.

    Parameters
    ----------
    fn : callable
        Maps ``(n, ...)`` images to an ``(n, n_features)`` array; must be thread-safe.
    X : ndarray
        The images, first axis indexing them.
    chunk_size : int
        Images per call of ``fn``; bounds the working memory.
    desc : str, optional
        Label of the progress bar.
    n_jobs : int, optional
        Worker threads; defaults to :func:`get_n_jobs`.

    Returns
    -------
    ndarray of shape (len(X), n_features)
    """
    n = len(X)
    starts = list(range(0, n, chunk_size))
    if not starts:
        # no images: the feature width from one blank image
        first = np.asarray(fn(np.zeros((1, *X.shape[1:]), dtype=X.dtype)))
        return first[:0] if first.ndim == 2 else first.reshape(0, 0)
    # an inner bar: shown on a terminal, silent in logs (the stage prints the lines)
    with progress(total=n, desc=desc, unit="img", log=False) as bar:
        first = np.asarray(fn(X[:chunk_size]))
        out = np.empty((n, first.shape[1]), dtype=first.dtype)
        out[: len(first)] = first
        bar.update(len(first))

        def work(start: int) -> None:
            block = X[start : start + chunk_size]
            out[start : start + len(block)] = fn(block)
            bar.update(len(block))

        jobs = min(n_jobs or get_n_jobs(), len(starts) - 1)
        if jobs <= 1:
            for s in starts[1:]:
                work(s)
        else:
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(work, starts[1:]))
    return out
