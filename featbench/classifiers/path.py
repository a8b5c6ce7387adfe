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
from sklearn.preprocessing import StandardScaler

#: values of the linear classifiers' ``precondition`` parameter
PRECONDITION = ("auto", "gram", "none")


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
        self._gram: torch.Tensor | None = None

    def set_gram(self, gram: torch.Tensor | None) -> None:
        """Use ``gram`` as ``X^T X / n`` (known already, e.g. derived by
        :meth:`PathFitter.refit_gram`); None leaves it to :meth:`gram`."""
        if gram is not None:
            if tuple(gram.shape) != (self.shape[1], self.shape[1]):
                raise ValueError(f"gram has shape {tuple(gram.shape)}; expected "
                                 f"({self.shape[1]}, {self.shape[1]})")
            self._gram = gram.to(self.device, torch.float32)

    @property
    def known_gram(self) -> torch.Tensor | None:
        """The Gram matrix if it was computed (or set) already, else None."""
        return self._gram

    def gram(self) -> torch.Tensor:
        """``X^T X / n`` (d, d) in float32 on the device, computed on first use and kept
        (every value of C preconditions with it: :mod:`featbench.classifiers.lbfgs`)."""
        if self._gram is None:
            self._gram = torch.mm(self.XT, self.X).div_(max(1, self.X.shape[0]))
        return self._gram

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.X.shape)

    def factor(self, lam: float, alpha: float, precondition: str) -> torch.Tensor | None:
        """The Cholesky factor preconditioning a fit with ridge ``lam`` and curvature
        ``alpha`` (:func:`~featbench.classifiers.lbfgs.cholesky_factor`), or None:
        ``precondition`` "none", or "auto" with fewer samples than features (where the
        d x d factor costs more than the fit; few-shot draws)."""
        from .lbfgs import cholesky_factor

        if precondition not in PRECONDITION:
            raise ValueError(f"precondition must be one of {', '.join(PRECONDITION)}; got "
                             f"{precondition!r}")
        n, d = self.shape
        if precondition == "none" or (precondition == "auto" and n < d):
            return None
        return cholesky_factor(self.gram(), lam, alpha)

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

    def refit_gram(self, X: np.ndarray, val_mask: np.ndarray) -> torch.Tensor | None:
        """The Gram matrix ``Z^T Z / n`` of all rows of ``X`` (fit and validation)
        standardized by a scaler fitted on all of them, as the refit will standardize
        them, derived from the path's Gram matrix and the validation rows alone (their
        ``n_val d^2`` products instead of ``n d^2``); None when the path computed none or
        its scaler is not a centering and scaling
        :class:`~sklearn.preprocessing.StandardScaler`.

        With ``mu``, ``s`` the fit rows' mean and scale and ``m``, ``t`` all rows':
        ``Z^T Z = T^-1 (S G S n_fit + n_fit (mu - m)(mu - m)^T + V^T V) T^-1`` where
        ``G`` is the path's Gram matrix and ``V`` the validation rows minus ``m``.
        """
        design_gram = self.design.known_gram
        scale = self.scale
        if design_gram is None or not isinstance(scale, StandardScaler) \
                or not (scale.with_mean and scale.with_std):
            return None  # the formula below centers and scales
        val_mask = np.asarray(val_mask, dtype=bool)
        every = clone(scale).fit(X)
        n_fit, n = int((~val_mask).sum()), len(X)
        device = design_gram.device

        def vec(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(a, np.float64)).to(device)

        s, t = vec(scale.scale_), vec(every.scale_)
        delta = vec(scale.mean_) - vec(every.mean_)
        V = torch.from_numpy(np.asarray(X[val_mask], np.float64)).to(device) \
            - vec(every.mean_)
        # in place: one d x d float64 array (2 GB at d = 16,000)
        total = design_gram.double().mul_(s[:, None]).mul_(s[None, :]).mul_(n_fit)
        total.addr_(delta, delta, alpha=n_fit).addmm_(V.T, V)
        return total.div_(t[:, None]).div_(t[None, :]).div_(n).float()

    def fit(self, C: float):
        """The classifier fitted at ``C`` (warm-started, see :meth:`start`)."""
        est = clone(self.clf).set_params(C=C)
        est.fit_design(self.design, self.y_fit, init=self.start(C))
        self.solutions[C] = (est.coef_, est.intercept_)
        return est


def path_order(points: list[dict[str, Any]], key: str) -> list[int]:
    """Indices of ``points`` from the strongest regularization (smallest ``key``) up."""
    return sorted(range(len(points)), key=lambda i: (math.log(points[i][key]), i))
