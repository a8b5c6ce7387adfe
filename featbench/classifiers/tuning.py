"""Choose hyperparameters on a held-out validation split, refit, and score.

The protocol of the CS231n assignment: hold out a seeded, stratified validation
set from the training images, fit each grid value on the rest, keep the value with
the best validation accuracy, refit it on train + validation, and score on test.

It departs from a fixed grid in one way, after the coarse-to-fine sweep of the
linear probes of CLIP (Radford et al. 2021, appendix A.3) and CLIP_benchmark: when
the best value lies on an edge of the values tried, the grid is extended by one
step in that direction and the new value fitted, until the best value is inside,
the validation accuracy stops improving by more than :func:`tie_margin`, or
:data:`MAX_EXTENSIONS` values were added on that side (or :data:`BOUNDS` is
reached). Every value tried is recorded with its validation scores.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import ParameterGrid, train_test_split
from sklearn.pipeline import Pipeline

from ..errors import DataError
from .path import PathFitter, path_key, path_order

#: values added beyond the given grid on each side, at most
MAX_EXTENSIONS = 4
#: the range a regularization parameter is never extended beyond
BOUNDS: dict[str, tuple[float, float]] = {"C": (1e-9, 1e5), "alpha": (1e-9, 1e9)}
#: parameters bounded by the data: ``n_neighbors`` by the vectors a grid point is fitted
#: on (values above it are left out of the grid, and extension stops there)
DATA_BOUNDS = ("n_neighbors",)
#: parameters that take integers: their grids are extended in integers
INTEGER_PARAMS = ("n_neighbors",)


#: validation images per class below which :func:`check_validation_split` warns that
#: the tuning choice rests on too few images (accuracies move in steps of 1 / n_val)
MIN_VAL_PER_CLASS = 5


def validation_size(n_train: int, val_size: int | float | None,
                    n_classes: int | None = None) -> int:
    """Number of validation images: ``val_size`` (count or fraction) or the default.

    The default is ``min(1000, round(0.1 * n_train))``: 1,000 images on full CIFAR-10,
    as in CS231n, and a tenth of smaller training sets.

    Parameters
    ----------
    n_train : int
        Training images the validation split is drawn from.
    val_size : int, float or None
        A count (an int >= 1), a fraction (a float strictly between 0 and 1), or None
        for the default. A float outside (0, 1), ``1.0`` included, is refused: it is
        neither (a count is an int).
    n_classes : int, optional
        Classes of the training set: a split with fewer images than classes, which
        cannot hold one image of each, is refused.

    Raises
    ------
    DataError
        One line naming ``--val-size`` when the size is not a count or a fraction,
        leaves no training or no validation image, or is below ``n_classes``.
    """
    shown = "the default validation size" if val_size is None else f"--val-size {val_size!r}"
    if val_size is None:
        n_val = min(1000, round(0.1 * n_train))
    elif isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.integer,
                                                                 np.floating)):
        raise DataError(f"{shown}: must be a count (an integer >= 1) or a fraction in (0, 1)")
    elif isinstance(val_size, (float, np.floating)):
        if not 0 < val_size < 1:
            raise DataError(f"{shown}: a fraction must be in (0, 1) and a count an integer "
                            f"(e.g. --val-size 0.1 or --val-size 100)")
        n_val = round(float(val_size) * n_train)
    else:
        n_val = int(val_size)
    if n_val < 1 or n_val >= n_train:
        raise DataError(
            f"{shown} ({n_val}) leaves no training or no validation images (the training "
            f"set has {n_train}); pass --val-size or a larger --train-size"
        )
    if n_classes is not None and n_val < n_classes:
        raise DataError(
            f"{shown} gives {n_val} validation image(s) for {n_classes} classes: the "
            f"validation split needs at least one image per class; pass --val-size "
            f"{n_classes} or more" + ("" if n_train - n_classes > n_classes else
                                      " (or a larger --train-size)"))
    return n_val


def check_validation_split(ds, val_size: int | float | None) -> int | None:
    """Validate the planned validation split of dataset ``ds`` before any work.

    Returns the number of validation images :func:`validation_size` gives for the
    training split (None when ``ds`` has its own ``val/`` split, which is used as it
    is) and warns (one line) when it holds fewer than :data:`MIN_VAL_PER_CLASS`
    images per class.
    """
    if ds.val is not None:
        return None
    y = np.asarray(ds.y_train)
    n_classes = len(np.unique(y))
    n_val = validation_size(len(y), val_size, n_classes)
    if n_val < MIN_VAL_PER_CLASS * n_classes:
        shown = "the default validation size" if val_size is None else \
            f"--val-size {val_size!r}"
        warnings.warn(
            f"{shown} gives {n_val} validation images for {n_classes} classes, fewer than "
            f"{MIN_VAL_PER_CLASS} per class: the tuning choice rests on few images",
            UserWarning, stacklevel=2)
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


def tie_margin(n_val: int) -> float:
    """Smallest gain in validation accuracy that extends the grid further.

    Two validation images or 0.2 points, whichever is larger: on 1,000 images one
    image is 0.1 point and neighbouring grid values often differ by that much by
    chance, so smaller gains are treated as ties, not chased.
    """
    return max(0.002, 2.0 / max(1, n_val))


def iterations(estimator) -> int | None:
    """The solver's iteration count of a fitted classifier (the largest over its
    sub-problems), or None when it has none."""
    clf = estimator.named_steps["clf"] if isinstance(estimator, Pipeline) else estimator
    n_iter = getattr(clf, "n_iter_", None)
    return None if n_iter is None else int(np.max(n_iter))


def hit_iteration_limit(estimator) -> bool:
    """Whether a fitted classifier stopped at its iteration limit (``n_iter_ >= max_iter``)."""
    clf = estimator.named_steps["clf"] if isinstance(estimator, Pipeline) else estimator
    max_iter = getattr(clf, "max_iter", None)
    n_iter = getattr(clf, "n_iter_", None)
    if max_iter is None or n_iter is None:
        return False
    return bool(np.max(n_iter) >= max_iter)


@dataclass
class TuneResult:
    """Outcome of :func:`tune_and_fit`.

    ``val_scores`` holds one entry per value tried (in the order tried): its
    parameters, validation accuracy and mean per-class accuracy, fit seconds,
    whether it was added by extension, and whether its solver hit its iteration
    limit. ``edge`` says why the chosen value is still on an edge of the values
    tried ("" when it is inside, or the grid could not be extended).
    """

    estimator: Pipeline
    best_params: dict[str, Any]
    val_acc: float
    val_scores: list[dict[str, Any]] = field(default_factory=list)
    fit_s: float = 0.0
    val_mean_class_acc: float = float("nan")
    edge: str = ""
    hit_limit: bool = False
    warnings: list[str] = field(default_factory=list)


def extendable(grid: dict[str, list[Any]]) -> str | None:
    """The one parameter of ``grid`` that can be extended, or None.

    A grid extends when it has exactly one parameter with at least two distinct
    positive numbers (values are stepped on a log scale, by the ratio of the two
    values nearest the edge); a single value is a fixed setting, not a grid.
    """
    if len(grid) != 1:
        return None
    (key, values), = grid.items()
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) != len(values) or len(set(nums)) < 2 or min(nums) <= 0:
        return None
    return key


def tune_and_fit(
    pipeline: Pipeline,
    grid: dict[str, list[Any]],
    X: np.ndarray,
    y: np.ndarray,
    val_mask: np.ndarray,
    n_jobs: int | None = None,
    *,
    extend: bool = False,
    margin: float | None = None,
    bar=None,
    refit: str = "all",
) -> TuneResult:
    """Pick the grid point with the best validation accuracy, then refit on all of ``X``
    (``refit="all"``) or on its rows outside the validation split only (``"fit"``: the
    few-shot protocol, whose classifier sees only its K images per class).

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
        Grid points fitted at once, in threads of this process (the solvers
        release the GIL; BLAS uses the cores of each fit). Default 1.
    extend : bool
        Extend a one-parameter grid past an edge that holds the best value (see the
        module docstring).
    margin : float, optional
        Gain that counts as an improvement when extending (default
        :func:`tie_margin` of the validation size).
    bar : optional
        A progress bar (``update(n)``, ``total``) advanced once per fit.

    Notes
    -----
    Ties go to the value tried first among the best (the original grid's order,
    then the extensions). Warnings raised by the fits (e.g. ConvergenceWarning)
    are returned in ``warnings``, one line each, whatever ``n_jobs`` is.
    """
    with interrupts_stop_fits() as interrupted:
        return _tune_and_fit(pipeline, grid, X, y, val_mask, n_jobs, extend=extend,
                             margin=margin, bar=bar, interrupted=interrupted, refit=refit)


class _Interrupted:
    """Whether Ctrl-C arrived during a fit (see :func:`interrupts_stop_fits`)."""

    def __init__(self) -> None:
        self.seen = False

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C arrived, even if a fit swallowed it."""
        if self.seen:
            raise KeyboardInterrupt("interrupted during a classifier fit")


