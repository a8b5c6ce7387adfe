"""The sweep: every feature x classifier pair on a dataset, one record per pair.

Features come from the extraction layer (:mod:`featbench.extraction`), which
streams each spec's images through its extractors into the sharded feature
store (``hog+color-hist`` reuses the stored ``hog``); this module only tunes
every classifier on the validation split, refits on train + validation, scores
on test and writes each finished pair to ``results/runs/`` at once, so an
interrupted run loses at most the pair in progress.
"""

from __future__ import annotations

import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score

from .classifiers import CLASSIFIERS, OWN_HEAD, resolve_placement
from .classifiers.tuning import (
    BOUNDS,
    MAX_EXTENSIONS,
    check_validation_split,
    tie_margin,
    tune_and_fit,
)
from .datasets import Dataset
from .extraction import FeatureResult, extract_features
from .features import build_extractor, split_spec
from .few_shot import few_shot_label, sample_shots, shot_seeds
from .keys import pair_key
from .metrics import class_scores, per_class_accuracy, top_k_accuracy
from .parallel import available_cores, get_n_jobs, limit_threads, load_average, progress
from .plan import classifier_setup, validate_plan  # noqa: F401 - re-exported
from .progress import finish
from .provenance import canonical
from .results import confusion_matrix, load_records, new_record, write_json_atomic
from .splits import TuningSplit, tuning_split
from .store import DEFAULT_SHARD_SIZE, FeatureStore


