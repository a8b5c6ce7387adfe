"""The Ray Data extraction engine: :class:`RayEngine`.

The engine contract of :mod:`featbench.engines.base` (the missing shards of one
extractor on one split, written to the store entry that
:func:`featbench.extraction.extract_split` chose, with its boundaries) as a Ray Data
batch-inference pipeline, on this machine or a Ray cluster::

    range(images to compute)         read: positions in the missing shards
      -> map_batches(_decode_batch)   CPU tasks: image index, decoded view, ok flag
      -> map_batches(_ExtractBatch)   actor pool: the fitted extractor, built once
                                      per actor (one GPU each when it runs on CUDA)
      -> iter_batches                 driver: rows land in their shard's buffer; a
                                      complete shard is written to the store

The extractor is fitted (or its codebook loaded) once on the driver by
``ready()`` before the pipeline starts, and shipped to the actors already
fitted, so every actor encodes with the very codebook the store key names. Each
image's features depend on that image alone, so how Ray batches the rows
changes no number. Only the shards still missing are read; the driver holds the
shards in flight (they complete in about the order they are read), never a
whole split.

Ray is imported when the engine is first used: ``import featbench`` never
imports it. ``FEATBENCH_RAY_VERBOSE=1`` shows Ray's own progress bars, logs and
worker output; otherwise they go to Ray's log files only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from ..datasets import Dataset
from ..datasets.source import ImageSource, View
from ..errors import DataError, FeatbenchError, ParameterError
from ..parallel import progress, set_options
from ..store import DEFAULT_SHARD_SIZE, FeatureStore, StoreEntry
from .base import SplitResult, Work, decode, device_type, first_good

if TYPE_CHECKING:
    from ..extraction import Plan

INSTALL_HINT = '--engine ray needs Ray Data: pip install -e ".[ray]"'
#: environment variable that turns Ray's own progress bars, logs and worker output on
VERBOSE_ENV = "FEATBENCH_RAY_VERBOSE"
#: images per decoding task (and per block read)
DECODE_BATCH = 64
#: images per call of the extractor in an actor (at most one shard)
EXTRACT_BATCH = 256

#: whether this module started (and so may shut down) the Ray instance in use
_state: dict[str, bool] = {"started": False}


# -- Ray start-up -------------------------------------------------------------------
def _import_ray():
    """``ray`` with Ray Data importable, or a one-line error saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - ray without the [data] extra lacks its dependencies
    except ImportError as exc:
        raise ParameterError(INSTALL_HINT) from exc
    return ray


def verbose() -> bool:
    """Whether Ray's own progress bars, logs and worker output are shown (:data:`VERBOSE_ENV`)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process; a Ray already initialized is used as it is.

    Parameters
    ----------
    address : str, optional
        None: start a new local Ray instance (``num_cpus`` CPUs, default all cores), no
        dashboard, worker output not forwarded. ``"auto"``, ``"host:port"`` or
        ``"ray://host:10001"``: connect to that cluster; featbench's own code is
        shipped to its workers (``runtime_env`` ``py_modules``) so that they compute
        exactly what the store keys (which hash this code) say. Its other
        dependencies (torch, scikit-image, ...) must be installed there.
    num_cpus : int, optional
        CPUs of a local instance (ignored when connecting).

    Raises
    ------
    ParameterError
        Ray Data is not installed.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return
    loud = verbose()
    quiet = {"log_to_driver": loud, "logging_level": logging.INFO if loud else logging.ERROR}
    if address is None:
        # "local": a new instance, even where ray.init() would join one (RAY_ADDRESS, or
        # a cluster `ray start` left on this machine)
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                 include_dashboard=False, **quiet)
    else:
        import featbench

        env = {"py_modules": [str(Path(featbench.__file__).parent)]}
        if str(address).startswith("ray://"):  # Ray Client: other arguments go to the server
            ray.init(address=address, runtime_env=env)
        else:
            ray.init(address=address, runtime_env=env, **quiet)
    _state["started"] = True


def shutdown() -> None:
    """Shut down the Ray instance (or cluster connection) :func:`init_ray` started; one
    started by someone else is left alone. Ray also shuts down at interpreter exit."""
    if _state["started"]:
        import ray

        ray.shutdown()
        _state["started"] = False


@contextlib.contextmanager
def _ray_quiet(loud: bool) -> Iterator[None]:
    """Ray Data's progress bars and console log records off for the ``with`` block (they
    still go to Ray's log files; errors reach the caller as exceptions); restored
    afterwards."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    handlers = [] if loud else [h for h in logging.getLogger("ray.data").handlers
                                if h.get_name() == "console"]
    levels = [h.level for h in handlers]
    if not loud:
        ctx.enable_progress_bars = False
        for h in handlers:
            h.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        ctx.enable_progress_bars = bars
        for h, level in zip(handlers, levels, strict=True):
            h.setLevel(level)


