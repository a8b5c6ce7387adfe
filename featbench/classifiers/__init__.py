"""Linear classifiers (and a small MLP) on standardized features, and their grids.

``get_classifier("linear-svm")`` returns ``Pipeline([("scale", StandardScaler()),
("clf", LinearSVC())])``; :data:`GRIDS` holds the regularization values tried on
the validation split (see :mod:`featbench.classifiers.tuning`).
"""

from __future__ import annotations

from typing import Any

from sklearn.base import clone
from sklearn.linear_model import RidgeClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..constraints import IntSequence, StrOptions, positive_int, positive_real
from ..features import set_params_checked
from ..registry import Registry
from ..runtime import AUTO_CUDA_MIN_SIZE
from .linear_svm import SOLVERS, LinearSVM
from .torch_logreg import SOLVERS as LOGREG_SOLVERS
from .torch_logreg import LogReg
from .torch_mlp import MLP

CLASSIFIERS = Registry("classifier")

#: iteration limit of the iterative solvers (liblinear, L-BFGS): the study's fits that
#: stopped at 1,000 (k-means features + linear SVM at C = 0.01) need more
MAX_ITER = 5000

#: Values of the regularization parameter tried on the validation split.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "linear-svm": {"C": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
    "logreg": {"C": [1e-3, 1e-2, 1e-1, 1.0, 10.0]},
    "ridge": {"alpha": [1e-1, 1.0, 1e1, 1e2, 1e3, 1e4]},
    "mlp": {"alpha": [1e-4, 1e-2, 1.0]},
}


@CLASSIFIERS.register(
    "linear-svm", "Linear SVM, one-vs-rest squared hinge (LinearSVC's objective; torch L-BFGS "
    "above 512 features, on CUDA for large problems).",
    {"C": [positive_real()], "solver": [StrOptions(set(SOLVERS))], "max_iter": [positive_int()],
     "tol": [positive_real()], "intercept_scaling": [positive_real()],
     "random_state": ["random_state"], "device": [str]},
)
def linear_svm(random_state: int | None = 0) -> LinearSVM:
    """Linear SVM: liblinear's primal solver, or L-BFGS in torch for many features."""
    return LinearSVM(max_iter=MAX_ITER, random_state=random_state)


@CLASSIFIERS.register(
    "logreg", "Multinomial logistic regression (scikit-learn's lbfgs; torch L-BFGS on CUDA for "
    "large problems).",
    {"C": [positive_real()], "solver": [StrOptions(set(LOGREG_SOLVERS))],
     "max_iter": [positive_int()], "tol": [positive_real()], "random_state": ["random_state"],
     "device": [str], "class_weight": [None, StrOptions({"balanced"}), dict]},
)
def logreg(random_state: int | None = 0) -> LogReg:
    """Multinomial (softmax) logistic regression: ``LogisticRegression`` on the CPU."""
    return LogReg(max_iter=MAX_ITER, random_state=random_state)


@CLASSIFIERS.register("ridge", "Ridge classifier: least squares on +-1 targets.")
def ridge(random_state: int | None = 0) -> RidgeClassifier:
    """Ridge regression on one-vs-all +-1 targets (closed form)."""
    return RidgeClassifier(random_state=random_state)


@CLASSIFIERS.register(
    "mlp", "Two-layer network, 500 ReLU hidden units (CS231n features row): scikit-learn's "
    "MLPClassifier (Adam, early stopping) run in torch, float32.",
    {**MLP._parameter_constraints, "hidden_layer_sizes": [IntSequence()]},
)
def mlp(random_state: int | None = 0) -> MLP:
    """Two-layer ReLU network trained with Adam and early stopping (torch, float32)."""
    return MLP(hidden_layer_sizes=(500,), early_stopping=True, max_iter=200,
               random_state=random_state)


def get_classifier(name: str, random_state: int | None = 0, **params: Any) -> Pipeline:
    """A standardize-then-classify pipeline for the registered classifier ``name``.

    Parameters
    ----------
    name : str
        See ``featbench list classifiers``.
    random_state : int or None
        Seed of the classifier's own random choices.
    **params
        Parameters of the classifier (e.g. ``C=0.01``).

    Examples
    --------
    >>> from featbench import get_classifier
    >>> get_classifier("linear-svm", C=0.01).named_steps["clf"].C
    0.01
    """
    clf = CLASSIFIERS.build(name, random_state=random_state)
    set_params_checked(clf, params, f"classifier {name!r}")
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def resolve_placement(clf: Any, n_samples: int, n_features: int) -> dict[str, str]:
    """Solver and device type a classifier with ``solver="auto"``/``device="auto"`` options
    (``linear-svm``, ``logreg``) fits with on ``n_samples x n_features`` data on this
    machine, and ``default_solver``: what ``solver="auto"`` picks on the CPU (the tables
    show the solver where it differs). ``{}`` for classifiers without these options.

    The runner resolves this once, before the grid, and pins it for every fit of the
    pair (the CUDA threshold of ``device="auto"`` would otherwise be crossed between
    the tuning fits and the refit on more rows).
    """
    place = getattr(clf, "_placement", None)
    if place is None:
        return {}
    solver, device = place(n_samples, n_features)
    cpu = clone(clf).set_params(solver="auto", device="cpu")
    return {"solver": solver, "device": device.type,
            "default_solver": cpu._placement(n_samples, n_features)[0]}


def large_fit_placement(clf: Any) -> dict[str, str]:
    """Solver and device type of a large fit (at the size from which ``device="auto"``
    takes CUDA, with more than 512 features) of ``clf`` on this machine: what a study
    key holds, since it is made before the features' size is known. ``{}`` for
    classifiers without solver and device options."""
    if getattr(clf, "_placement", None) is None:
        return {}
    n_features = 1024
    out = resolve_placement(clf, -(-AUTO_CUDA_MIN_SIZE // n_features), n_features)
    out.pop("default_solver")
    return out


def default_grid(name: str) -> dict[str, list[Any]]:
    """The grid tried for ``name`` (a copy), keyed by classifier parameter."""
    CLASSIFIERS.get(name)  # unknown names raise with the list of valid ones
    return {k: list(v) for k, v in GRIDS.get(name, {}).items()}


__all__ = ["CLASSIFIERS", "GRIDS", "default_grid", "get_classifier", "large_fit_placement",
           "resolve_placement"]
