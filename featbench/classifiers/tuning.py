"""Choose hyperparameters on a held-out validation split, refit, and score.

The protocol of the CS231n assignment: hold out a seeded, stratified validation
set from the training images, fit each grid value on the rest, keep the value with
the best validation accuracy, refit it on train + validation, and score on test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import GridSearchCV, PredefinedSplit, train_test_split
from sklearn.pipeline import Pipeline

from ..errors import DataError


def validation_size(n_train: int, val_size: int | float | None) -> int:
    """Number of validation images: ``val_size`` (count or fraction) or the default.

    The default is ``min(1000, round(0.1 * n_train))``: 1,000 images on full CIFAR-10,
    as in CS231n, and a tenth of smaller training sets.
    """
    if val_size is None:
        n_val = min(1000, round(0.1 * n_train))
    elif isinstance(val_size, float) and 0 < val_size < 1:
        n_val = round(val_size * n_train)
    else:
        n_val = int(val_size)
    if n_val < 1 or n_val >= n_train:
        asked = "the default validation size" if val_size is None else \
            f"validation size {val_size!r}"
        raise DataError(
            f"{asked} ({n_val}) leaves no training or no validation images (the training "
            f"set has {n_train}); pass --val-size or a larger --train-size"
        )
    return n_val


def split_validation(y: np.ndarray, n_val: int, seed: int) -> np.ndarray:
    """Boolean mask of a seeded, stratified validation subset of ``y``."""
    idx = np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    stratify = y if (counts.min() >= 2 and n_val >= len(classes)
                     and len(y) - n_val >= len(classes)) else None
    _, val_idx = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
    mask = np.zeros(len(y), dtype=bool)
    mask[val_idx] = True
    return mask


@dataclass
class TuneResult:
    """Outcome of :func:`tune_and_fit`."""

    estimator: Pipeline
    best_params: dict[str, Any]
    val_acc: float
    val_scores: list[dict[str, Any]] = field(default_factory=list)
    fit_s: float = 0.0


def tune_and_fit(
    pipeline: Pipeline,
    grid: dict[str, list[Any]],
    X: np.ndarray,
    y: np.ndarray,
    val_mask: np.ndarray,
    n_jobs: int | None = None,
) -> TuneResult:
    """Pick the grid point with the best validation accuracy, then refit on all of ``X``.

    Parameters
    ----------
    pipeline : Pipeline
        Ends with a step named ``clf``; grid keys are that step's parameters.
    grid : dict
        Parameter name -> values; an empty grid fits the pipeline as it is (the
        validation accuracy is still measured).
    X, y : arrays
        Training features and labels, validation rows included.
    val_mask : ndarray of bool
        Rows of ``X`` used for validation.
    n_jobs : int, optional
        Grid points fitted in parallel.
    """
    param_grid = {f"clf__{k}": list(v) for k, v in grid.items()} or {}
    search = GridSearchCV(
        pipeline,
        param_grid or [{}],
        cv=PredefinedSplit(np.where(val_mask, 0, -1)),
        scoring="accuracy",
        refit=True,
        n_jobs=n_jobs,
        error_score="raise",
    )
    t0 = time.perf_counter()
    search.fit(X, y)
    fit_s = time.perf_counter() - t0
    results = search.cv_results_
    scores = [
        {
            "params": {k.removeprefix("clf__"): _plain(v) for k, v in p.items()},
            "val_acc": float(s),
            "fit_s": float(t),
        }
        for p, s, t in zip(results["params"], results["mean_test_score"],
                           results["mean_fit_time"], strict=True)
    ]
    best = {k.removeprefix("clf__"): _plain(v) for k, v in search.best_params_.items()}
    return TuneResult(search.best_estimator_, best, float(search.best_score_), scores, fit_s)


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers, for JSON."""
    return value.item() if isinstance(value, np.generic) else value
