"""Linear SVM: a batched L-BFGS solver in torch (the default), or liblinear.

Both minimize liblinear's primal L2-regularized squared-hinge objective,
one-vs-rest, with the bias as an extra (regularized) feature, exactly as
:class:`sklearn.svm.LinearSVC` does. liblinear's trust-region Newton solver is
fast for a few hundred features but takes minutes to hours on thousands of
correlated features (raw pixels, k-means or Fisher encodings of 50,000 images);
the torch solver optimizes all classes at once with full-batch matrix products
and L-BFGS, warm-started along the grid of C (:mod:`featbench.classifiers.path`) and
preconditioned by the features' Gram matrix (:mod:`featbench.classifiers.lbfgs`: 1,600
k-means features of 49,000 images at C = 0.1 in 70 iterations instead of 2,505), and
agrees with liblinear (tests compare them). Where the code departs from
liblinear: float32 arithmetic and L-BFGS instead of a trust-region Newton method, and
the stopping rule: the largest gradient entry below ``tol`` times its largest entry at
zero (liblinear's primal solver compares the gradient's 2-norm with ``tol`` times its
norm at zero, scaled by the smaller class's share).
It runs on the CPU, or on a GPU (``device``; "auto" takes CUDA for large problems, see
:func:`featbench.runtime.fit_device`).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.svm import LinearSVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ..errors import ParameterError
from ..runtime import fit_device
from . import lbfgs
from .path import Design

SOLVERS = ("auto", "liblinear", "lbfgs")


def squared_hinge_objective(coef: np.ndarray, intercept: np.ndarray, X: np.ndarray,
                            Y: np.ndarray, C: float, intercept_scaling: float = 1.0) -> float:
    """LinearSVC's primal objective summed over the one-vs-rest problems, in float64.

    ``0.5 (||w_k||^2 + (b_k / s)^2) + C sum_i max(0, 1 - Y_ik (w_k.x_i + b_k))^2`` for
    every column ``k`` of the +-1 targets ``Y``; the bias ``b_k = s w_b`` is the weight
    of a constant feature ``s`` (``intercept_scaling``), so it is penalized through it.
    """
    coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
    margin = 1.0 - Y * (np.asarray(X, np.float64) @ coef.T + intercept)
    hinge = np.maximum(margin, 0.0)
    penalty = (coef * coef).sum() + ((intercept / intercept_scaling) ** 2).sum()
    return float(0.5 * penalty + C * (hinge * hinge).sum())


def fit_squared_hinge_lbfgs(X: np.ndarray | Design, Y: np.ndarray, C: float,
                            intercept_scaling: float, max_iter: int, tol: float,
                            device: torch.device | str = "cpu",
                            init: tuple[np.ndarray, np.ndarray] | None = None,
                            precondition: str = "auto", gram: torch.Tensor | None = None
                            ) -> tuple[np.ndarray, np.ndarray, int]:
    """Minimize ``0.5 ||w||^2 + C sum_i max(0, 1 - y_i w.[x_i, s])^2`` for every column of Y.

    In float32 on ``device`` (X is copied there once, with a row-major copy of its
    transpose, unless it is a :class:`~featbench.classifiers.path.Design` there
    already). L-BFGS starts from ``init`` (``(coef, intercept)``: a warm start) or
    zero; the stopping rule does not depend on where it starts (the gradient at
    zero sets its scale). ``precondition`` as :class:`LinearSVM`'s. Returns ``coef``
    (K, d), ``intercept`` (K,) and the number of iterations.
    """
    device = torch.device(device)
    design = Design.of(X, device)
    if design is not X:
        design.set_gram(gram)
    n, d = design.shape
    # a row-major copy of X^T: the gradient X^T G reads it 5-10x faster than X.T
    Xt, XtT = design.X, design.XT
    Yt = torch.from_numpy(Y.astype(np.float32)).to(device)
    K = Y.shape[1]
    # the bias is the weight of the constant feature intercept_scaling
    W, b = lbfgs.start_point(None if init is None else
                             (init[0], np.asarray(init[1]) / intercept_scaling), d, K, device)
    # the objective divided by C n (same minimizer, gradients of order one)
    scale = 1.0 / (C * n)
    # stop when the gradient is tol times its size at w = 0 (liblinear's criterion):
    # at w = 0 the gradient is -2/n sum_i y_i [x_i, s]
    g0 = torch.cat([(XtT @ Yt).abs().flatten(), (Yt.sum(0) * intercept_scaling).abs()])
    g0 = float(2.0 * g0.max() / n) or 1.0

    def fun_grad(W: torch.Tensor, b: torch.Tensor):
        # loss and its gradient by hand (autograd would compute X.T @ G from X)
        active = torch.relu(1.0 - Yt * (Xt @ W + b * intercept_scaling))
        value = 0.5 * scale * ((W * W).sum(dtype=torch.float64)
                               + (b * b).sum(dtype=torch.float64)) \
            + (active * active).sum(dtype=torch.float64) / n
        G = active.mul_(Yt).mul_(-2.0 / n)  # d loss / d score
        return value, scale * W + XtT @ G, scale * b + G.sum(0) * intercept_scaling

    # the squared hinge's curvature: 2 where a margin is active (about half the samples)
    factor = design.factor(scale, 1.0, precondition)
    W, b, n_iter = lbfgs.minimize(fun_grad, W, b, gtol=tol * g0, max_iter=max_iter,
                                  factor=factor)
    return (W.cpu().numpy().T.astype(np.float64),
            (b.cpu().numpy() * intercept_scaling).astype(np.float64), n_iter)


class LinearSVM(LinearClassifierMixin, ClassifierMixin, BaseEstimator):
    """One-vs-rest linear SVM with squared hinge loss (the objective of ``LinearSVC``).

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularization strength.
    solver : {"auto", "liblinear", "lbfgs"}, default="auto"
        "liblinear": :class:`sklearn.svm.LinearSVC` in the primal; "lbfgs": full-batch
        L-BFGS in torch over all classes at once, in float32; "auto": lbfgs (before
        featbench 0.3: liblinear up to 512 features on the CPU).
    max_iter : int, default=1000
        Iteration limit of the solver (L-BFGS iterations; liblinear's own count with
        ``solver="liblinear"``); a fit that reaches it is flagged ``iter-limit`` in tables.
    tol : float, default=1e-4
        Stopping tolerance: L-BFGS stops when the largest gradient entry is at most
        ``tol`` times the largest entry of the gradient at zero (liblinear compares the
        gradient's 2-norm in the same way).
    intercept_scaling : float, default=1.0
        Value of the constant feature that carries the (regularized) bias.
    random_state : int or None, default=None
        Passed to liblinear.
    device : str, default="auto"
        Where the lbfgs solver runs: "cpu", "cuda", "cuda:N", "mps", or "auto": CUDA
        when it is available, the solver is lbfgs and ``n_samples * n_features`` is at
        least :data:`featbench.runtime.AUTO_CUDA_MIN_SIZE`, else the CPU (so on a
        machine without CUDA, "auto" fits exactly as the CPU always did). liblinear
        runs on the CPU only.
    precondition : {"auto", "gram", "none"}, default="auto"
        How L-BFGS is preconditioned (the minimizer and the stopping rule do not depend
        on it): "gram" by the features' Gram matrix (:mod:`featbench.classifiers.lbfgs`),
        "none" not at all, "auto" "gram" unless there are fewer samples than features.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features) or (1, n_features)
    intercept_ : ndarray
    classes_ : ndarray
    solver_ : str
        The solver used.
    device_ : str
        The device it ran on ("cpu" for liblinear).
    n_iter_ : int

    References
    ----------
    .. [1] R.-E. Fan et al., "LIBLINEAR: A library for large linear classification",
       JMLR 9, 2008.
    .. [2] D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large
       scale optimization", Math. Programming 45, 1989.
    """

    def __init__(self, C: float = 1.0, solver: str = "auto", max_iter: int = 1000,
                 tol: float = 1e-4, intercept_scaling: float = 1.0,
                 random_state: int | None = None, device: str = "auto",
                 precondition: str = "auto") -> None:
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.intercept_scaling = intercept_scaling
        self.random_state = random_state
        self.device = device
        self.precondition = precondition

    def _placement(self, n_samples: int, n_features: int) -> tuple[str, torch.device]:
        """The solver and device of a fit on ``n_samples x n_features`` data."""
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}; got {self.solver!r}")
        solver = self.solver
        if solver == "auto":
            solver = "lbfgs"
        if self.device == "auto":
            if solver == "liblinear":
                return solver, torch.device("cpu")
            return solver, fit_device("auto", n_samples * n_features)
        device = fit_device(str(self.device), n_samples * n_features)
        if device.type != "cpu":
            if self.solver == "liblinear":
                raise ParameterError(f"solver 'liblinear' runs on the CPU only; got device "
                                     f"{self.device!r} (use solver='lbfgs' or 'auto')")
            solver = "lbfgs"
        return solver, device

    def warm_startable(self, n_samples: int, n_features: int) -> bool:
        """Whether a fit of this shape runs L-BFGS, which can start from a given
        solution (:mod:`featbench.classifiers.path`); liblinear cannot."""
        return self._placement(n_samples, n_features)[0] == "lbfgs"

    def fit_design(self, design: Design, y, init=None):
        """Fit with L-BFGS on a shared :class:`~featbench.classifiers.path.Design`
        (standardized features already on the device), starting from ``init``."""
        y = np.asarray(y)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        self.n_features_in_ = design.shape[1]
        self.solver_, self.device_ = "lbfgs", str(design.device)
        return self._fit_lbfgs(design, y, design.device, init)

    def _fit_lbfgs(self, X, y: np.ndarray, device: torch.device, init, gram=None
                   ) -> LinearSVM:
        if len(self.classes_) < 2:
            raise ValueError(f"LinearSVM needs at least 2 classes in y; got one class: "
                             f"{self.classes_[0]!r}")
        if len(self.classes_) == 2:
            Y = np.where(y == self.classes_[1], 1.0, -1.0)[:, None]
        else:
            Y = np.where(y[:, None] == self.classes_[None, :], 1.0, -1.0)
        self.coef_, self.intercept_, self.n_iter_ = fit_squared_hinge_lbfgs(
            X, Y, self.C, self.intercept_scaling, self.max_iter, self.tol, device, init=init,
            precondition=self.precondition, gram=gram)
        return self

    def fit(self, X, y, init=None, gram=None):
        """Fit on features ``X`` and labels ``y``; L-BFGS starts from ``init``
        (``(coef, intercept)``, e.g. a solution at a nearby C) when given, and
        preconditions with ``gram`` (``X^T X / n``, a torch tensor) when given instead of
        computing it (:meth:`~featbench.classifiers.path.PathFitter.refit_gram`)."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"LinearSVM needs at least 2 classes in y; got one class: "
                             f"{self.classes_[0]!r}")
        solver, device = self._placement(*X.shape)
        self.solver_, self.device_ = solver, str(device)
        if solver == "liblinear":
            svc = LinearSVC(C=self.C, dual=False, max_iter=self.max_iter, tol=self.tol,
                            intercept_scaling=self.intercept_scaling,
                            random_state=self.random_state).fit(X, y)
            self.coef_, self.intercept_ = svc.coef_, svc.intercept_
            self.n_iter_ = int(svc.n_iter_)
            return self
        return self._fit_lbfgs(X, y, device, init, gram)
