"""Multinomial logistic regression by full-batch L-BFGS in torch (or scikit-learn's lbfgs).

:class:`LogReg` minimizes exactly the objective of
:class:`sklearn.linear_model.LogisticRegression` with its default L2 penalty,

.. math::

    \\tfrac12 \\lVert W \\rVert_F^2 + C \\sum_i s_i \\, \\ell(x_i W^\\top + b, y_i),

where :math:`\\ell` is the softmax cross-entropy (multinomial) for more than two
classes and the logistic loss of a single coefficient vector for two (the intercept
``b`` is not penalized), and :math:`s_i = w_{y_i}` is the weight of sample ``i``'s
class (``class_weight``: all 1 by default; ``"balanced"`` gives class ``k`` the weight
``n / (K n_k)``, as :func:`sklearn.utils.class_weight.compute_class_weight`).
scikit-learn solves it with SciPy's L-BFGS-B in float64 on the CPU; the torch solver
here runs full-batch L-BFGS in float32 on any torch device with the same stopping rule
(the largest gradient entry of the objective divided by :math:`C \\sum_i s_i` below
``tol``), so a 50,000 x 6,400 problem that takes minutes on a few CPU cores fits in
seconds on a GPU. ``solver="auto"`` takes the torch solver on every device: in float32,
with warm starts along a grid of C (:mod:`featbench.classifiers.path`) and L-BFGS
preconditioned by the features' Gram matrix (:mod:`featbench.classifiers.lbfgs`), it fits
HOG features of 49,000 CIFAR-10 images 5x faster than ``LogisticRegression``
cold-started at each C on 2 cores (``benchmarks/speed.py``), at objectives equal to
float32 precision.
``solver="sklearn"`` gives ``LogisticRegression`` itself, bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.extmath import softmax
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ParameterError
from ..runtime import fit_device
from . import lbfgs
from .path import Design

SOLVERS = ("auto", "sklearn", "torch")


def logistic_objective(coef: np.ndarray, intercept: np.ndarray, X: np.ndarray,
                       y_index: np.ndarray, C: float,
                       sample_weight: np.ndarray | None = None) -> float:
    """LogisticRegression's L2 objective ``0.5 ||coef||^2 + C sum_i s_i loss_i``, in float64.

    ``coef`` is ``(1, d)`` (binary: logistic loss, class 1 positive) or ``(K, d)``
    (softmax cross-entropy); ``y_index`` holds each sample's class index;
    ``sample_weight`` the weights ``s_i`` (all 1 when None; scikit-learn's
    ``class_weight`` is ``sample_weight = w[y_index]``).
    """
    coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
    raw = np.asarray(X, np.float64) @ coef.T + intercept
    if coef.shape[0] == 1:
        z = raw[:, 0]
        loss = np.logaddexp(0.0, z) - (y_index == 1) * z
    else:
        top = raw.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(raw - top).sum(axis=1))
        loss = lse - raw[np.arange(len(raw)), y_index]
    if sample_weight is not None:
        loss = np.asarray(sample_weight, np.float64) * loss
    return float(0.5 * (coef * coef).sum() + C * loss.sum())


def fit_logistic_lbfgs(X: np.ndarray | Design, y_index: np.ndarray, n_classes: int, C: float,
                       max_iter: int, tol: float, device: torch.device | str = "cpu",
                       sample_weight: np.ndarray | None = None,
                       init: tuple[np.ndarray, np.ndarray] | None = None,
                       precondition: str = "auto", gram: torch.Tensor | None = None
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """Minimize :func:`logistic_objective` with full-batch L-BFGS in float32 on ``device``.

    Parameters
    ----------
    X : ndarray of shape (n, d), or Design
        Copied once to ``device`` (and a row-major copy of its transpose for the
        gradient ``X^T G``), unless it is a :class:`~featbench.classifiers.path.Design`
        already there (shared by the fits of a regularization path).
    y_index : ndarray of shape (n,)
        Class index of each sample, in ``range(n_classes)``.
    n_classes : int
        Two: one coefficient vector and the logistic loss (class 1 positive), as
        scikit-learn fits binary problems; more: softmax cross-entropy.
    C, max_iter, tol : float, int, float
        As :class:`sklearn.linear_model.LogisticRegression`: L-BFGS stops when the
        largest gradient entry of the objective divided by ``C sum_i s_i`` (``C n``
        without weights) is at most ``tol`` (scikit-learn's ``gtol``), or after
        ``max_iter`` iterations.
    device : torch.device or str
    sample_weight : ndarray of shape (n,), optional
        Non-negative weight ``s_i`` of each sample's loss (None: all 1), as
        scikit-learn's ``sample_weight``; ``class_weight`` is ``w[y_index]``.
    init : (coef, intercept), optional
        Where L-BFGS starts (a warm start, e.g. the solution at a nearby ``C``);
        default zero.
    precondition : {"auto", "gram", "none"}
        "gram": L-BFGS in variables whitened by the features' Gram matrix
        (:mod:`featbench.classifiers.lbfgs`; the same minimizer in a tenth of the
        iterations on thousands of correlated features); "auto": "gram" unless there
        are fewer samples than features; "none": plain L-BFGS.

    Returns
    -------
    coef : ndarray of shape (1 or n_classes, d)
    intercept : ndarray of shape (1 or n_classes,)
    n_iter : int

    References
    ----------
    .. [1] D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large
       scale optimization", Math. Programming 45, 1989.
    """
    device = torch.device(device)
    design = Design.of(X, device)
    if design is not X:
        design.set_gram(gram)
    n, d = design.shape
    K = 1 if n_classes == 2 else n_classes
    Xt, XtT = design.X, design.XT  # X^T G reads a row-major copy several times faster
    labels = torch.from_numpy(np.asarray(y_index, dtype=np.int64)).to(device)
    if K == 1:
        T = (labels == 1).to(torch.float32)[:, None]
    else:
        T = torch.nn.functional.one_hot(labels, K).to(torch.float32)
    if sample_weight is None:
        sw, sw_sum = None, float(n)
    else:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != (n,):
            raise ValueError(f"sample_weight has shape {sample_weight.shape}; expected ({n},)")
        # scikit-learn sums the weights in X's dtype; float64 here (it differs in the
        # last bits only)
        sw_sum = float(sample_weight.sum())
        if not sw_sum > 0:
            raise ValueError("the sample weights sum to 0 or less")
        sw = torch.from_numpy(sample_weight.astype(np.float32)).to(device)[:, None]
    W, b = lbfgs.start_point(init, d, K, device)
    # the objective divided by C sum_i s_i (C n without weights), as scikit-learn's
    # LinearModelLoss with l2_reg_strength = 1 / (C sw_sum) (same minimizer, and tol
    # means the same on both)
    scale = 1.0 / (C * sw_sum)

    def fun_grad(W: torch.Tensor, b: torch.Tensor):
        raw = torch.addmm(b, Xt, W)
        if K == 1:
            loss = torch.nn.functional.softplus(raw).sub_(T * raw)
            G = torch.sigmoid(raw).sub_(T)
        else:
            lse = torch.logsumexp(raw, dim=1, keepdim=True)
            loss = lse - (raw * T).sum(1, keepdim=True)
            G = raw.sub_(lse).exp_().sub_(T)  # softmax - one-hot
        if sw is not None:
            loss.mul_(sw)
            G.mul_(sw)
        G.div_(sw_sum)
        value = loss.sum(dtype=torch.float64) / sw_sum \
            + 0.5 * scale * (W * W).sum(dtype=torch.float64)
        return value, scale * W + XtT @ G, G.sum(0)

    # the softmax's curvature is at most 1/2 (1/4 for the logistic loss): 1/4 models it
    factor = design.factor(scale, 0.25, precondition)
    W, b, n_iter = lbfgs.minimize(fun_grad, W, b, gtol=tol, max_iter=max_iter, factor=factor)
    return (W.cpu().numpy().T.astype(np.float64), b.cpu().numpy().astype(np.float64),
            n_iter)


def torch_or_sklearn(solver: str, device: str, size: int) -> tuple[str, torch.device]:
    """The solver ("torch" or "sklearn") and device of a fit on ``size`` numbers, for a
    classifier with ``solver`` in :data:`SOLVERS` ("auto": torch) and ``device`` (see
    :func:`featbench.runtime.fit_device`); scikit-learn runs on the CPU only."""
    if solver not in SOLVERS:
        raise ParameterError(f"solver must be one of {', '.join(SOLVERS)}; got {solver!r}")
    if solver == "sklearn" and device == "auto":
        return "sklearn", torch.device("cpu")
    resolved = fit_device(str(device), size)
    if solver == "sklearn" and resolved.type != "cpu":
        raise ParameterError(f"solver 'sklearn' runs on the CPU only; got device "
                             f"{device!r} (use solver='torch' or 'auto')")
    return ("torch" if solver == "auto" else solver), resolved


class LogReg(LinearClassifierMixin, ClassifierMixin, BaseEstimator):
    """L2-regularized multinomial logistic regression (``LogisticRegression``'s objective).

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularization strength.
    solver : {"auto", "sklearn", "torch"}, default="auto"
        "sklearn": :class:`sklearn.linear_model.LogisticRegression` (lbfgs, float64,
        CPU only); "torch": :func:`fit_logistic_lbfgs` (float32) on ``device``; "auto":
        torch (before featbench 0.3: scikit-learn on the CPU).
    max_iter : int, default=100
        Iteration limit of the solver (L-BFGS iterations, either solver); a fit that
        reaches it is flagged ``iter-limit`` in tables.
    tol : float, default=1e-4
        Both solvers stop when the largest gradient entry of the objective divided by
        ``C sum_i s_i`` (``C n`` without class weights) is at most ``tol``.
    random_state : int or None, default=None
        Passed to scikit-learn (lbfgs does not use it).
    device : str, default="auto"
        "cpu", "cuda", "cuda:N", "mps", or "auto": CUDA when it is available and
        ``n_samples * n_features`` is at least
        :data:`featbench.runtime.AUTO_CUDA_MIN_SIZE`, else the CPU.
    class_weight : dict, "balanced" or None, default=None
        As ``LogisticRegression``'s: each sample's loss is weighted by its class's
        weight, ``{label: weight}`` (labels left out weigh 1), or ``n / (K n_k)`` for
        "balanced" (classes rare in the training data weigh more). None: all 1.
    precondition : {"auto", "gram", "none"}, default="auto"
        How the torch solver's L-BFGS is preconditioned (the minimizer and the stopping
        rule do not depend on it): "gram" by the features' Gram matrix
        (:mod:`featbench.classifiers.lbfgs`), "none" not at all, "auto" "gram" unless
        there are fewer samples than features.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray
    n_iter_ : ndarray of shape (1,)
    solver_ : str
        "sklearn" or "torch": the solver that fitted.
    device_ : str
        The device it fitted on.

    References
    ----------
    .. [1] D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large
       scale optimization", Math. Programming 45, 1989.
    .. [2] C. M. Bishop, "Pattern Recognition and Machine Learning", Springer 2006,
       section 4.3.4 (multiclass logistic regression).
    """

    def __init__(self, C: float = 1.0, solver: str = "auto", max_iter: int = 100,
                 tol: float = 1e-4, random_state: int | None = None,
                 device: str = "auto", class_weight: dict | str | None = None,
                 precondition: str = "auto") -> None:
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.class_weight = class_weight
        self.precondition = precondition

    def _placement(self, n_samples: int, n_features: int) -> tuple[str, torch.device]:
        """The solver and device of a fit on ``n_samples x n_features`` data."""
        return torch_or_sklearn(self.solver, self.device, n_samples * n_features)

    def warm_startable(self, n_samples: int, n_features: int) -> bool:
        """Whether a fit of this shape runs the torch solver, which can start from a
        given solution (:mod:`featbench.classifiers.path`)."""
        return self._placement(n_samples, n_features)[0] == "torch"

    def fit_design(self, design: Design, y, init=None):
        """Fit with the torch solver on a shared :class:`~featbench.classifiers.path.Design`
        (standardized features already on the device), starting from ``init``."""
        y = np.asarray(y)
        self.n_features_in_ = design.shape[1]
        return self._fit_torch(design, y, design.device, init)

    def fit(self, X, y, init=None, gram=None):
        """Fit on features ``X`` and labels ``y``; the torch solver starts from ``init``
        (``(coef, intercept)``, e.g. a solution at a nearby C) when given, and
        preconditions with ``gram`` (``X^T X / n``, a torch tensor) when given instead of
        computing it (:meth:`~featbench.classifiers.path.PathFitter.refit_gram`)."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"LogReg needs samples of at least 2 classes in the data, but "
                             f"the data contains only one class: {classes[0]!r}")
        solver, device = self._placement(*X.shape)
        if solver == "sklearn":
            # the very estimator featbench registered before: on the CPU nothing changes
            lr = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol,
                                    random_state=self.random_state,
                                    class_weight=self.class_weight).fit(X, y)
            self.classes_, self.coef_, self.intercept_ = lr.classes_, lr.coef_, lr.intercept_
            self.n_iter_ = lr.n_iter_
            self.solver_, self.device_ = solver, str(device)
            return self
        return self._fit_torch(X, y, device, init, gram)

    def _fit_torch(self, X, y: np.ndarray, device: torch.device, init, gram=None
                   ) -> LogReg:
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"LogReg needs samples of at least 2 classes in the data, but "
                             f"the data contains only one class: {classes[0]!r}")
        self.classes_ = classes
        y_index = np.searchsorted(classes, y)
        sample_weight = None
        if self.class_weight is not None:
            # scikit-learn's folding of class_weight into per-sample weights
            sample_weight = compute_class_weight(self.class_weight, classes=classes,
                                                 y=y)[y_index]
        self.coef_, self.intercept_, n_iter = fit_logistic_lbfgs(
            X, y_index, len(classes), self.C, self.max_iter, self.tol, device,
            sample_weight=sample_weight, init=init, precondition=self.precondition,
            gram=gram)
        self.n_iter_ = np.array([n_iter], dtype=np.int32)
        self.solver_, self.device_ = "torch", str(device)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax; the logistic function for two classes), as
        ``LogisticRegression.predict_proba``."""
        check_is_fitted(self)
        if len(self.classes_) <= 2:
            return self._predict_proba_lr(X)
        return softmax(self.decision_function(X), copy=False)

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))
