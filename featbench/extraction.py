"""Stream a dataset's images through extractors into the sharded feature store.

source -> batches (decoded by a worker pool, under each extractor's own
:class:`~featbench.datasets.source.View`) -> extractor -> store. No step holds a
split's images or its whole feature matrix: the working memory is one shard of
decoded images (plus the next one being decoded) and its features.

Each extractor of a feature spec (``hog+color-hist`` has two) gets one store
entry per split, keyed by everything that determines its numbers: the
extractor's class, parameters (device and batch size excluded), resolved
precision and device type (torch extractors), source code, library versions,
the view it saw, the split's fingerprint and, for learned extractors, the
codebook's key (the training images it was fitted on). Learned extractors (bovw, vlad, fisher,
kmeans-patches) fit once on a seeded, bounded sample of training images read
through the same source, and store the codebook beside the features.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import itertools
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from . import __version__
from .cache import make_key
from .datasets import Dataset
from .datasets.source import ImageSource, View
from .engines.base import (  # noqa: F401 - SplitResult re-exported (it was defined here)
    Engine,
    SplitResult,
    Work,
    decode,
    device_type,
    first_good,
)
from .errors import DataError
from .features import build_extractor, set_params_checked, split_spec
from .parallel import get_n_jobs, progress
from .provenance import (  # noqa: F401 - re-exported: records and studies used to import them here
    NOT_HASHED,
    canonical,
    estimator_provenance,
    fit_provenance,
    package_versions,
)
from .splits import TuningSplit, tuning_split
from .store import DEFAULT_SHARD_SIZE, FeatureStore, StoreEntry

#: Decoded working-size images a learned extractor may fit on (bounds memory: all of
#: CIFAR-10's 50,000 training images, ~21,000 photos at 128 px).
FIT_SAMPLE_BYTES = 1 << 30
STORE_DTYPES = ("float32", "float16")
#: Decoded shards a combined spec (``hog+color-hist``) keeps for its other parts, so that
#: each image file is decoded once per view rather than once per extractor (see
#: :class:`DecodedShards`); CIFAR-10 at 32 px takes 184 MB of it.
DECODED_CACHE_BYTES = 1 << 30
#: what an extractor's ``cache_token()`` says about the machine's arithmetic: the resolved
#: precision, the device type and the backend that runs the forward pass (torch or
#: OpenVINO); in the features' key (``Plan.base["runtime"]``)
RUNTIME_KEYS = ("precision", "device", "backend")


def view_for(est: BaseEstimator, ds: Dataset) -> View:
    """The view ``est`` takes of ``ds``'s images: its own (``input_view``) or the working one."""
    hook = getattr(est, "input_view", None)
    view = hook(ds) if hook is not None else None
    return view if view is not None else ds.working_view()


def is_learned(est: BaseEstimator) -> bool:
    """Whether ``est`` learns a codebook from training images (bovw, kmeans-patches, ...)."""
    return bool(getattr(est, "learns_from_images", False))


@dataclass
class Plan:
    """One extractor, ready to run on a dataset: parameters, view and store keys."""

    name: str
    estimator: BaseEstimator
    params: dict[str, Any]
    view: View
    base: dict[str, Any]
    fit_key: str | None
    fit_indices: np.ndarray | None
    #: checksum of the stored codebook this extractor uses (learned extractors)
    codebook: str | None = None

    def entry_key(self, ds: Dataset, split: str, dtype: str = "float32") -> str:
        """Store key of this extractor on one split: everything that determines the
        numbers (for a learned extractor, the very codebook it encodes with)."""
        if self.fit_key is not None and self.codebook is None:
            raise RuntimeError(f"{self.name}: the codebook must be fitted or loaded first")
        return make_key(**self.base, fit=self.fit_key, codebook=self.codebook,
                        data=ds.split_fingerprint(split), dtype=dtype)

    def describe(self) -> dict[str, Any]:
        """What a record says about this extractor's input."""
        out = {"name": self.name, "view": self.view.describe()}
        if self.fit_indices is not None:
            out["fit_images"] = int(len(self.fit_indices))
        runtime = self.base.get("runtime", {})
        if "precision" in runtime:  # as resolved here (part of the key)
            out["precision"] = runtime["precision"]
        if "device" in runtime:
            out["device_type"] = runtime["device"]
        return out


