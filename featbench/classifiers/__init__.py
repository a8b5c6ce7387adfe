"""Linear classifiers (and a small MLP) on standardized features, and their grids.

``get_classifier("linear-svm")`` returns ``Pipeline([("scale", StandardScaler()),
("clf", LinearSVC())])``; :data:`GRIDS` holds the regularization values tried on
the validation split (see :mod:`featbench.classifiers.tuning`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..features import set_params_checked
from ..registry import Registry

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

CLASSIFIERS = Registry("classifier", plugin_group="featbench.classifiers")

#: iteration limit of the iterative solvers (liblinear, L-BFGS): the study's fits that
#: stopped at 1,000 (k-means features + linear SVM at C = 0.01) need more
MAX_ITER = 5000

#: Values of the regularization parameter tried on the validation split.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "linear-svm": {"C": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
    "logreg": {"C": [1e-3, 1e-2, 1e-1, 1.0, 10.0]},
    "ridge": {"alpha": [1e-1, 1.0, 1e1, 1e2, 1e3, 1e4]},
    "mlp": {"alpha": [1e-4, 1e-2, 1.0]},
    # DINO's and dinov2's k-NN evaluation: k in 10, 20, 100, 200 (integers; at most the
    # training vectors: see featbench.classifiers.tuning.DATA_BOUNDS)
    "knn": {"n_neighbors": [10, 20, 100, 200]},
}

#: classifiers that read the features as they are (no StandardScaler before them): k-NN
#: normalizes each vector to unit length itself; own-head is the network's own layer
UNSCALED = ("knn", "own-head")


#: public names of the implementation modules, imported on first use (PEP 562) so that
#: ``featbench list`` and ``describe`` import neither torch nor scikit-learn
_LAZY = {"LinearSVM": ".linear_svm", "SOLVERS": ".linear_svm", "LogReg": ".torch_logreg",
         "MLP": ".torch_mlp", "OwnHead": ".own_head", "KNN": ".knn",
         "LOGREG_SOLVERS": ".torch_logreg", "AUTO_CUDA_MIN_SIZE": "..runtime"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        return getattr(module, "SOLVERS" if name == "LOGREG_SOLVERS" else name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _constraints(name: str):
    """The constraints of classifier ``name``, built on first use (they need
    scikit-learn's constraint classes and the solvers of the implementation modules)."""

    def declared() -> dict[str, list]:
        from ..constraints import IntSequence, StrOptions, positive_int, positive_real
        from .linear_svm import SOLVERS
        from .path import PRECONDITION
        from .torch_logreg import SOLVERS as LOGREG_SOLVERS

        if name == "mlp":
            from .torch_mlp import MLP

            return {**MLP._parameter_constraints, "hidden_layer_sizes": [IntSequence()]}
        if name == "knn":
            return {"n_neighbors": [positive_int()], "temperature": [positive_real()],
                    "device": [str], "random_state": ["random_state"]}

        return {
            "linear-svm": {
                "C": [positive_real()], "solver": [StrOptions(set(SOLVERS))],
                "max_iter": [positive_int()], "tol": [positive_real()],
                "intercept_scaling": [positive_real()], "random_state": ["random_state"],
                "device": [str], "precondition": [StrOptions(set(PRECONDITION))]},
            "logreg": {
                "C": [positive_real()], "solver": [StrOptions(set(LOGREG_SOLVERS))],
                "max_iter": [positive_int()], "tol": [positive_real()],
                "random_state": ["random_state"], "device": [str],
                "class_weight": [None, StrOptions({"balanced"}), dict],
                "precondition": [StrOptions(set(PRECONDITION))]},
        }[name]

    return declared


# Linear SVM: L-BFGS in torch (float32, warm-started along the grid), or liblinear.
CLASSIFIERS.register_class(
    "linear-svm", "featbench.classifiers.linear_svm:LinearSVM",
    "Linear SVM, one-vs-rest squared hinge (LinearSVC's objective) by full-batch L-BFGS in "
    "torch, float32, on CUDA for large problems; solver=liblinear for LinearSVC itself.",
    _constraints("linear-svm"), max_iter=MAX_ITER, random_state=0)
# Multinomial (softmax) logistic regression: torch L-BFGS, or LogisticRegression itself.
CLASSIFIERS.register_class(
    "logreg", "featbench.classifiers.torch_logreg:LogReg",
    "Multinomial logistic regression (LogisticRegression's objective) by full-batch L-BFGS in "
    "torch, float32, on CUDA for large problems; solver=sklearn for LogisticRegression itself.",
    _constraints("logreg"), max_iter=MAX_ITER, random_state=0)
# Ridge regression on one-vs-all +-1 targets (closed form).
CLASSIFIERS.register_class("ridge", "sklearn.linear_model:RidgeClassifier",
                           "Ridge classifier: least squares on +-1 targets.", random_state=0)
# Two-layer ReLU network trained with Adam and early stopping, MLPClassifier's algorithm.
CLASSIFIERS.register_class(
    "mlp", "featbench.classifiers.torch_mlp:MLP",
    "Two-layer network, 500 ReLU hidden units (CS231n features row): scikit-learn's "
    "MLPClassifier (Adam, early stopping) run in torch, float32; solver=sklearn for "
    "MLPClassifier itself.",
    _constraints("mlp"), hidden_layer_sizes=(500,), early_stopping=True, max_iter=200,
    random_state=0)


# k-NN evaluation (DINO / dinov2): cosine similarity, temperature-weighted votes.
CLASSIFIERS.register_class(
    "knn", "featbench.classifiers.knn:KNN",
    "k-nearest neighbours on L2-normalized features, cosine similarity, votes weighted by "
    "exp(similarity / 0.07): the k-NN evaluation of DINO and dinov2; k chosen on validation.",
    _constraints("knn"), random_state=0)
# The trained head of a convnet:<arch> extractor: the ConvNet end to end (no fit, no grid).
CLASSIFIERS.register_class(
    "own-head", "featbench.classifiers.own_head:OwnHead",
    "The ConvNet end to end: a convnet:<arch> extractor's own trained softmax head on its "
    "features (test-time flip where the architecture has it); nothing fitted or tuned.",
    {"tta": [None, bool], "random_state": ["random_state"]}, random_state=0)

#: classifiers that need the fitted extractor rather than fitting on its features
OWN_HEAD = "own-head"


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
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    clf = CLASSIFIERS.build(name, random_state=random_state)
    set_params_checked(clf, params, f"classifier {name!r}")
    return Pipeline([("scale", "passthrough" if name in UNSCALED else StandardScaler()),
                     ("clf", clf)])


def resolve_placement(clf: Any, n_samples: int, n_features: int) -> dict[str, str]:
    """Solver and device type a classifier with ``solver="auto"``/``device="auto"`` options
    (``linear-svm``, ``logreg``, ``mlp``) fits with on ``n_samples x n_features`` data on this
    machine, and ``default_solver``: what ``solver="auto"`` picks on the CPU (the tables
    show the solver where it differs). ``{}`` for classifiers without these options.

    The runner resolves this once, before the grid, and pins it for every fit of the
    pair (the CUDA threshold of ``device="auto"`` would otherwise be crossed between
    the tuning fits and the refit on more rows).
    """
    place = getattr(clf, "_placement", None)
    if place is None:
        return {}
    from sklearn.base import clone

    solver, device = place(n_samples, n_features)
    cpu = clone(clf).set_params(solver="auto", device="cpu")
    return {"solver": solver, "device": device.type,
            "default_solver": cpu._placement(n_samples, n_features)[0]}


def large_fit_placement(clf: Any) -> dict[str, str]:
    """Solver and device type of a large fit (at the size from which ``device="auto"``
    takes CUDA, with 1,024 features) of ``clf`` on this machine: what a study
    key holds, since it is made before the features' size is known. ``{}`` for
    classifiers without solver and device options."""
    if getattr(clf, "_placement", None) is None:
        return {}
    from ..runtime import AUTO_CUDA_MIN_SIZE

    n_features = 1024
    out = resolve_placement(clf, -(-AUTO_CUDA_MIN_SIZE // n_features), n_features)
    out.pop("default_solver")
    return out


def default_grid(name: str) -> dict[str, list[Any]]:
    """The grid tried for ``name`` (a copy), keyed by classifier parameter."""
    CLASSIFIERS.get(name)  # unknown names raise with the list of valid ones
    return {k: list(v) for k, v in GRIDS.get(name, {}).items()}


__all__ = ["CLASSIFIERS", "GRIDS", "OWN_HEAD", "UNSCALED", "default_grid", "get_classifier",
           "large_fit_placement", "resolve_placement"]