# -- pipeline stages (run in Ray workers) -------------------------------------------
def _warning_text(caught: list[warnings.WarningMessage]) -> str:
    """Warnings recorded in a worker, one ``module.Class<TAB>message`` line each (worker
    output is not shown: the driver warns them again, see :func:`_rewarn`)."""
    lines = {f"{w.category.__module__}.{w.category.__qualname__}\t"
             f"{str(w.message).splitlines()[0] if str(w.message) else ''}" for w in caught}
    return "\n".join(sorted(lines))


def _rewarn(texts, seen: set[str]) -> None:
    """Warn, in this process, what :func:`_warning_text` recorded in a worker (each
    distinct warning once per split), under its own category when it can be imported."""
    import importlib

    for text in texts:
        for line in str(text).splitlines() if text else ():
            if line in seen:
                continue
            seen.add(line)
            name, _, message = line.partition("\t")
            module, _, qualname = name.rpartition(".")
            try:
                category = getattr(importlib.import_module(module), qualname)
            except (ImportError, AttributeError, ValueError):
                category = None
            if not (isinstance(category, type) and issubclass(category, Warning)):
                category = UserWarning
            warnings.warn(message, category, stacklevel=4)


def _image_index(k: np.ndarray, shards: np.ndarray, shard_size: int) -> np.ndarray:
    """Image index of position ``k`` among the images of ``shards`` (sorted; only the
    split's last shard may be short, and it is then the last one)."""
    return shards[k // shard_size] * shard_size + k % shard_size


def _decode_batch(batch: dict[str, np.ndarray], *, source: ImageSource, view: View,
                  shards: np.ndarray, shard_size: int, shape: tuple[int, ...]
                  ) -> dict[str, np.ndarray]:
    """Decode a batch of positions (``id``) to the extractor's view of the images.

    An undecodable image is not an error here: its row is zeros with ``ok`` False and
    the message naming the file in ``error`` (the driver raises it, or skips the
    image). Warnings (e.g. an image past Pillow's decompression-bomb size) are passed
    on in ``warning``.
    """
    index = _image_index(np.asarray(batch["id"], dtype=np.int64), shards, shard_size)
    n = len(index)
    images = np.zeros((n, *shape), dtype=np.uint8)
    ok = np.ones(n, dtype=bool)
    errors = [""] * n
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for row, i in enumerate(index.tolist()):
            try:
                img = decode(source, view, i)
            except DataError as exc:
                ok[row], errors[row] = False, str(exc)
                continue
            if img.shape != shape:  # a view always gives one shape: this is featbench's bug
                raise RuntimeError(f"view {view} gave images of shapes {img.shape} and {shape}")
            images[row] = img
    notes = np.full(n, "", dtype=object)
    notes[0] = _warning_text(caught) if n else ""
    return {"index": index, "image": images, "ok": ok,
            "error": np.asarray(errors, dtype=object), "warning": notes}


class _ExtractBatch:
    """The extract stage's callable class: one fitted extractor per Ray actor.

    Parameters
    ----------
    estimator : BaseEstimator
        The extractor, fitted on the driver (its codebook state included); each actor
        gets its own copy.
    params : dict
        Parameters set on the actor's copy: the device it runs on and the precision
        the store key resolved (neither changes the key).
    n_jobs : int
        Threads the extractor may use in the actor (its CPUs).
    """

    def __init__(self, estimator: BaseEstimator, params: dict[str, Any], n_jobs: int) -> None:
        set_options(n_jobs=n_jobs, progress=False)
        self.est = estimator.set_params(**params) if params else estimator

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray(batch["ok"], dtype=bool)
        n = len(ok)
        fatal = np.full(n, b"", dtype=object)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                F = self._transform(batch["image"], ok)
        except FeatbenchError as exc:
            # a user's error (a parameter, a file): Ray would wrap it and drop the
            # original, so it travels as a value and the driver raises it as itself
            F = np.zeros((n, 0), np.float32)  # warnings recorded before it still go
            fatal[:] = pickle.dumps(exc)
        share = (time.perf_counter() - t0) / max(1, n)
        runtime = getattr(self.est, "runtime_", None)
        runtime_col = np.full(n, "", dtype=object)
        runtime_col[0] = json.dumps(runtime, default=str) if runtime else ""
        notes = np.array(batch["warning"], dtype=object)
        if caught and n:
            notes[0] = "\n".join(filter(None, (notes[0], _warning_text(caught))))
        return {"index": batch["index"], "features": F, "ok": ok, "error": batch["error"],
                "warning": notes, "seconds": np.full(n, share),
                "runtime": runtime_col, "fatal": fatal}

    def _transform(self, images: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Features of the decoded rows; zeros for the others (as the local engine)."""
        if ok.all():
            return np.asarray(self.est.transform(images), dtype=np.float32)
        if ok.any():
            good = np.asarray(self.est.transform(images[ok]), dtype=np.float32)
            F = np.zeros((len(ok), good.shape[1]), np.float32)
            F[ok] = good
            return F
        return np.zeros((len(ok), int(self.est.n_features_out_)), np.float32)


# -- driver -------------------------------------------------------------------------
@dataclass
class _Shard:
    """A shard being filled by the driver, row by row, from the pipeline's output."""

    features: np.ndarray
    seen: np.ndarray
    bad: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    runtime: dict[str, Any] | None = None


def _actor_params(est: BaseEstimator, device: str) -> dict[str, Any]:
    """What the actors' copies must set: the device type they run on (an actor's GPU is
    its ``cuda``), and ``precision`` and ``backend`` left at ``"auto"`` pinned to what the
    store key resolved here, so that an actor on another machine computes what the key
    says (or fails, naming what it lacks)."""
    params = est.get_params(deep=False)
    out: dict[str, Any] = {}
    if "device" in params:
        out["device"] = device
    for name in ("precision", "backend"):
        if params.get(name) == "auto" and hasattr(est, "cache_token"):
            resolved = est.cache_token().get(name)
            if resolved:
                out[name] = resolved
    return out


def _compute(ray, device: str, n_workers: int | None, n_batches: int
             ) -> tuple[Any, dict[str, float], int]:
    """Actor pool, resources per actor and threads per actor of the extract stage.

    On CUDA: one actor per GPU of the cluster. On the CPU: an autoscaling pool of
    one-CPU actors, up to every CPU (``n_workers`` at most); it grows only while CPUs
    are free, so the decoding tasks are never starved (a fixed pool of every CPU
    would leave none to them when Ray does not fuse the two stages). Never more
    actors than batches: each one starts a Python process that imports featbench.
    """
    from ray.data import ActorPoolStrategy

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1.0)), int(res.get("GPU", 0))
    if device == "cuda":
        if gpus < 1:
            raise ParameterError("the extractor runs on CUDA but the Ray cluster has no GPU")
        size = max(1, min(gpus, n_batches))
        return ActorPoolStrategy(size=size), {"num_gpus": 1,
                                              "num_cpus": 1 if cpus > size else 0}, 1
    per_actor = 1 if cpus >= 2 else 0.5
    most = int(cpus // per_actor) if n_workers is None else min(n_workers, int(cpus))
    most = max(1, min(most, n_batches))
    return ActorPoolStrategy(min_size=1, max_size=most), {"num_cpus": per_actor}, 1


def _read_range(ray, n: int, blocks: int):
    """``ray.data.range(n)`` in ``blocks`` blocks (``parallelism`` before Ray 2.10)."""
    try:
        return ray.data.range(n, override_num_blocks=blocks)
    except TypeError:  # pragma: no cover - Ray 2.9
        return ray.data.range(n, parallelism=blocks)


class RayEngine:
    """The Ray Data engine (:mod:`featbench.engines.base`'s contract): the shards of a
    :class:`~featbench.engines.base.Work` through the pipeline of this module's
    docstring, on the Ray cluster at ``address`` (``"auto"``, ``"ray://host:10001"``)
    or, with None, a local Ray instance unless Ray is initialized already (see
    :func:`init_ray`).

    Raises
    ------
    ParameterError
        Ray Data is not installed (when the engine is made, before any work).
    """

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        _import_ray()
        self.address = address

    def compute(self, work: Work) -> None:
        """Compute and write every shard of ``work.todo`` into ``work.entry``.

        Rows come back from the pipeline in any order (Ray Data's ``preserve_order`` is
        off): each carries its image index, from which the driver puts it in its shard.

        Raises
        ------
        ParameterError
            The extractor needs a GPU the cluster lacks.
        DataError
            An undecodable image (without ``work.skip_bad``), naming the file.
        """
        ray = _import_ray()
        init_ray(self.address, work.n_workers)
        est, entry, todo = work.estimator, work.entry, work.todo
        device = device_type(est)
        shape = tuple(getattr(est, "image_shape_", None)
                      or first_good(work.source, work.view).shape)
        n_images = work.n_images
        extract_batch = max(1, min(EXTRACT_BATCH, entry.shard_size))
        compute, resources, threads = _compute(ray, device, work.n_workers,
                                               -(-n_images // extract_batch))
        decode_batch = max(1, min(DECODE_BATCH, extract_batch))
        loud = verbose()
        bar = progress(total=n_images, desc=f"{work.name} {work.split}", unit="img")
        with _ray_quiet(loud):
            data = (
                _read_range(ray, n_images, -(-n_images // decode_batch))
                .map_batches(_decode_batch, batch_size=decode_batch, batch_format="numpy",
                             fn_kwargs={"source": work.source, "view": work.view,
                                        "shards": np.asarray(todo, dtype=np.int64),
                                        "shard_size": entry.shard_size, "shape": shape},
                             num_cpus=resources["num_cpus"] if device != "cuda" else 1)
                .map_batches(_ExtractBatch, batch_size=extract_batch, batch_format="numpy",
                             compute=compute,
                             fn_constructor_kwargs={"estimator": est,
                                                    "params": _actor_params(est, device),
                                                    "n_jobs": threads},
                             **resources)
            )
            batches = iter(data.iter_batches(batch_size=None, batch_format="numpy"))
            try:
                _write_shards(batches, entry, set(todo), work.skip_bad, work.result, bar)
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()  # stop the pipeline now, not when the generator is collected
                bar.close()


def extract_split_ray(p: Plan, ds: Dataset, split: str, store: FeatureStore, *,
                      shard_size: int = DEFAULT_SHARD_SIZE, shards: list[int] | None = None,
                      n_workers: int | None = None, skip_bad: bool = False,
                      dtype: str = "float32", ready: Callable[[], Any] | None = None,
                      address: str | None = None) -> SplitResult:
    """:func:`featbench.extraction.extract_split` with :class:`RayEngine` (``address``).

    The same store entry and shard boundaries, ``ready`` called once before the first
    shard is computed (nothing is fitted, nor Ray started, when every shard is
    stored), ``shards`` restricting the work; features equal the local engine's.

    Raises
    ------
    ParameterError
        Ray Data is not installed, or the extractor needs a GPU the cluster lacks.
    DataError
        An undecodable image (without ``skip_bad``), naming the file.
    """
    from ..extraction import extract_split  # the caller's side of the contract

    return extract_split(p, ds, split, store, shard_size=shard_size, shards=shards,
                         n_workers=n_workers, skip_bad=skip_bad, dtype=dtype, ready=ready,
                         engine=RayEngine(address))


def _write_shards(batches: Iterator[dict[str, np.ndarray]], entry: StoreEntry,
                  todo: set[int], skip_bad: bool, result: SplitResult, bar) -> None:
    """Fill shard buffers from the pipeline's output rows and write each shard as soon as
    it is complete (as :func:`featbench.extraction.extract_split` writes it)."""
    pending: dict[int, _Shard] = {}
    size = entry.shard_size
    seen: set[str] = set()
    for batch in batches:
        _rewarn(batch["warning"], seen)
        fatal = next((f for f in batch["fatal"] if f), None)
        if fatal is not None:
            raise pickle.loads(fatal)  # noqa: S301 - a featbench error our actor pickled
        index = np.asarray(batch["index"], dtype=np.int64)
        ok = np.asarray(batch["ok"], dtype=bool)
        if not ok.all() and not skip_bad:
            first = int(np.flatnonzero(~ok)[np.argmin(index[~ok])])
            raise DataError(str(batch["error"][first]))
        F = np.asarray(batch["features"], dtype=np.float32)
        owner = index // size
        for j in np.unique(owner).tolist():
            if j not in todo:
                raise RuntimeError(f"shard {j} came back from the pipeline but was not asked for")
            rows = np.flatnonzero(owner == j)
            start, stop = entry.bounds(j)
            buf = pending.get(j)
            if buf is None:
                buf = pending[j] = _Shard(np.zeros((stop - start, F.shape[1]), np.float32),
                                          np.zeros(stop - start, dtype=bool))
            at = index[rows] - start
            buf.features[at] = F[rows]
            buf.seen[at] = True
            buf.seconds += float(np.sum(batch["seconds"][rows]))
            for r in rows[~ok[rows]].tolist():
                buf.bad[int(index[r] - start)] = str(batch["error"][r])
            if buf.runtime is None:
                text = next((t for t in batch["runtime"][rows] if t), "")
                buf.runtime = json.loads(text) if text else None
            if buf.seen.all():
                _write(entry, j, pending.pop(j), result, bar)
                todo.discard(j)
    if todo:
        raise RuntimeError(f"the Ray pipeline ended without shard(s) {sorted(todo)}")


def _write(entry: StoreEntry, j: int, buf: _Shard, result: SplitResult, bar) -> None:
    """Write one complete shard (unless another process published it meanwhile)."""
    n = len(buf.features)
    if entry.exists(j):
        result.reused += 1
        bar.update(n)
        return
    bad = sorted(buf.bad)
    messages = [buf.bad[i] for i in bad]
    won = entry.write(j, buf.features, bad=bad,
                      meta={"seconds": buf.seconds, "runtime": buf.runtime,
                            "bad_files": messages, "engine": "ray"})
    result.computed += int(won)
    result.reused += int(not won)
    result.runtime = buf.runtime or result.runtime
    result.bad += messages
    bar.update(n)
    bar.set_postfix_str(f"shard {j + 1}/{entry.n_shards}"
                        + (f", {len(result.bad)} bad" if result.bad else ""))