def plan(name: str, ds: Dataset, params: dict[str, Any], seed: int = 0,
         split: TuningSplit | None = None) -> Plan:
    """Build extractor ``name`` with ``params`` and work out its view and keys.

    A learned extractor is fitted on training images outside the tuning split's
    validation images (``split``, default :func:`~featbench.splits.tuning_split` of
    ``ds`` and ``seed``): a seeded sample of ``split.fit`` (see :func:`fit_sample`).
    Its fit key holds the indices of those images, the digest of their labels and
    the seed.
    """
    est = set_params_checked(build_extractor(name), params, f"feature {name!r}")
    est_params = canonical(est.get_params(deep=False))
    view = view_for(est, ds)
    base = estimator_provenance(est, view.describe(), View)
    # the arithmetic as resolved on this machine: in the features' key, not the codebook's
    # (learned extractors fit on the CPU in float32/64 whatever they encode with)
    token = dict(base.pop("token", None) or {})
    runtime = {k: token.pop(k) for k in RUNTIME_KEYS if k in token}
    if token:
        base["token"] = token
    fit_key, fit_indices = None, None
    if is_learned(est):
        split = split if split is not None else tuning_split(ds, seed)
        fit_indices = fit_sample(split.fit, view, ds, seed)
        fit_key = make_key(**base, fit=fit_provenance(
            ds.split_fingerprint("train"), fit_indices, ds.train.labels[fit_indices], seed))
    if runtime:
        base["runtime"] = runtime
    return Plan(name, est, est_params, view, base, fit_key, fit_indices)


def fit_sample(pool: np.ndarray | int, view: View, ds: Dataset, seed: int) -> np.ndarray:
    """Training images a learned extractor fits on: every index of ``pool`` (indices
    into the training split; an int ``n`` means ``range(n)``), or a seeded sample of
    them within :data:`FIT_SAMPLE_BYTES` of decoded images (sorted indices)."""
    pool = np.arange(pool) if isinstance(pool, (int, np.integer)) else np.asarray(pool)
    n = len(pool)
    if view.size:
        h = w = view.size
    else:
        h, w = ds.image_scan()["shared_size"] or (256, 256)
    per_image = max(1, h * w * 3)
    m = min(n, max(1, FIT_SAMPLE_BYTES // per_image))
    if m == n:
        return np.sort(pool)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, m, replace=False))


# -- decoding -----------------------------------------------------------------------
_decode = decode  # looked up here by Decoder and _ChunkImages at each call


class Decoder:
    """Decode images of a source in a thread pool, a batch ahead of the extractor.

    Pillow and NumPy release the GIL while decoding and resizing, so threads use
    every core without copying images between processes.
    """

    def __init__(self, source: ImageSource, view: View, n_workers: int,
                 skip_bad: bool = False) -> None:
        self.source, self.view, self.skip_bad = source, view, skip_bad
        self.pool = cf.ThreadPoolExecutor(max(1, n_workers), thread_name_prefix="decode")

    def submit(self, indices) -> list[cf.Future]:
        """Queue the decoding of the images at ``indices`` (e.g. a shard's range)."""
        return [self.pool.submit(_decode, self.source, self.view, int(i)) for i in indices]

    def collect(self, futures: list[cf.Future], bar=None
                ) -> tuple[np.ndarray | None, list[int], list[str]]:
        """Gather a batch into one array, in order, releasing each decoded image as it is
        copied; the first unreadable file stops at once (pending decodes cancelled)
        unless ``skip_bad``."""
        out, row, bad, messages = None, 0, [], []
        for k in range(len(futures)):
            if bar is not None:
                bar.update(1)
            fut, futures[k] = futures[k], None
            try:
                img = fut.result()
            except DataError as exc:
                if not self.skip_bad:
                    self.close()
                    raise
                bad.append(k)
                messages.append(str(exc))
                continue
            if out is None:
                out = np.empty((len(futures), *img.shape), dtype=img.dtype)
            elif img.shape != out.shape[1:]:
                self.close()  # a view always gives one shape: this is featbench's bug
                raise RuntimeError(f"view {self.view} gave images of shapes {img.shape} and "
                                   f"{out.shape[1:]} in one batch")
            out[row] = img
            row += 1
        return (None if out is None else out[:row]), bad, messages

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


