"""The end-to-end protocol: a ConvNet scored by its own trained head (``-c own-head``).

Where the other classifiers are tuned on the validation split and refitted on the
features (:func:`featbench.classifiers.tuning.tune_and_fit`), ``own-head`` fits nothing:
the network ``convnet:<arch>`` trained on the training images less the validation split
classifies the validation and test images with its final layer. With the test-time flip
(``resnet-small``'s default) the images are decoded again and each image's logits are
averaged with its mirror image's, as the network's ``predict`` does; without it the
head reads the stored features (:meth:`~featbench.features.convnet.ConvNet.head_logits`).
This is the lecture's "ConvNet trained end to end" row beside "its features + logreg".
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .classifiers import OWN_HEAD
from .errors import DataError, ParameterError
from .features import split_spec

#: images decoded and scored at a time for the test-time flip (bounded memory)
TTA_CHUNK = 4096


def check_own_head(features: list[str]) -> None:
    """``own-head`` classifies with a ``convnet:<arch>`` network's head: every feature
    spec of the run must be one such extractor alone."""
    bad = [s for s in features if len(split_spec(s)) != 1 or not s.startswith("convnet:")]
    if bad:
        raise ParameterError(
            f"-c {OWN_HEAD} scores a ConvNet trained end to end with its own head: it needs "
            f"the features of one convnet:<arch> extractor (e.g. -f convnet:convnetjs); got "
            f"-f {', '.join(bad)}")


def fitted_extractor(spec: str, ds, params: dict[str, dict[str, Any]], store, *, seed: int,
                     split, n_workers: int | None):
    """The fitted extractor of ``spec`` (its stored weights loaded: the extraction
    that gave the features has just stored them)."""
    from .extraction import plan, prepare

    p = plan(spec, ds, params.get(spec, {}), seed, split)
    prepare(p, ds, store, n_workers=n_workers)
    return p


def _flip_logits(est, source, view, indices: np.ndarray, labels: np.ndarray,
                 n_workers: int, skip_bad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Logits with the test-time flip for ``source``'s images ``indices``, decoded a
    chunk at a time, and their labels (undecodable images left out)."""
    from .extraction import _decode_all

    preds, kept = [], []
    for start in range(0, len(indices), TTA_CHUNK):
        chunk = indices[start:start + TTA_CHUNK]
        try:
            images, bad = _decode_all(source, view, chunk, n_workers, skip_bad,
                                      desc=f"{OWN_HEAD}: decode for the test-time flip")
        except DataError:
            if not skip_bad:
                raise
            continue  # every image of the chunk undecodable: left out, as the features
        preds.append(est.logits(images, tta=True))
        kept.append(np.delete(labels[start:start + TTA_CHUNK], bad))
    if not preds:
        return np.zeros((0, len(est.classes_)), np.float32), labels[:0]
    return np.concatenate(preds), np.concatenate(kept)


def run_own_head(ds, feats, spec: str, params: dict[str, Any], store, *, seed: int, split,
                 data: tuple, n_workers: int) -> dict[str, Any]:
    """Score the network of ``spec`` with its own head on the validation and test images;
    the fields of a pair's record (as :func:`featbench.runner.run_pair` returns them).

    ``data`` is :func:`featbench.runner.fit_data`'s ``(X, y, val_mask, X_test, y_test,
    n_val)``.
    """
    from sklearn.metrics import balanced_accuracy_score

    from .classifiers.own_head import OwnHead
    from .metrics import top_k_accuracy
    from .plan import classifier_setup
    from .provenance import canonical

    X, y, val_mask, X_test, y_test, n_val = data
    pipe, _ = classifier_setup(OWN_HEAD, params, seed)
    asked = canonical(pipe.named_steps["clf"].get_params(deep=False))
    p = fitted_extractor(spec, ds, {spec: dict(feats.params.get(spec, {}))}, store, seed=seed,
                         split=split, n_workers=n_workers)
    est = p.estimator
    head = OwnHead(tta=asked.get("tta")).fit(X[~val_mask], y[~val_mask], extractor=est)
    tta = bool(est.setting("tta") if head.tta is None else head.tta)
    t0 = time.perf_counter()
    if tta:
        skip_bad = bool(feats.bad_files)
        if ds.val is not None:
            val_src, val_idx = ds.val, np.arange(len(ds.val))
        else:
            val_src, val_idx = ds.train, np.flatnonzero(split.val_mask(len(ds.train)))
        val_logits, y_val = _flip_logits(est, val_src, p.view, val_idx,
                                         np.asarray(val_src.labels)[val_idx], n_workers,
                                         skip_bad)
        logits, y_test = _flip_logits(est, ds.test, p.view, np.arange(len(ds.test)),
                                      np.asarray(ds.test.labels), n_workers, skip_bad)
    else:
        val_logits, y_val = head.decision_function(X[val_mask]), y[val_mask]
        logits = head.decision_function(X_test)
    val_pred = est.classes_[np.argmax(val_logits, axis=1)]
    pred = est.classes_[np.argmax(logits, axis=1)]
    predict_s = time.perf_counter() - t0
    from .results import confusion_matrix

    runtime = next((part.get("runtime") for part in feats.parts if part.get("runtime")), {})
    return {
        "feature_dim": int(X.shape[1]),
        "val_acc": float(np.mean(val_pred == y_val)),
        "test_acc": float(np.mean(pred == y_test)),
        "val_mean_class_acc": float(balanced_accuracy_score(y_val, val_pred)),
        "test_mean_class_acc": float(balanced_accuracy_score(y_test, pred)),
        "test_top5_acc": top_k_accuracy(y_test, logits, est.classes_),
        "classifier": {"name": OWN_HEAD, "params": {**asked, "tta": tta}, "grid": {},
                       "extend_grid": False, "chosen": {}, "edge": None,
                       "hit_iteration_limit": False, "val_scores": [], "standardized": False,
                       "placement": {}, "protocol": "end-to-end",
                       "trained": {"recipe": est.recipe(), **{
                           k.rstrip("_"): getattr(est, k, None) for k in (
                               "train_seconds_", "epochs_run_", "train_loss_",
                               "train_images_per_s_", "stopped_by_budget_")},
                           "device": runtime.get("device"),
                           "precision": runtime.get("precision")},
                       "defaults": canonical(OwnHead(random_state=seed).get_params(
                           deep=False))},
        "n_val": int(len(y_val)),
        "n_fit": int(len(y) - n_val),
        "n_test_scored": int(len(y_test)),
        "timings": {"extract_s": feats.extract_s,
                    "extract_ms_per_image": 1000 * feats.extract_s / max(
                        1, sum(len(src) for src in ds.splits().values())),
                    "extract_cpu_s": feats.extract_cpu_s,
                    "fit_s": 0.0, "fit_cpu_s": 0.0, "predict_s": predict_s},
        "confusion": confusion_matrix(y_test, pred, len(ds.classes)),
        "warnings": [],
    }
