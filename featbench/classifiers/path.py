"""The regularization path: every value of C fitted on one copy of the features.

Tuning a linear classifier's ``C`` fits the same problem at several strengths of
regularization. As glmnet (Friedman, Hastie & Tibshirani 2010) and scikit-learn's
``LogisticRegressionCV`` do, the values are fitted from the strongest
regularization (smallest C) up, each fit starting from the solution of the nearest
value already fitted (a *warm start*), and every fit reads one standardized float32
copy of the features (:class:`Design`), made once per grid rather than once per
value and per worker. The solvers (:mod:`featbench.classifiers.torch_logreg`,
:mod:`featbench.classifiers.linear_svm`) stop on the same gradient rule wherever
they run, so the optimum each value reaches is that of a cold start, to the
solver's tolerance (the tests compare objective values).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.pipeline import Pipeline


class Design:
    """Features copied once to a torch device in float32, with a row-major copy of the
    transpose (the gradient ``X^T G`` reads it several times faster than ``X.T``).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Shared without a copy when it is a C-contiguous float32 array on the CPU.
    device : torch.device or str
    """

    def __init__(self, X: np.ndarray, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(self.device)
        self.XT = self.X.T.contiguous()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.X.shape)

    @classmethod
    def of(cls, X, device: torch.device | str) -> Design:
        """``X`` itself when it is a :class:`Design` on ``device``, else one made of it."""
        if isinstance(X, Design) and X.device == torch.device(device):
            return X
        return cls(X.X.cpu().numpy() if isinstance(X, Design) else X, device)


def path_key(pipeline: Pipeline, grid: dict[str, list[Any]], shape: tuple[int, int]
             ) -> str | None:
    """The parameter to fit as a path (``"C"``), or None when the grid or the
    classifier's solver cannot be warm-started (scikit-learn's and liblinear's)."""
    clf = pipeline.named_steps.get("clf") if hasattr(pipeline, "named_steps") else None
    if clf is None or not hasattr(clf, "fit_design") or list(grid) != ["C"]:
        return None
    if not all(isinstance(v, (int, float)) and v > 0 for v in grid["C"]):
        return None
    try:
        return "C" if clf.warm_startable(*shape) else None
    except Exception:  # noqa: BLE001 - a bad parameter fails in fit, with its own message
        return None


class PathFitter:
    """Fits one classifier at many values of ``C`` on shared, standardized features.

    Parameters
    ----------
    pipeline : Pipeline
        ``scale`` (a scaler, fitted here once on ``X_fit``) then ``clf`` (a classifier
        with ``fit_design``, e.g. :class:`~featbench.classifiers.torch_logreg.LogReg`).
    X_fit, y_fit, X_val : arrays
        Rows to fit on and to validate on.
    """

    def __init__(self, pipeline: Pipeline, X_fit: np.ndarray, y_fit: np.ndarray,
                 X_val: np.ndarray) -> None:
        self.scale = clone(pipeline.named_steps["scale"]).fit(X_fit)
        self.clf = pipeline.named_steps["clf"]
        _, device = self.clf._placement(*X_fit.shape)
        self.design = Design(self.scale.transform(X_fit).astype(np.float32, copy=False),
                             device)
        self.y_fit = y_fit
        self.X_val = self.scale.transform(X_val)
        #: solution (coef, intercept) of every value fitted, by value
        self.solutions: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def start(self, C: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The solution to start ``C`` from: the nearest value fitted below it (stronger
        regularization), else the nearest above, else None (a cold start)."""
        below = [c for c in self.solutions if c < C]
        above = [c for c in self.solutions if c > C]
        if below:
            return self.solutions[max(below)]
        if above:
            return self.solutions[min(above)]
        return None

    def fit(self, C: float):
        """The classifier fitted at ``C`` (warm-started, see :meth:`start`)."""
        est = clone(self.clf).set_params(C=C)
        est.fit_design(self.design, self.y_fit, init=self.start(C))
        self.solutions[C] = (est.coef_, est.intercept_)
        return est


def path_order(points: list[dict[str, Any]], key: str) -> list[int]:
    """Indices of ``points`` from the strongest regularization (smallest ``key``) up."""
    return sorted(range(len(points)), key=lambda i: (math.log(points[i][key]), i))