#: images per DataLoader item: a shard is decoded as several items, in parallel
LOADER_CHUNK = 64
#: DataLoader worker processes at most (each holds two items in flight)
LOADER_MAX_WORKERS = 8


class _ChunkImages:
    """A map-style torch dataset: item ``k`` is the decoded images ``[start, stop)`` of
    ``chunks[k]`` (module level, so DataLoader workers can be spawned as well as forked)."""

    def __init__(self, source: ImageSource, view: View, chunks: list[tuple[int, int]],
                 skip_bad: bool) -> None:
        self.source, self.view, self.chunks, self.skip_bad = source, view, chunks, skip_bad

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int):
        import torch

        start, stop = self.chunks[k]
        images, bad, messages = [], [], []
        for i in range(start, stop):
            try:
                images.append(_decode(self.source, self.view, i))
            except DataError as exc:
                if not self.skip_bad:  # returned, not raised: the message stays one line
                    return None, [i], [str(exc)]
                bad.append(i)
                messages.append(str(exc))
        x = torch.from_numpy(np.stack(images)) if images else None
        return x, bad, messages


def _torch_batches(source: ImageSource, view: View, entry: StoreEntry, shards: list[int],
                   n_workers: int, skip_bad: bool, pin: bool):
    """Decoded shards from torch ``DataLoader`` worker processes.

    Each shard is decoded as chunks of :data:`LOADER_CHUNK` images by up to
    :data:`LOADER_MAX_WORKERS` workers and gathered into one reusable buffer, in
    page-locked (pinned) memory on CUDA, from which the extractor's
    ``non_blocking`` copies to the device run asynchronously. The buffer is reused
    for the next shard only after the extractor returned (its results are on the
    host by then, so every copy from the buffer has finished).
    """
    import torch
    from torch.utils.data import DataLoader

    chunks, owner = [], []
    for j in shards:
        start, stop = entry.bounds(j)
        for s in range(start, stop, LOADER_CHUNK):
            chunks.append((s, min(stop, s + LOADER_CHUNK)))
            owner.append(j)
    workers = min(n_workers, LOADER_MAX_WORKERS)
    loader = DataLoader(_ChunkImages(source, view, chunks, skip_bad), batch_size=None,
                        num_workers=workers, prefetch_factor=2 if workers else None)
    buffer: torch.Tensor | None = None
    current, filled, bad, messages = None, [], [], []

    def flush():
        start, stop = entry.bounds(current)
        good = [x for x in filled if x is not None]
        if not good:
            return current, None, [i - start for i in bad], list(messages)
        n = sum(len(x) for x in good)
        shape = (n, *good[0].shape[1:])
        nonlocal buffer
        if buffer is None or buffer.numel() < int(np.prod(shape)):
            buffer = torch.empty(int(np.prod(shape)), dtype=torch.uint8)
            if pin:
                buffer = buffer.pin_memory()
        out = buffer[: int(np.prod(shape))].view(shape)
        torch.cat(good, out=out) if len(good) > 1 else out.copy_(good[0])
        return current, out.numpy(), [i - start for i in bad], list(messages)

    for j, (x, chunk_bad, chunk_messages) in zip(owner, loader, strict=True):
        if chunk_messages and not skip_bad:
            raise DataError(chunk_messages[0])
        if current is not None and j != current:
            yield flush()
            filled, bad, messages = [], [], []
        current = j
        filled.append(x)
        bad += chunk_bad
        messages += chunk_messages
    if current is not None:
        yield flush()


_device_of = device_type


# -- extraction ---------------------------------------------------------------------
def prepare(p: Plan, ds: Dataset, store: FeatureStore, *, n_workers: int | None = None,
            skip_bad: bool = False) -> float:
    """Fit (or load the stored codebook of) ``p``'s extractor; returns the fit seconds."""
    est = p.estimator
    if p.fit_key is None:
        # pretrained or stateless: one image sets the input shape (and loads a model)
        probe = _first_good(ds.train, p.view)
        est.fit(probe[None])
        return 0.0
    stored = store.load_codebook(p.fit_key)
    t0 = time.perf_counter()
    if stored is None:
        images, bad = _decode_all(ds.train, p.view, p.fit_indices, n_workers or get_n_jobs(),
                                  skip_bad, desc=f"{p.name}: decode fit sample")
        # the labels of the images decoded (undecodable ones left out with theirs)
        labels = np.delete(np.asarray(ds.train.labels)[p.fit_indices], bad)
        est.fit(images, labels)
        del images
        # plain arrays, no pickled objects; another process's codebook wins
        stored = store.save_codebook(p.fit_key, est.fitted_state())
    state, p.codebook = stored
    est.set_fitted_state(state)
    return time.perf_counter() - t0


