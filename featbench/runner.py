"""Run feature x classifier pairs on a dataset and write one record per pair.

For each feature spec the features are extracted once (through the cache, one
entry per extractor of a ``+`` union, so ``hog+color-hist`` reuses ``hog``), then
every classifier is tuned on the validation split, refit on train + validation
and scored on test. Each finished pair is written to ``results/runs/`` at once,
so an interrupted run loses at most the pair in progress.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import os
import platform
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from . import __version__
from .cache import ArrayCache, make_key
from .classifiers import default_grid, get_classifier
from .classifiers.tuning import split_validation, tune_and_fit, validation_size
from .datasets import Dataset
from .errors import ParameterError
from .features import build_extractor, get_extractor, set_params_checked, split_spec
from .parallel import get_n_jobs, progress
from .results import slug, write_json_atomic


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Versions of featbench, Python and the libraries that compute results."""
    out = {"featbench": __version__, "python": platform.python_version()}
    for dist in ("numpy", "scikit-learn", "scikit-image", "opencv-python-headless", "pillow",
                 "torch", "torchvision"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def device_info() -> dict[str, Any]:
    """Where the run happened (CPU only for the hand-crafted extractors)."""
    return {"device": "cpu", "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def _canonical(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(params.items())}


@dataclass
class FeatureResult:
    """Features of both splits for one feature spec, and how they were obtained."""

    train: np.ndarray
    test: np.ndarray
    params: dict[str, dict[str, Any]]
    extract_s: float
    cached: bool
    parts: list[dict[str, Any]] = field(default_factory=list)


def extract(spec: str, ds: Dataset, params: dict[str, dict[str, Any]],
            cache: ArrayCache) -> FeatureResult:
    """Extract ``spec`` features of both splits of ``ds``, through ``cache``.

    ``params`` maps extractor names to their parameters. The cache key of each
    extractor holds its class, every parameter, the featbench version and the
    content fingerprint of the images (and of the training images it was fitted
    on, for extractors that learn).
    """
    fp_train = ds.split_fingerprint("train")
    fp_test = ds.split_fingerprint("test")
    trains, tests, parts, all_params = [], [], [], {}
    total_s, all_cached = 0.0, True
    for name in split_spec(spec):
        est = set_params_checked(build_extractor(name), params.get(name, {}),
                                 f"feature {name!r}")
        est_params = _canonical(est.get_params(deep=False))
        all_params[name] = est_params
        stateless = not est.__sklearn_tags__().requires_fit
        exclude = getattr(est, "_cache_exclude", ())
        token = est.cache_token() if hasattr(est, "cache_token") else None
        base = {"cls": f"{type(est).__module__}.{type(est).__qualname__}",
                "params": {k: v for k, v in est_params.items() if k not in exclude},
                **({"token": token} if token else {}), "version": __version__,
                "code": extractor_code_hash(type(est)),
                "libs": package_versions()}
        keys = {
            "train": make_key(**base, fit=None if stateless else fp_train, data=fp_train),
            "test": make_key(**base, fit=None if stateless else fp_train, data=fp_test),
        }
        got = {s: cache.load("features", k) for s, k in keys.items()}
        if not stateless and any(v is None for v in got.values()):
            # never pair cached features of one fit with features of another fit
            got = dict.fromkeys(got)
        if all(v is not None for v in got.values()):
            arrays = {s: v["F"] for s, v in got.items()}
            metas = [_meta(cache, keys[s]) for s in keys]
            seconds = sum(float(m.get("seconds", 0.0)) for m in metas)
            runtime = next((m["runtime"] for m in metas if m.get("runtime")), None)
            cached = True
        else:
            t0 = time.perf_counter()
            est.fit(ds.X_train)
            fit_s = time.perf_counter() - t0
            arrays, seconds, runtime = {}, 0.0, None
            for s, X in (("train", ds.X_train), ("test", ds.X_test)):
                if got[s] is not None:
                    arrays[s] = got[s]["F"]
                    seconds += float(_meta(cache, keys[s]).get("seconds", 0.0))
                    continue
                t0 = time.perf_counter()
                arrays[s] = est.transform(X)
                # the fit is charged to the training split
                dt = time.perf_counter() - t0 + (fit_s if s == "train" else 0.0)
                seconds += dt
                # where and how it ran (device, precision, ...), for extractors that say
                runtime = getattr(est, "runtime_", None)
                cache.save("features", keys[s], {"F": arrays[s]},
                           {"seconds": dt, "spec": name, "params": est_params,
                            "n_images": len(X), "runtime": runtime})
            cached = False
        all_cached &= cached
        total_s += seconds
        trains.append(arrays["train"])
        tests.append(arrays["test"])
        part = {"name": name, "dim": int(arrays["train"].shape[1]), "cached": cached,
                "extract_s": seconds}
        if runtime:
            part["runtime"] = runtime
        parts.append(part)
    F_train = trains[0] if len(trains) == 1 else np.hstack(trains)
    F_test = tests[0] if len(tests) == 1 else np.hstack(tests)
    return FeatureResult(F_train, F_test, all_params, total_s, all_cached, parts)


@functools.cache
def extractor_code_hash(cls: type) -> str:
    """Hash of the source of ``cls``'s module and every featbench module it uses.

    Editing an extractor (or a helper it imports) invalidates its cached features,
    and only its own: adding an extractor leaves the others' caches valid.
    """
    import hashlib
    import inspect
    import sys

    seen: set[str] = set()
    stack = [cls.__module__]
    while stack:
        name = stack.pop()
        module = sys.modules.get(name)
        if name in seen or module is None or not name.startswith("featbench."):
            continue
        seen.add(name)
        for value in vars(module).values():
            dep = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(dep, str) and dep.startswith("featbench.") and dep not in seen:
                stack.append(dep)
    h = hashlib.sha256()
    for name in sorted(seen):
        file = getattr(sys.modules[name], "__file__", None)
        if file:
            h.update(name.encode() + Path(file).read_bytes())
    return h.hexdigest()[:16]


def _meta(cache: ArrayCache, key: str) -> dict[str, Any]:
    import json

    try:
        return json.loads((cache.path("features", key) / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


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


def run_pair(ds: Dataset, feats: FeatureResult, spec: str, clf_name: str,
             params: dict[str, Any], *, seed: int, val_size, n_jobs: int | None) -> dict:
    """Tune, refit and score one classifier on extracted features; return the record."""
    n_val = validation_size(len(ds.y_train), val_size)
    val_mask = split_validation(ds.y_train, n_val, seed)
    pipe, grid = classifier_setup(clf_name, params, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", LinAlgWarning)
        tuned = tune_and_fit(clone(pipe), grid, feats.train, ds.y_train, val_mask,
                             n_jobs=n_jobs or get_n_jobs())
    t0 = time.perf_counter()
    pred = tuned.estimator.predict(feats.test)
    predict_s = time.perf_counter() - t0
    test_acc = float(np.mean(pred == ds.y_test))
    clf_params = _canonical(tuned.estimator.named_steps["clf"].get_params(deep=False))
    return {
        "feature_dim": int(feats.train.shape[1]),
        "val_acc": tuned.val_acc,
        "test_acc": test_acc,
        "classifier": {"name": clf_name, "params": clf_params, "grid": grid,
                       "chosen": tuned.best_params, "val_scores": tuned.val_scores,
                       "standardized": True},
        "n_val": n_val,
        "timings": {"extract_s": feats.extract_s,
                    "extract_ms_per_image": 1000 * feats.extract_s
                    / max(1, len(ds.y_train) + len(ds.y_test)),
                    "fit_s": tuned.fit_s, "predict_s": predict_s},
        "confusion": _confusion(ds.y_test, pred, len(ds.classes)),
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
    cache: ArrayCache | None = None,
    results_dir: str | Path | None = "results",
    n_jobs: int | None = None,
    on_record=None,
    annotate: dict[str, Any] | None = None,
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
        Seed of the validation split and the classifiers.
    val_size : int or float, optional
        Validation images (count or fraction of train); default
        :func:`~featbench.classifiers.tuning.validation_size`.
    cache : ArrayCache, optional
        Feature cache (default: none).
    results_dir : path or None
        Records go to ``<results_dir>/runs/<run_id>.json``; None writes nothing.
    on_record : callable, optional
        Called with each record as soon as it is written.
    annotate : dict, optional
        Extra fields stored in every record (e.g. the study row it belongs to).

    Notes
    -----
    A pair that fails becomes a record with its ``error`` set; the other pairs go on.
    """
    params = params or {}
    cache = cache or ArrayCache(enabled=False)
    validate_plan(features, classifiers, params)
    records = []
    pairs = progress(total=len(features) * len(classifiers), desc="pairs", unit="pair",
                     leave=True, position=0)
    for spec in features:
        feats, feat_error = None, None
        pairs.set_postfix_str(f"extract {spec}")
        try:
            feats = extract(spec, ds, params, cache)
        except Exception as exc:  # recorded in the pair's record; the sweep goes on
            feat_error = f"{type(exc).__name__}: {exc}"
        for clf_name in classifiers:
            pairs.set_postfix_str(f"fit {clf_name} on {spec}")
            rec = new_record(ds, spec, clf_name, seed)
            rec.update(annotate or {})
            if feats is None:  # keep what was asked, so a failed pair can be rerun
                rec["features"]["params"] = {n: _canonical(params.get(n, {}))
                                             for n in split_spec(spec)}
            else:
                rec["features"].update(params=feats.params, parts=feats.parts,
                                       cached=feats.cached)
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
                rec["dataset"]["n_train_fit"] = rec["dataset"]["n_train"] - rec["dataset"]["n_val"]
                rec["classifier"] = out.pop("classifier")
                rec.update(out)
            except Exception as exc:  # recorded as the pair's error
                rec["error"] = feat_error or f"{type(exc).__name__}: {exc}"
                rec["traceback"] = traceback.format_exc(limit=5)
            if results_dir is not None:
                write_json_atomic(Path(results_dir) / "runs" / f"{rec['run_id']}.json", rec)
            records.append(rec)
            pairs.update(1)
            if on_record is not None:
                on_record(rec)
    pairs.close()
    return records
