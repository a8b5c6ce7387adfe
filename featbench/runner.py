"""The sweep: every feature x classifier pair on a dataset, one record per pair.

Features come from the extraction layer (:mod:`featbench.extraction`), which
streams each spec's images through its extractors into the sharded feature
store (``hog+color-hist`` reuses the stored ``hog``); this module only tunes
every classifier on the validation split, refits on train + validation, scores
on test and writes each finished pair to ``results/runs/`` at once, so an
interrupted run loses at most the pair in progress.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import tempfile
import time
import traceback
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from .classifiers import default_grid, get_classifier
from .classifiers.tuning import split_validation, tune_and_fit, validation_size
from .datasets import Dataset
from .errors import ParameterError
from .extraction import (  # noqa: F401 - package_versions re-exported for records
    FeatureResult,
    canonical,
    extract_features,
    extractor_code_hash,
    package_versions,
)
from .features import build_extractor, get_extractor, set_params_checked, split_spec
from .parallel import get_n_jobs, progress
from .results import slug, write_json_atomic
from .store import DEFAULT_SHARD_SIZE, FeatureStore


def device_info() -> dict[str, Any]:
    """Where the run happened (CPU only for the hand-crafted extractors)."""
    return {"device": "cpu", "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def classifier_setup(name: str, params: dict[str, Any], seed: int):
    """The pipeline and grid for ``name``: a set grid parameter replaces its grid.

    A grid parameter given as a tuple (``-p linear-svm.C=0.01,0.1``) becomes the grid;
    other tuple values (``-p mlp.hidden_layer_sizes=500,500``) are plain values.
    """
    grid = default_grid(name)
    fixed = {}
    for key, value in params.items():
        if key in grid:
            grid[key] = list(value) if isinstance(value, tuple) else [value]
        else:
            fixed[key] = value
    seed = fixed.pop("random_state", seed)
    pipe = get_classifier(name, random_state=seed, **fixed)
    set_params_checked(pipe.named_steps["clf"], {k: v[0] for k, v in grid.items()},
                       f"classifier {name!r}")
    return pipe, grid


def validate_plan(features: list[str], classifiers: list[str],
                  params: dict[str, dict[str, Any]]) -> None:
    """Fail before any work when a name or a parameter is wrong."""
    names = set()
    for spec in features:
        get_extractor(spec)  # unknown names raise with the valid list
        for name in split_spec(spec):
            names.add(name)
            set_params_checked(build_extractor(name), params.get(name, {}),
                               f"feature {name!r}")
    for clf in classifiers:
        names.add(clf)
        classifier_setup(clf, params.get(clf, {}), 0)
    stray = sorted(set(params) - names)
    if stray:
        cnn = sorted(n for n in names if n.startswith("cnn:"))
        hint = (f"; a CNN's parameters are named after it, e.g. -p {cnn[0]}.size=128"
                if cnn and any(s == "cnn" or ":" not in s for s in stray) else "")
        raise ParameterError(
            f"-p names {', '.join(map(repr, stray))}, which this run does not use "
            f"(features: {', '.join(features)}; classifiers: {', '.join(classifiers)}){hint}"
        )


def fit_data(ds: Dataset, feats: FeatureResult, seed: int, val_size
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Features and labels to tune on (with the validation mask) and to score on.

    The validation split is the dataset's own ``val/`` when it has one, else a
    seeded, stratified part of train. Rows of images that could not be decoded
    (``--skip-bad-images``) are left out.
    """
    def rows(split: str) -> tuple[np.ndarray, np.ndarray]:
        F, y = feats.splits[split], ds.split(split).labels
        bad = feats.bad.get(split) or []
        if bad:
            keep = np.setdiff1d(np.arange(len(y)), bad)
            return np.asarray(F[keep]), y[keep]
        return F, y

    X_train, y_train = rows("train")
    X_test, y_test = rows("test")
    if ds.val is not None:
        X_val, y_val = rows("val")
        X = np.concatenate([X_train, X_val])
        y = np.concatenate([y_train, y_val])
        mask = np.r_[np.zeros(len(y_train), bool), np.ones(len(y_val), bool)]
        return X, y, mask, X_test, y_test, len(y_val)
    n_val = validation_size(len(y_train), val_size)
    return X_train, y_train, split_validation(y_train, n_val, seed), X_test, y_test, n_val