_first_good = first_good


def _decode_all(source, view, indices, n_workers, skip_bad, desc
                ) -> tuple[np.ndarray, list[int]]:
    """A bounded sample of images, decoded into one array (learned extractors' fit), and
    the positions in ``indices`` of those that could not be decoded (``skip_bad``)."""
    dec = Decoder(source, view, n_workers, skip_bad)
    try:
        with progress(total=len(indices), desc=desc, unit="img") as bar:
            images, bad, _ = dec.collect(dec.submit(indices), bar)
        if images is None:
            raise DataError(f"none of the {len(indices)} training images sampled to fit "
                            f"could be decoded")
        return images, bad
    finally:
        dec.close()


def entry_for(p: Plan, ds: Dataset, split: str, store: FeatureStore,
              shard_size: int = DEFAULT_SHARD_SIZE, dtype: str = "float32") -> StoreEntry:
    """The store entry of ``p`` on one split (not created on disk)."""
    manifest = {"feature": p.name, "params": p.params, "view": p.view.describe(),
                "split": split, "dataset": ds.name, "fingerprint": ds.split_fingerprint(split),
                "fit_key": p.fit_key, "codebook": p.codebook, "dtype": dtype,
                "featbench": __version__}
    key = p.entry_key(ds, split, dtype)
    entry = store.entry(key, len(ds.split(split)), shard_size, manifest)
    if not entry.path.is_dir():
        # the same features stored whole with another --shard-size: reuse, never recompute
        for other in store.entries_of(key):
            if not other.missing():
                return other
    return entry


class RuntimeMismatch(DataError):
    """The store holds part of an entry that differs from this one only in the
    precision or device type resolved from ``auto`` (another machine's)."""


def other_runtimes(p: Plan, ds: Dataset, split: str, store: FeatureStore,
                   dtype: str = "float32") -> list[tuple[dict[str, str], StoreEntry, int]]:
    """Entries of ``p`` on ``split`` that differ from its own only in the resolved
    precision, device type or backend and have stored shards: ``(runtime, entry,
    n_stored)``."""
    from .features.openvino_backend import BACKENDS
    from .runtime import PRECISIONS

    own = p.base.get("runtime")
    if not own:
        return []
    choices = {"precision": [x for x in PRECISIONS if x != "auto"],
               "device": ["cpu", "cuda", "mps"],
               "backend": [x for x in BACKENDS if x != "auto"]}
    names = [k for k in RUNTIME_KEYS if k in own]
    out = []
    for values in itertools.product(*(choices[k] for k in names)):
        alt = dict(zip(names, values, strict=True))
        if alt == own:
            continue
        key = make_key(**{**p.base, "runtime": alt}, fit=p.fit_key, codebook=p.codebook,
                       data=ds.split_fingerprint(split), dtype=dtype)
        for entry in store.entries_of(key):
            stored = entry.n_shards - len(entry.missing())
            if stored:
                out.append((alt, entry, stored))
    return out