@contextlib.contextmanager
def interrupts_stop_fits():
    """Make Ctrl-C stop classifier fits that catch it.

    scikit-learn's MLP catches KeyboardInterrupt in its training loop, warns "Training
    interrupted by user" and returns a half-trained model as if it had finished. Inside
    this context, SIGINT is recorded before KeyboardInterrupt is raised, so that
    :meth:`_Interrupted.check` after each fit (and the end of the context) raises it
    again: every fit stops the same way, and nothing half-trained is scored. Only where
    Python's own handler is installed, in the main thread; elsewhere it changes nothing.
    """
    state = _Interrupted()
    installed = (threading.current_thread() is threading.main_thread()
                 and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if installed:
        def handler(signum, frame):
            state.seen = True
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        if installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    state.check()


def _tune_and_fit(pipeline, grid, X, y, val_mask, n_jobs, *, extend, margin, bar,
                  interrupted: _Interrupted, refit: str = "all") -> TuneResult:
    if refit not in ("all", "fit"):
        raise ValueError(f"refit must be 'all' or 'fit'; got {refit!r}")
    val_mask = np.asarray(val_mask, dtype=bool)
    X_fit, y_fit, X_val, y_val = X[~val_mask], y[~val_mask], X[val_mask], y[val_mask]
    margin = tie_margin(len(y_val)) if margin is None else margin
    grid = _within_data(grid, len(y_fit))
    points = _grid_points(grid)
    scores: list[dict[str, Any]] = []
    caught_all: list[str] = []

    # a warm-startable solver fits C as a path, on one standardized copy of X_fit
    path_param = path_key(pipeline, grid, X_fit.shape)
    path = PathFitter(pipeline, X_fit, y_fit, X_val) if path_param is not None else None
    threads = threads_help(pipeline, X_fit.shape) and path is None
    if path is not None and refit == "all":
        X_fit = None  # the path keeps its standardized copy: free this one (3 GB at K = 4000)

    def fit_one(params: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        if path is not None:
            est = path.fit(params[path_param])
            interrupted.check()
            fit_s = time.perf_counter() - t0
            pred = est.predict(path.X_val)
        else:
            est = clone(pipeline).set_params(**{f"clf__{k}": v for k, v in params.items()})
            est.fit(X_fit, y_fit)
            interrupted.check()
            fit_s = time.perf_counter() - t0
            pred = est.predict(X_val)
        if bar is not None:
            bar.update(1)
        return {"params": {k: _plain(v) for k, v in params.items()},
                "val_acc": float(np.mean(pred == y_val)),
                "val_mean_class_acc": float(balanced_accuracy_score(y_val, pred)),
                "fit_s": fit_s, "n_iter": iterations(est), "hit_limit": hit_iteration_limit(est)}

    def fit_many(batch: list[dict[str, Any]], extended: bool) -> None:
        jobs = max(1, min(n_jobs or 1, len(batch))) if threads else 1
        with warnings.catch_warnings(record=True) as caught:
            _record_warnings()
            if path is not None:  # strongest regularization first, each from the last
                done: list[dict[str, Any]] = [{}] * len(batch)
                for i in path_order(batch, path_param):
                    done[i] = fit_one(batch[i])
            elif jobs == 1:
                done = [fit_one(p) for p in batch]
            else:
                with ThreadPoolExecutor(jobs) as pool:
                    done = list(pool.map(fit_one, batch))
        caught_all.extend(_one_line(w) for w in caught)
        for s in done:
            s["extended"] = extended
        scores.extend(done)

    t_start = time.perf_counter()
    fit_many(points, extended=False)
    key = extendable(grid) if extend else None
    edge = ""
    if key is not None:
        edge = _extend(key, scores, fit_many, margin, bar,
                       upper=len(y_fit) if key in DATA_BOUNDS else None)
    best = _best(scores)
    if key is None and len(points) > 1:
        edge = _edge_of(best, scores, grid)
    estimator = clone(pipeline).set_params(
        **{f"clf__{k}": v for k, v in scores[best]["params"].items()})
    # the refit on train + validation starts from the chosen value's solution, and
    # preconditions with a Gram matrix derived from the path's (not computed again)
    start = {}
    if path is not None:
        start["clf__init"] = path.solutions[scores[best]["params"][path_param]]
        gram = path.refit_gram(X, val_mask) if refit == "all" else path.design.known_gram
        if gram is not None:
            start["clf__gram"] = gram
    path = None  # its copy of the features is not needed any more
    with warnings.catch_warnings(record=True) as caught:
        _record_warnings()
        if refit == "all":
            estimator.fit(X, y, **start)
        else:
            estimator.fit(X_fit, y_fit, **start)
    interrupted.check()
    caught_all.extend(_one_line(w) for w in caught)
    if bar is not None:
        bar.update(1)
    fit_s = time.perf_counter() - t_start
    chosen = scores[best]
    return TuneResult(estimator, dict(chosen["params"]), chosen["val_acc"], scores, fit_s,
                      chosen["val_mean_class_acc"], edge,
                      bool(chosen["hit_limit"] or hit_iteration_limit(estimator)),
                      sorted(set(caught_all)))


def _grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in scikit-learn's order
    (:class:`~sklearn.model_selection.ParameterGrid`; one empty point for an empty grid)."""
    return list(ParameterGrid(grid))


def threads_help(pipeline: Pipeline, shape: tuple[int, int]) -> bool:
    """Whether fitting grid points in threads at once can be faster than one by one.

    Only for a solver that runs on one core and releases the GIL: liblinear (the
    linear SVM on few features). The others already use every core (OpenBLAS in
    scikit-learn's L-BFGS, torch's intra-op threads) or hold the GIL in Python
    loops (the MLP's Adam steps), so fits in threads only contend: on 2 cores the
    CIFAR-10 study's HOG + hue MLP grid took 1,146 s in threads (400-800 s per fit),
    37 s in worker processes.
    """
    clf = pipeline.named_steps.get("clf") if hasattr(pipeline, "named_steps") else pipeline
    placement = getattr(clf, "_placement", None)
    if placement is None:
        return False
    try:
        solver, device = placement(*shape)
    except Exception:  # noqa: BLE001 - a bad parameter fails in fit, with its own message
        return False
    return solver == "liblinear"


def _best(scores: list[dict[str, Any]]) -> int:
    """Index of the best validation accuracy (the first tried among ties)."""
    accs = [s["val_acc"] for s in scores]
    return int(np.argmax(accs))


def _edge_of(best: int, scores: list[dict[str, Any]], grid: dict[str, list[Any]]) -> str:
    """Which edge of a grid that was not extended holds the chosen value."""
    key = extendable(grid)
    if key is None:
        return ""
    value = scores[best]["params"][key]
    values = [s["params"][key] for s in scores]
    if value == min(values):
        return "lowest value of the grid (not extended)"
    if value == max(values):
        return "highest value of the grid (not extended)"
    return ""


def _within_data(grid: dict[str, list[Any]], n_fit: int) -> dict[str, list[Any]]:
    """``grid`` with the values of :data:`DATA_BOUNDS` parameters above ``n_fit`` left
    out (all of them above: ``n_fit`` alone)."""
    out = dict(grid)
    for key in DATA_BOUNDS:
        if key in out:
            kept = [v for v in out[key] if v <= n_fit]
            out[key] = kept or [n_fit]
    return out


def _extend(key: str, scores: list[dict[str, Any]], fit_many, margin: float, bar,
            upper: float | None = None) -> str:
    """Extend ``key`` past the edge holding the best value; return why it stopped on an
    edge ("" when the best value is inside the values tried).

    Values step on a log scale by the ratio of the two values nearest the edge; an
    integer parameter (:data:`INTEGER_PARAMS`) stays integers (rounded; it stops when
    rounding gives a value already tried or below 1), and ``upper`` bounds it from above
    (the data's bound)."""
    lo_bound, hi_bound = BOUNDS.get(key, (0.0, math.inf))
    if upper is not None:
        hi_bound = min(hi_bound, upper)
    integer = key in INTEGER_PARAMS
    added = {"low": 0, "high": 0}
    while True:
        values = sorted({s["params"][key] for s in scores})
        best = _best(scores)
        value = scores[best]["params"][key]
        if value not in (values[0], values[-1]):
            return ""
        side = "low" if value == values[0] else "high"
        if side == "low":
            step = values[1] / values[0]
            new = _round(values[0] / step)
        else:
            step = values[-1] / values[-2]
            new = _round(values[-1] * step)
        if integer:
            new = int(round(new))
            if side == "high" and upper is not None and new > upper >= values[-1] + 1:
                new = int(upper)  # the last step stops at the bound itself
            if new in values or new < 1:
                return f"{side}est value tried: no other integer on that side"
        if added[side] >= MAX_EXTENSIONS:
            return f"{side}est value tried after {MAX_EXTENSIONS} extensions (bound)"
        if not lo_bound <= new <= hi_bound:
            return f"{side}est value tried: {key} bound {lo_bound:g}-{hi_bound:g} reached"
        if bar is not None:
            bar.total = (bar.total or 0) + 1
        before = scores[best]["val_acc"]
        fit_many([{key: new}], extended=True)
        added[side] += 1
        if scores[-1]["val_acc"] <= before + margin:
            # no real gain: stop here (the best value is the old edge, or the new one
            # by less than the margin)
            if _best(scores) == len(scores) - 1:
                return (f"{side}est value tried: gain {scores[-1]['val_acc'] - before:+.4f} "
                        f"within the margin {margin:.4f}")
            return ""


def _round(value: float) -> float:
    """A stepped value without floating-point dust (1e-05 * 10 -> 0.0001)."""
    return float(f"{value:.6g}")


def _record_warnings() -> None:
    """Record every warning once per fit, except ridge's ill-conditioning notice (the
    least-squares solution is still returned; it fires on most tiny ``alpha``)."""
    warnings.simplefilter("always")
    warnings.simplefilter("ignore", LinAlgWarning)


def _one_line(w: warnings.WarningMessage) -> str:
    return f"{w.category.__name__}: {str(w.message).splitlines()[0]}"


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers, for JSON."""
    return value.item() if isinstance(value, np.generic) else value