def run_pair(ds: Dataset, feats: FeatureResult, spec: str, clf_name: str,
             params: dict[str, Any], *, seed: int, val_size, n_jobs: int | None) -> dict:
    """Tune, refit and score one classifier on extracted features; return the record."""
    X, y, val_mask, X_test, y_test, n_val = fit_data(ds, feats, seed, val_size)
    pipe, grid = classifier_setup(clf_name, params, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", LinAlgWarning)
        tuned = tune_and_fit(clone(pipe), grid, X, y, val_mask, n_jobs=n_jobs or get_n_jobs())
    t0 = time.perf_counter()
    pred = tuned.estimator.predict(X_test)
    predict_s = time.perf_counter() - t0
    test_acc = float(np.mean(pred == y_test))
    clf_params = canonical(tuned.estimator.named_steps["clf"].get_params(deep=False))
    n_images = sum(len(src) for src in ds.splits().values())
    return {
        "feature_dim": int(X.shape[1]),
        "val_acc": tuned.val_acc,
        "test_acc": test_acc,
        "classifier": {"name": clf_name, "params": clf_params, "grid": grid,
                       "chosen": tuned.best_params, "val_scores": tuned.val_scores,
                       "standardized": True},
        "n_val": n_val,
        "n_fit": int(len(y) - n_val),
        "n_test_scored": int(len(y_test)),
        "timings": {"extract_s": feats.extract_s,
                    "extract_ms_per_image": 1000 * feats.extract_s / max(1, n_images),
                    "fit_s": tuned.fit_s, "predict_s": predict_s},
        "confusion": _confusion(y_test, pred, len(ds.classes)),
        "warnings": sorted({str(w.message).splitlines()[0] for w in caught}),
    }


def _confusion(y_true, y_pred, n_classes: int) -> list[list[int]]:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m.tolist()


def new_record(ds: Dataset, spec: str, clf_name: str, seed: int) -> dict:
    """The fields every record has, before results are in."""
    now = _dt.datetime.now(_dt.timezone.utc)
    run_id = (f"{now:%Y%m%dT%H%M%S}-{slug(ds.name)}-{slug(spec)}-{slug(clf_name)}-"
              f"{uuid.uuid4().hex[:6]}")
    return {
        "schema": 1,
        "run_id": run_id,
        "created": now.isoformat(),
        "dataset": ds.summary(),
        "features": {"spec": spec},
        "classifier": {"name": clf_name},
        "seed": seed,
        "versions": dict(package_versions()),
        "device": device_info(),
        "error": None,
    }


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
                                 dtype=dtype)
    records = []
    pairs = progress(total=len(features) * len(classifiers), desc="pairs", unit="pair",
                     leave=True, position=0)
    for spec in features:
        feats, feat_error, feat_tb = None, None, None
        pairs.set_postfix_str(f"extract {spec}")
        try:
            feats = extract_features(spec, ds, params, store, seed=seed, shard_size=shard_size,
                                     skip_bad=skip_bad, dtype=dtype, n_workers=n_jobs)
        except Exception as exc:  # recorded in the pair's record; the sweep goes on
            if _is_user_stop(exc):
                raise
            feat_error = f"{type(exc).__name__}: {exc}"
            feat_tb = traceback.format_exc(limit=8)
        for clf_name in classifiers:
            pairs.set_postfix_str(f"fit {clf_name} on {spec}")
            rec = new_record(ds, spec, clf_name, seed)
            rec.update(annotate or {})
            if feats is None:  # keep what was asked, so a failed pair can be rerun
                rec["features"]["params"] = {n: canonical(params.get(n, {}))
                                             for n in split_spec(spec)}
            else:
                rec["features"].update(params=feats.params, parts=feats.parts,
                                       cached=feats.cached)
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
                               seed=seed, val_size=val_size, n_jobs=n_jobs)
                rec["dataset"]["n_val"] = out.pop("n_val")
                rec["dataset"]["n_train_fit"] = out.pop("n_fit")
                rec["dataset"]["n_test_scored"] = out.pop("n_test_scored")
                rec["classifier"] = out.pop("classifier")
                rec.update(out)
            except Exception as exc:  # recorded as the pair's error
                rec["error"] = feat_error or f"{type(exc).__name__}: {exc}"
                rec["traceback"] = feat_tb or traceback.format_exc(limit=8)
            if results_dir is not None:
                write_json_atomic(Path(results_dir) / "runs" / f"{rec['run_id']}.json", rec)
            records.append(rec)
            pairs.update(1)
            if on_record is not None:
                on_record(rec)
    pairs.close()
    return records


def _is_user_stop(exc: BaseException) -> bool:
    """A bad image stops the whole run at once (one line naming the file)."""
    from .errors import DataError

    return isinstance(exc, DataError) and str(exc).startswith("cannot read image")