def fit_data(ds: Dataset, feats: FeatureResult, split: TuningSplit
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Features and labels to tune on (with the validation mask) and to score on.

    The validation images are the tuning split's (``split``, decided before any
    extractor was fitted): the dataset's own ``val/`` when it has one, else a
    seeded, stratified part of train. Rows of images that could not be decoded
    (``--skip-bad-images``) are left out, from the validation images too.
    """
    def rows(split_name: str, mask: np.ndarray | None = None):
        F, y = feats.splits[split_name], ds.split(split_name).labels
        bad = feats.bad.get(split_name) or []
        if bad:
            keep = np.setdiff1d(np.arange(len(y)), bad)
            return np.asarray(F[keep]), y[keep], None if mask is None else mask[keep]
        return F, y, mask

    X_train, y_train, val_mask = rows("train", split.val_mask(len(ds.train)))
    X_test, y_test, _ = rows("test")
    if ds.val is not None:
        X_val, y_val, _ = rows("val")
        X = np.concatenate([X_train, X_val])
        y = np.concatenate([y_train, y_val])
        mask = np.r_[np.zeros(len(y_train), bool), np.ones(len(y_val), bool)]
        return X, y, mask, X_test, y_test, len(y_val)
    return X_train, y_train, val_mask, X_test, y_test, int(val_mask.sum())


def placed_classifier(clf_name: str, params: dict[str, Any], seed: int,
                      shape: tuple[int, int]) -> tuple[Any, dict, dict, dict]:
    """The pipeline and grid of ``clf_name`` (:func:`~featbench.plan.classifier_setup`),
    its parameters as asked (solver "auto" stays "auto" in the record), and the solver
    and device resolved once for features of ``shape``, pinned on the pipeline for
    every fit."""
    pipe, grid = classifier_setup(clf_name, params, seed)
    clf_params = canonical(pipe.named_steps["clf"].get_params(deep=False))
    resolved = resolve_placement(pipe.named_steps["clf"], *shape)
    if resolved:
        pipe.set_params(clf__solver=resolved["solver"], clf__device=resolved["device"])
    return pipe, grid, clf_params, resolved


def n_grid_fits(grid: dict[str, list]) -> int:
    """Fits a tuning makes before any extension: every grid point and the refit."""
    return max(1, int(np.prod([len(v) for v in grid.values()]))) + 1


def fit_image_names(ds: Dataset, feats: FeatureResult) -> list[str]:
    """The image behind each row :func:`fit_data` tunes on (train, then a ``val/``
    folder's; undecodable images left out): its path relative to the dataset's folder,
    else ``name[i]``."""
    names: list[str] = []
    for split_name in ("train", *(("val",) if ds.val is not None else ())):
        src = ds.split(split_name)
        bad = {int(i) for i in (feats.bad.get(split_name) or [])}
        rel = getattr(src, "paths", None)
        names += [str(rel[i]) if rel is not None else src.name_of(i)
                  for i in range(len(src)) if i not in bad]
    return names


def run_pair(ds: Dataset, feats: FeatureResult, spec: str, clf_name: str,
             params: dict[str, Any], *, seed: int, split: TuningSplit, n_jobs: int | None,
             extend_grid: bool = True, store: FeatureStore | None = None,
             shots: int | None = None, n_shot_seeds: int = 3) -> dict:
    """Tune, refit and score one classifier on extracted features; return the record.

    ``own-head`` is scored by the end-to-end protocol instead (the network's own head,
    :func:`featbench.end_to_end.run_own_head`), which reads the network's weights from
    ``store``. With ``shots``, the few-shot protocol (:mod:`featbench.few_shot`): for
    each of ``n_shot_seeds`` seeds, ``shots`` training images per class, tuned on the
    validation split, refitted on those images alone; the record holds the mean.
    """
    X, y, val_mask, X_test, y_test, n_val = fit_data(ds, feats, split)
    if clf_name == OWN_HEAD:
        from .end_to_end import run_own_head

        load_start, cpu0 = load_average(), time.process_time()
        out = run_own_head(ds, feats, spec, params, store, seed=seed, split=split,
                           data=(X, y, val_mask, X_test, y_test, n_val),
                           n_workers=n_jobs or get_n_jobs())
        out["load"] = {"fit_start": load_start, "fit_end": load_average(),
                       "cores": available_cores(), **_threads(n_jobs)}
        out["timings"]["predict_cpu_s"] = time.process_time() - cpu0  # nothing is fitted
        return out
    pipe, grid, clf_params, resolved = placed_classifier(clf_name, params, seed, X.shape)
    n_fits = n_grid_fits(grid)
    draws = [(None, None)] if shots is None else [
        (s, sample_shots(y, np.flatnonzero(~val_mask), shots, s))
        for s in shot_seeds(seed, n_shot_seeds)]
    load_start, cpu0 = load_average(), time.process_time()
    runs = []  # per draw: seed, rows, tuned, predictions, top-5
    with progress(total=n_fits * len(draws), desc=f"fit {clf_name} on {spec}",
                  unit="fit") as bar:
        for draw_seed, rows in draws:
            if rows is None:
                tuned = tune_and_fit(clone(pipe), grid, X, y, val_mask,
                                     n_jobs=n_jobs or get_n_jobs(), extend=extend_grid, bar=bar)
            else:  # the K-shot images, then the validation images (never sampled)
                sub = np.r_[rows, np.flatnonzero(val_mask)]
                tuned = tune_and_fit(clone(pipe), grid, X[sub], y[sub], val_mask[sub],
                                     n_jobs=n_jobs or get_n_jobs(), extend=extend_grid,
                                     bar=bar, refit="fit")
            t0 = time.perf_counter()
            pred = tuned.estimator.predict(X_test)
            predict_s = time.perf_counter() - t0
            top5 = top_k_accuracy(y_test, class_scores(tuned.estimator, X_test),
                                  tuned.estimator.named_steps["clf"].classes_)
            runs.append((draw_seed, rows, tuned, pred, top5, predict_s))
    fit_cpu_s, load_end = time.process_time() - cpu0, load_average()
    tuned = runs[0][2]  # (the first draw's tuning for the classifier's fields)
    accs = [float(np.mean(r[3] == y_test)) for r in runs]
    test_acc = float(np.mean(accs))
    pred = np.concatenate([r[3] for r in runs])  # the confusion sums over the draws
    y_scored = np.tile(y_test, len(runs))
    top5s = [r[4] for r in runs]
    top5 = None if any(t is None for t in top5s) else float(np.mean(top5s))
    predict_s = float(sum(r[5] for r in runs))
    fitted = tuned.estimator.named_steps["clf"]
    # where the torch classifiers ran (linear-svm, logreg): solver and device of the refit,
    # and the solver "auto" picks on the CPU (tables show the solver where it differs)
    placement = {k: getattr(fitted, f"{k}_") for k in ("solver", "device")
                 if hasattr(fitted, f"{k}_")}
    if resolved:
        placement["default_solver"] = resolved["default_solver"]
    # the registered classifier before this run's parameters: what the table's
    # changed-parameters column compares with
    defaults = canonical(CLASSIFIERS.build(clf_name, random_state=seed).get_params(deep=False))
    n_images = sum(len(src) for src in ds.splits().values())
    names = fit_image_names(ds, feats) if shots is not None else []
    few_shot = None if shots is None else {
        "shots": int(shots), "seeds": [r[0] for r in runs], "label":
        few_shot_label(shots, len(runs)), "test_acc_std": float(np.std(accs)),
        "draws": [{"seed": r[0], "test_acc": a, "val_acc": r[2].val_acc,
                   "chosen": r[2].best_params, "rows": [int(i) for i in r[1]],
                   "images": [names[int(i)] for i in r[1]]}
                  for r, a in zip(runs, accs, strict=True)],
        "note": "rows index the training features (train, then a val/ folder's images; "
                "undecodable images left out); images name them (paths relative to the "
                "dataset's folder, or name[i] of an array dataset)"}
    return {
        "feature_dim": int(X.shape[1]),
        "val_acc": float(np.mean([r[2].val_acc for r in runs])),
        "test_acc": test_acc,
        "val_mean_class_acc": float(np.mean([r[2].val_mean_class_acc for r in runs])),
        "test_mean_class_acc": float(np.mean([balanced_accuracy_score(y_test, r[3])
                                              for r in runs])),
        "test_top5_acc": top5,
        **({"few_shot": few_shot} if few_shot else {}),
        "classifier": {"name": clf_name, "params": clf_params, "grid": grid,
                       "extend_grid": extend_grid, "tie_margin": tie_margin(n_val),
                       "max_extensions": MAX_EXTENSIONS, "bounds": dict(BOUNDS),
                       "chosen": tuned.best_params,
                       # a few-shot row: any draw's flag (each draw's choice: few_shot)
                       "edge": "; ".join(dict.fromkeys(r[2].edge for r in runs if r[2].edge)),
                       "hit_iteration_limit": any(r[2].hit_limit for r in runs),
                       "val_scores": tuned.val_scores,
                       "standardized": pipe.named_steps["scale"] != "passthrough",
                       "placement": placement,
                       "defaults": {k: v for k, v in defaults.items() if k not in grid}},
        "n_val": n_val,
        "n_fit": int(len(y) - n_val) if shots is None else int(len(runs[0][1])),
        "n_test_scored": int(len(y_test)),
        "timings": {"extract_s": feats.extract_s,
                    "extract_ms_per_image": 1000 * feats.extract_s / max(1, n_images),
                    "extract_cpu_s": feats.extract_cpu_s,
                    "fit_s": float(sum(r[2].fit_s for r in runs)), "fit_cpu_s": fit_cpu_s,
                    "predict_s": predict_s},
        # the machine's load around the fit: a slow figure from a busy machine shows
        "load": {"fit_start": load_start, "fit_end": load_end, "cores": available_cores(),
                 **_threads(n_jobs)},
        "confusion": confusion_matrix(y_scored, pred, len(ds.classes)),
        "warnings": sorted({w for r in runs for w in r[2].warnings}),
    }


def _threads(n_jobs: int | None) -> dict:
    """The thread pools' sizes and OpenMP's wait policy (:func:`limit_threads`); the
    policy is "unknown" when torch was imported before featbench, which sets it."""
    import featbench

    out = limit_threads(n_jobs)
    if not featbench.OMP_POLICY_APPLIED:
        out["omp_wait_policy"] = "unknown (torch was imported before featbench)"
    return out


def run_benchmark(
    ds: Dataset,
    features: list[str],
    classifiers: list[str],
    *,
    params: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    val_size: int | float | None = None,
    store: FeatureStore | None = None,
    results_dir: str | Path | None = "results",
    n_jobs: int | None = None,
    on_record=None,
    annotate: dict[str, Any] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    skip_bad: bool = False,
    dtype: str = "float32",
    extend_grid: bool = True,
    rerun: bool = False,
    on_reuse=None,
    shots: list[int] | None = None,
    n_shot_seeds: int = 3,
) -> list[dict]:
    """Run every feature x classifier pair and return (and write) their records.

    Parameters
    ----------
    ds : Dataset
    features, classifiers : list of str
        Registered names (features may join several with ``+``).
    params : dict, optional
        ``{name: {param: value}}`` for extractors and classifiers.
    seed : int
        Seed of the validation split, the learned extractors and the classifiers.
    val_size : int or float, optional
        Validation images (count or fraction of train) when the dataset has no
        ``val/`` split; default :func:`~featbench.classifiers.tuning.validation_size`.
    store : FeatureStore, optional
        Where features are stored (default: a temporary store, removed afterwards).
    results_dir : path or None
        Records go to ``<results_dir>/runs/<run_id>.json``; None writes nothing.
    on_record : callable, optional
        Called with each record as soon as it is written.
    annotate : dict, optional
        Extra fields stored in every record (e.g. the study row it belongs to).
    shard_size, skip_bad, dtype
        Passed to :func:`featbench.extraction.extract_features`.
    extend_grid : bool
        Extend a classifier's grid past an edge that holds the best validation
        accuracy (see :mod:`featbench.classifiers.tuning`).
    rerun : bool
        Fit every pair, also those with a finished record of the same key
        (:func:`~featbench.keys.pair_key`) in ``results_dir``; by default such a pair is
        not fitted again: its record is returned (and passed to ``on_record`` and
        ``on_reuse``), so a sweep resumed after an interrupt fits only what is left and
        writes no duplicate records. (Study runs, with ``annotate``, skip rows by their
        own key: see :mod:`featbench.reproduce`.)
    shots : list of int, optional
        Few-shot probes (:mod:`featbench.few_shot`): each classifier once per K, on K
        training images per class drawn with ``n_shot_seeds`` seeds; None: the whole
        training split (the usual protocol).

    Notes
    -----
    A pair that fails becomes a record with its ``error`` set (and the traceback of
    the failure); the other pairs go on.
    """
    params = params or {}
    validate_plan(features, classifiers, params)
    if store is None:
        with tempfile.TemporaryDirectory(prefix="featbench-store-") as tmp:
            return run_benchmark(ds, features, classifiers, params=params, seed=seed,
                                 val_size=val_size, store=FeatureStore(tmp),
                                 results_dir=results_dir, n_jobs=n_jobs, on_record=on_record,
                                 annotate=annotate, shard_size=shard_size, skip_bad=skip_bad,
                                 dtype=dtype, extend_grid=extend_grid, rerun=rerun,
                                 on_reuse=on_reuse, shots=shots, n_shot_seeds=n_shot_seeds)
    check_validation_split(ds, val_size)  # before any extraction
    limit_threads(n_jobs)  # every thread pool sized to the cores this process may use
    # the tuning split is decided before any extractor is fitted (see featbench.splits)
    split = tuning_split(ds, seed, val_size)
    if shots:
        check_shots(ds, split, classifiers, shots, n_shot_seeds)
    # (classifier, K) per record: K = None for the whole training split
    jobs = [(c, k) for c in classifiers for k in (shots or [None])]
    records = []
    pairs = progress(total=len(features) * len(jobs), desc="pairs", unit="pair",
                     leave=True, position=0)
    failed = 0
    finished = {} if rerun or results_dir is None or annotate is not None \
        else finished_pairs(Path(results_dir) / "runs")
    for spec in features:
        keys = {job: _pair_key(ds, spec, job[0], params, seed, val_size=val_size,
                               extend_grid=extend_grid, dtype=dtype, skip_bad=skip_bad,
                               extra=None if job[1] is None else {"few_shot": {
                                   "shots": job[1], "seeds": n_shot_seeds}})
                for job in jobs}
        todo = [j for j in jobs if keys[j] is None or keys[j] not in finished]
        for job in jobs:
            if job not in todo:  # done earlier: its record, not a second one
                rec = finished[keys[job]]
                records.append(rec)
                pairs.update(1)
                for callback in (on_record, on_reuse):
                    if callback is not None:
                        callback(rec)
        if not todo:
            continue
        feats, feat_error, feat_tb = None, None, None
        pairs.set_postfix_str(f"extract {spec}")
        try:
            feats = extract_features(spec, ds, params, store, seed=seed, shard_size=shard_size,
                                     skip_bad=skip_bad, dtype=dtype, n_workers=n_jobs,
                                     split=split)
        except Exception as exc:  # recorded in the pair's record; the sweep goes on
            if _is_user_stop(exc):
                raise
            feat_error = f"{type(exc).__name__}: {exc}"
            feat_tb = traceback.format_exc()
        for job in todo:
            clf_name, k_shots = job
            pairs.set_postfix_str(f"fit {clf_name} on {spec}" if feats is not None
                                  else f"{clf_name} on {spec}: extraction failed")
            rec = new_record(ds, spec, clf_name, seed)
            rec["pair_key"] = keys[job]
            rec["features"]["dtype"] = dtype
            rec["dataset"]["tuning_split"] = split.describe()
            rec.update(annotate or {})
            if feats is None:  # keep what was asked, so a failed pair can be rerun
                rec["features"]["params"] = {n: canonical(params.get(n, {}))
                                             for n in split_spec(spec)}
                rec["features"]["defaults"] = {}
            else:
                rec["features"].update(params=feats.params, parts=feats.parts,
                                       cached=feats.cached, defaults=feature_defaults(spec))
                if feats.bad_files:
                    rec["bad_images"] = list(feats.bad_files)
                runtimes = [p["runtime"] for p in feats.parts if p.get("runtime")]
                for field_ in ("device", "precision"):
                    values = sorted({str(r[field_]) for r in runtimes if field_ in r})
                    if values:
                        rec["device"][field_] = ",".join(values)
            try:
                if feat_error:
                    raise RuntimeError(feat_error)
                out = run_pair(ds, feats, spec, clf_name, params.get(clf_name, {}),
                               seed=seed, split=split, n_jobs=n_jobs,
                               extend_grid=extend_grid, store=store, shots=k_shots,
                               n_shot_seeds=n_shot_seeds)
                rec["dataset"]["n_val"] = out.pop("n_val")
                rec["dataset"]["n_train_fit"] = out.pop("n_fit")
                rec["dataset"]["n_test_scored"] = out.pop("n_test_scored")
                rec["classifier"] = out.pop("classifier")
                rec.update(out)
                rec["test_per_class_acc"] = per_class_accuracy(rec["confusion"])
            except Exception as exc:  # recorded as the pair's error
                rec["error"] = feat_error or f"{type(exc).__name__}: {exc}"
                rec["traceback"] = feat_tb or traceback.format_exc()
            if results_dir is not None:
                write_json_atomic(Path(results_dir) / "runs" / f"{rec['run_id']}.json", rec)
            records.append(rec)
            failed += bool(rec.get("error"))
            pairs.update(1)
            if on_record is not None:
                on_record(rec)
    finish(pairs, failed)
    return records


def check_shots(ds: Dataset, split: TuningSplit, classifiers: list[str], shots: list[int],
                n_shot_seeds: int) -> None:
    """Before any extraction: every class has K training images outside the validation
    split for every K, at least one seed, and no ``own-head`` (a network trained on every
    training image has no K-shot version)."""
    from .errors import DataError, ParameterError

    if OWN_HEAD in classifiers:
        raise ParameterError(f"--shots: -c {OWN_HEAD} scores the network trained on every "
                             f"training image; it has no few-shot version")
    if "mlp" in classifiers:
        raise ParameterError("--shots: -c mlp holds out a tenth of its training images to "
                             "stop early; with K images per class it has none to spare")
    if n_shot_seeds < 1:
        raise ParameterError(f"--shot-seeds {n_shot_seeds}: must be at least 1")
    labels = np.asarray(ds.train.labels)[split.fit]
    values = np.arange(len(ds.classes))
    counts = np.bincount(labels, minlength=len(ds.classes))[:len(ds.classes)]
    for k in shots:
        if k < 1:
            raise ParameterError(f"--shots {k}: must be at least 1")
        if counts.min() < k:
            c = int(values[np.argmin(counts)])
            name = ds.classes[c] if 0 <= c < len(ds.classes) else c
            raise DataError(f"--shots {k}: class {name} has {counts.min()} training "
                            f"image(s) outside the validation split")


def finished_pairs(runs: Path) -> dict[str, dict]:
    """The newest error-free record of each pair key in the folder ``runs`` (none, with
    a one-line warning, when the folder holds a file that is not a record)."""
    if not runs.is_dir() or not any(runs.glob("*.json")):
        return {}
    from .errors import DataError

    try:
        records = load_records([runs])
    except DataError as exc:
        warnings.warn(f"finished pairs not reused: {exc}", UserWarning, stacklevel=3)
        return {}
    return {r["pair_key"]: r for r in records if r.get("pair_key") and not r.get("error")}


def _pair_key(*args, **kwargs) -> str | None:
    """:func:`~featbench.keys.pair_key`, or None when a parameter makes it fail (the pair
    then runs, and fails, as a pair: nothing is reused for it)."""
    try:
        return pair_key(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the pair's own run reports it
        return None


def feature_defaults(spec: str) -> dict[str, dict[str, Any]]:
    """Default parameters of each extractor of ``spec`` in this version (stored in every
    record, so that its table shows what was changed from the defaults of its time)."""
    return {name: canonical(build_extractor(name).get_params(deep=False))
            for name in split_spec(spec)}


def _is_user_stop(exc: BaseException) -> bool:
    """A bad image stops the whole run at once (one line naming the file), and so does a
    store entry half filled on a machine that resolved ``auto`` differently
    (:class:`~featbench.extraction.RuntimeMismatch`)."""
    from .errors import DataError
    from .extraction import RuntimeMismatch

    return isinstance(exc, RuntimeMismatch) or (
        isinstance(exc, DataError) and str(exc).startswith("cannot read image"))