def check_runtime(p: Plan, ds: Dataset, split: str, store: FeatureStore, todo: int,
                  dtype: str = "float32") -> None:
    """Refuse to start a second, half-filled entry of ``p`` on ``split`` next to another
    machine's (shard workers that resolve ``auto`` differently).

    Called before ``todo`` (> 0) shards of ``p``'s own entry are computed. For every
    entry that differs only in precision or device type and has shards stored:

    - when it differs in a setting that this process resolved from ``auto`` (the
      extractor's ``precision`` or ``device`` parameter) and it is incomplete, a
      :class:`RuntimeMismatch` (one line: which entry, its precision and device,
      how many of its shards are stored, what this machine resolved and how to pin
      it); nothing is computed;
    - when it is complete (or the differing settings were set explicitly), a
      :class:`UserWarning` in one line, and this entry is computed beside it.
    """
    params = p.estimator.get_params(deep=False)
    own = p.base["runtime"] if p.base.get("runtime") else {}
    here = " on ".join(own[k] for k in RUNTIME_KEYS if k in own)
    for alt, entry, stored in other_runtimes(p, ds, split, store, dtype):
        there = " on ".join(alt[k] for k in RUNTIME_KEYS if k in alt)
        pins = [f"-p {p.name}.{k}={alt[k]}" for k in RUNTIME_KEYS
                if alt.get(k) != own.get(k)]
        auto = [k for k in RUNTIME_KEYS
                if alt.get(k) != own.get(k) and params.get(k, "auto") == "auto"]
        what = (f"{p.name} on {split}: the store holds {stored} of {entry.n_shards} shard(s) "
                f"computed in {there} ({entry.path})")
        if auto and stored < entry.n_shards:
            raise RuntimeMismatch(
                f"{what}, but this machine resolves {here} and would start a second entry "
                f"({todo} shard(s) to compute); to complete that one, pin {' '.join(pins)} "
                f"on every worker, or set {'/'.join(auto)} explicitly to compute {here} "
                f"features")
        warnings.warn(f"{what}; computing {todo} shard(s) in {here} as resolved here "
                      f"(pin {' '.join(pins)} to use those)", UserWarning, stacklevel=3)


def extract_split(p: Plan, ds: Dataset, split: str, store: FeatureStore, *,
                  shard_size: int = DEFAULT_SHARD_SIZE, shards: list[int] | None = None,
                  n_workers: int | None = None, skip_bad: bool = False,
                  dtype: str = "float32", ready: Callable[[], Any] | None = None,
                  engine: Engine | None = None) -> SplitResult:
    """Compute the missing shards of ``p`` on one split of ``ds`` into ``store``.

    ``ready`` is called once before the first shard is computed (it fits the
    extractor, see :func:`prepare`); nothing is fitted or loaded when every shard
    is already stored. ``shards`` restricts the work to some shard indices
    (``None``: all). The shards are computed by ``engine`` (default
    :class:`LocalEngine`; see :mod:`featbench.engines.base` for the contract). The
    store is best-effort: shards it cannot take (read-only or full folder, see
    :meth:`~featbench.store.FeatureStore.best_effort`) are kept in memory by
    ``result.entry`` and read back from there.
    """
    if dtype not in STORE_DTYPES:
        raise DataError(f"feature dtype must be one of {', '.join(STORE_DTYPES)}; got {dtype!r}")
    entry = entry_for(p, ds, split, store, shard_size, dtype)
    wanted = set(range(entry.n_shards) if shards is None else shards)
    todo = [j for j in entry.missing() if j in wanted]
    result = SplitResult(entry, reused=len(wanted) - len(todo))
    if todo:
        check_runtime(p, ds, split, store, len(todo), dtype)  # before the entry is created
    entry.create()  # (also repairs a damaged manifest of a complete entry)
    if not todo:
        return result
    if ready is not None:
        ready()
    engine = engine if engine is not None else LocalEngine()
    engine.compute(Work(p.name, split, p.estimator, p.view, ds.split(split), entry, todo,
                        skip_bad, n_workers, result))
    return result


class LocalEngine:
    """The local engine: decode in this process's thread pool (or, on CUDA, torch
    DataLoader worker processes into pinned memory), extract in this process, one shard
    after the other while the next one is decoded (:mod:`featbench.engines.base`)."""

    name = "local"

    def compute(self, work: Work) -> None:
        """Compute and write every shard of ``work.todo`` into ``work.entry``."""
        est, entry, result = work.estimator, work.entry, work.result
        n_workers = work.n_workers or get_n_jobs()
        _split_chunks(est, entry.shard_size, n_workers)
        bar = progress(total=work.n_images, desc=f"{work.name} {work.split}", unit="img")
        batches = _batches(work.source, work.view, entry, work.todo, n_workers,
                           work.skip_bad, _device_of(est))
        try:
            for j, images, bad, messages in batches:
                if entry.exists(j):  # another process finished it meanwhile
                    result.reused += 1
                    bar.update(entry.bounds(j)[1] - entry.bounds(j)[0])
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                F = _transform(est, images, entry.bounds(j), bad)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                runtime = getattr(est, "runtime_", None)
                # the process's CPU seconds beside the wall time (decoding ahead included):
                # far less CPU than wall x threads says the cores were busy elsewhere
                won = entry.write(j, F, bad=bad,
                                  meta={"seconds": dt, "cpu_seconds": cpu,
                                        "runtime": runtime, "bad_files": messages})
                result.computed += int(won)
                result.reused += int(not won)
                result.runtime = runtime or result.runtime
                result.bad += messages
                bar.update(len(F))
                bar.set_postfix_str(f"shard {j + 1}/{entry.n_shards}"
                                    + (f", {len(result.bad)} bad" if result.bad else ""))
                del F, images
        finally:
            # on any exit (Ctrl-C included) cancel the decoding queued ahead at once, rather
            # than when the generator is collected (the traceback keeps it alive meanwhile)
            batches.close()
            bar.close()


def shard_indices(n_shards: int, shard: tuple[int, int] | None) -> list[int] | None:
    """The shards ``j`` of an entry with ``n_shards`` that worker ``I`` of ``N`` computes:
    ``j mod N == I - 1`` (``None``: all).

    Shard boundaries depend only on the split's size and the shard size, never on
    ``N``, so runs with any number of workers (or none) share finished shards, and the
    workers ``1..N`` together cover every shard exactly once.
    """
    if shard is None:
        return None
    i, n = shard
    return list(range(i - 1, n_shards, n))


def _split_chunks(est: BaseEstimator, shard_size: int, n_workers: int) -> None:
    """Let a multi-threaded extractor split one shard over every core (values unchanged:
    each image's features depend on that image alone)."""
    if getattr(est, "_n_jobs", None) == 1 or not hasattr(est, "_chunk_size"):
        return
    per_worker = -(-shard_size // max(1, n_workers))
    est._chunk_size = max(1, min(type(est)._chunk_size, per_worker))


class DecodedShards:
    """Decoded shards kept while one feature spec is extracted, for its other parts.

    The parts of a combined spec (``hog+color-hist``) read the same images under the
    same view, one part after the other; without this, each part decodes every file
    again (on CIFAR-10, 15 of the CS231n row's 50 seconds). The first part's decoded
    shards are kept (read-only: an extractor cannot change what the next one reads), up
    to ``max_bytes`` in all; a shard that does not fit is decoded again by the next part.
    Keys are the source, the view and the shard's bounds.
    """

    def __init__(self, max_bytes: int = DECODED_CACHE_BYTES) -> None:
        self.max_bytes, self.used = int(max_bytes), 0
        self._shards: dict[tuple, tuple[np.ndarray | None, list[int], list[str]]] = {}

    @staticmethod
    def key(source: ImageSource, view: View, bounds: tuple[int, int]) -> tuple:
        return (id(source), repr(view.describe()), tuple(int(b) for b in bounds))

    def get(self, key: tuple) -> tuple[np.ndarray | None, list[int], list[str]] | None:
        return self._shards.get(key)

    def put(self, key: tuple, images: np.ndarray | None, bad: list[int],
            messages: list[str]) -> None:
        size = 0 if images is None else images.nbytes
        if key in self._shards or self.used + size > self.max_bytes:
            return
        if images is not None:
            images.setflags(write=False)
        self._shards[key] = (images, list(bad), list(messages))
        self.used += size


#: the :class:`DecodedShards` of the feature spec being extracted (None: keep nothing)
_DECODED: DecodedShards | None = None


def _batches(source, view, entry, todo, n_workers, skip_bad, device
             ) -> Iterator[tuple[int, np.ndarray | None, list[int], list[str]]]:
    if device == "cuda":
        yield from _torch_batches(source, view, entry, todo, n_workers, skip_bad, pin=True)
        return
    kept = _DECODED
    dec = Decoder(source, view, n_workers, skip_bad)

    def start(j: int):
        """The shard's decoded images when kept, else its queued decoding."""
        key = DecodedShards.key(source, view, entry.bounds(j))
        found = kept.get(key) if kept is not None else None
        return key, found, (None if found is not None
                            else dec.submit(range(*entry.bounds(j))))

    try:
        pending = start(todo[0])
        for k, j in enumerate(todo):
            key, found, futures = pending
            if found is not None:
                images, bad, messages = found
            else:
                images, bad, messages = dec.collect(futures)
                if kept is not None:
                    kept.put(key, images, bad, messages)
            if k + 1 < len(todo):  # decode the next shard while this one is extracted
                pending = start(todo[k + 1])
            yield j, images, bad, messages
            images = None  # the extractor is done with it: free it before the next shard
    finally:
        dec.close()


def _transform(est, images, bounds, bad) -> np.ndarray:
    n = bounds[1] - bounds[0]
    if not bad:
        return np.asarray(est.transform(images), dtype=np.float32)
    good = np.setdiff1d(np.arange(n), bad)
    if images is None:
        dim = int(est.n_features_out_)
        return np.zeros((n, dim), np.float32)
    F_good = np.asarray(est.transform(images), dtype=np.float32)
    F = np.zeros((n, F_good.shape[1]), np.float32)
    F[good] = F_good
    return F


@dataclass
class FeatureResult:
    """Features of every split for one feature spec, and how they were obtained.

    ``splits[s]`` is the concatenation of the spec's extractors on split ``s``,
    with the rows of undecodable images (``bad[s]``, indices) left in as zeros.
    """

    splits: dict[str, np.ndarray]
    params: dict[str, dict[str, Any]]
    extract_s: float
    cached: bool
    parts: list[dict[str, Any]] = field(default_factory=list)
    bad: dict[str, list[int]] = field(default_factory=dict)
    bad_files: list[str] = field(default_factory=list)
    #: the process's CPU seconds of the stored shards' extraction (None: not recorded by
    #: the featbench that stored them)
    extract_cpu_s: float | None = None

    @property
    def train(self) -> np.ndarray:
        return self.splits["train"]

    @property
    def test(self) -> np.ndarray:
        return self.splits["test"]


def extract_features(spec: str, ds: Dataset, params: dict[str, dict[str, Any]],
                     store: FeatureStore, *, seed: int = 0,
                     shard_size: int = DEFAULT_SHARD_SIZE, skip_bad: bool = False,
                     dtype: str = "float32", n_workers: int | None = None,
                     load: bool = True, shard: tuple[int, int] | None = None,
                     fit_only: bool = False, engine: Engine | None = None,
                     split: TuningSplit | None = None,
                     val_size: int | float | None = None) -> FeatureResult:
    """Extract ``spec``'s features on every split of ``ds`` through ``store``.

    With ``load=False`` the features are computed and stored but not read back
    (``featbench extract``); ``splits`` is then empty. A store that cannot be
    written (or read) never fails the extraction: it warns once
    (:class:`~featbench.store.StoreWarning`) and the features are computed in memory.

    Parameters
    ----------
    shard : (I, N), optional
        Compute only the shards ``j`` with ``j mod N == I - 1`` of every entry (see
        :func:`shard_indices`): one of ``N`` processes that fill a shared store
        together. Implies ``load=False``.
    fit_only : bool
        Only fit (or load) the codebooks of the learned extractors; no features.
    engine : Engine, optional
        What computes the missing shards (the contract: :mod:`featbench.engines.base`),
        chosen by the caller, e.g. ``featbench.engines.get_engine("ray",
        address="auto")``; default :class:`LocalEngine` (this process: threads or
        DataLoader workers decode).
    split : TuningSplit, optional
        The tuning split, decided before anything is fitted: learned extractors fit
        only on its ``fit`` images. Default: :func:`~featbench.splits.tuning_split` of
        ``ds``, ``seed`` and ``val_size`` (computed when a learned extractor needs it).

    Raises
    ------
    RuntimeMismatch
        Shards are to be computed while the store holds an incomplete entry that
        differs only in the precision or device type this machine resolved from
        ``auto`` (see :func:`check_runtime`): nothing is computed for it.
    """
    global _DECODED
    names = split_spec(spec)
    views = [repr(view_for(set_params_checked(build_extractor(n), params.get(n, {}),
                                              f"feature {n!r}"), ds).describe())
             for n in names] if len(names) > 1 and not fit_only else []
    before = _DECODED
    if any(views.count(v) > 1 for v in views):
        # parts that read the same view decode each file once (DecodedShards)
        _DECODED = DecodedShards()
    try:
        return _extract_features(spec, ds, params, store, seed=seed, shard_size=shard_size,
                                 skip_bad=skip_bad, dtype=dtype, n_workers=n_workers,
                                 load=load, shard=shard, fit_only=fit_only, engine=engine,
                                 split=split, val_size=val_size)
    finally:
        _DECODED = before


def _extract_features(spec: str, ds: Dataset, params: dict[str, dict[str, Any]],
                      store: FeatureStore, *, seed: int, shard_size: int, skip_bad: bool,
                      dtype: str, n_workers: int | None, load: bool,
                      shard: tuple[int, int] | None, fit_only: bool, engine: Engine | None,
                      split: TuningSplit | None, val_size: int | float | None
                      ) -> FeatureResult:
    """:func:`extract_features` itself (the caller has set up :data:`_DECODED`)."""
    engine = engine if engine is not None else LocalEngine()
    split_fn = functools.partial(extract_split, engine=engine)
    load = load and shard is None and not fit_only
    parts, all_params, total_s, all_cached = [], {}, 0.0, True
    entries: dict[str, list[StoreEntry]] = {s: [] for s in ds.splits()}
    bad_files: list[str] = []
    given = split  # (``split`` names each split in the loop below)

    @functools.cache
    def the_split() -> TuningSplit:
        return given if given is not None else tuning_split(ds, seed, val_size)

    for name in split_spec(spec):
        est = build_extractor(name)
        p = plan(name, ds, params.get(name, {}), seed,
                 the_split() if is_learned(est) else None)
        all_params[name] = p.params
        part = {"name": name, **p.describe(), "cached": True, "extract_s": 0.0,
                "shards": {}}
        if p.fit_key is not None:
            # a learned extractor's entries are keyed by its codebook: load or fit it first
            part["extract_s"] += prepare(p, ds, store, n_workers=n_workers, skip_bad=skip_bad)
            part["prepared"] = True
            part["codebook"] = p.codebook

        def ready(p=p, part=part) -> None:
            if not part.get("prepared"):
                part["extract_s"] += prepare(p, ds, store, n_workers=n_workers,
                                             skip_bad=skip_bad)
                part["prepared"] = True

        if fit_only:
            all_cached &= p.fit_key is None or "codebook" in part
            parts.append(part)
            total_s += part["extract_s"]
            continue
        runtime = None
        for split in ds.splits():
            n_shards = -(-len(ds.split(split)) // shard_size)
            res = split_fn(p, ds, split, store, shard_size=shard_size, skip_bad=skip_bad,
                           dtype=dtype, n_workers=n_workers, ready=ready,
                           shards=shard_indices(n_shards, shard))
            metas = res.entry.shard_meta()
            stored_bad = [f for m in metas for f in m.get("bad_files", [])]
            if stored_bad and not skip_bad:
                raise DataError(f"{stored_bad[0]} (stored by an earlier --skip-bad-images "
                                f"run; pass --skip-bad-images to leave such images out)")
            bad_files += [f for f in stored_bad if f not in bad_files]
            part["extract_s"] += sum(float(m.get("seconds", 0.0)) for m in metas)
            cpu = [m.get("cpu_seconds") for m in metas]
            before = part.get("extract_cpu_s", 0.0)
            part["extract_cpu_s"] = None if before is None or None in cpu \
                else before + float(sum(cpu))
            part["cached"] &= res.computed == 0
            part["shards"][split] = {"n": res.entry.n_shards, "computed": res.computed,
                                     "reused": res.reused, "store": str(res.entry.path),
                                     "missing": len(res.entry.missing())}
            runtime = runtime or res.runtime or next(
                (m["runtime"] for m in metas if m.get("runtime")), None)
            entries[split].append(res.entry)
            part["dim"] = res.entry.dim
        if runtime:
            part["runtime"] = runtime
        part.pop("prepared", None)
        all_cached &= part["cached"]
        total_s += part["extract_s"]
        parts.append(part)
    splits, bad = {}, {}
    for split, ents in entries.items():
        bad[split] = sorted(set().union(*(e.bad() for e in ents)))
        if load:
            # one array per split, filled shard by shard from the memory-mapped files
            out = np.empty((len(ds.split(split)), sum(e.dim for e in ents)), dtype=dtype)
            column = 0
            for e in ents:
                column += e.read_into(out, column)
            splits[split] = out
    cpu = [p.get("extract_cpu_s") for p in parts]
    cpu_s = None if any(c is None for c in cpu) else float(sum(cpu))
    return FeatureResult(splits, all_params, total_s, all_cached, parts, bad, bad_files, cpu_s)
