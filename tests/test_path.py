"""Warm-started regularization paths reach the cold-start optimum of every value."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from featbench.classifiers import get_classifier
from featbench.classifiers import path as path_mod
from featbench.classifiers.linear_svm import LinearSVM, squared_hinge_objective
from featbench.classifiers.path import PathFitter
from featbench.classifiers.torch_logreg import LogReg, logistic_objective
from featbench.classifiers.tuning import tune_and_fit

CS = [1e-3, 1e-2, 1e-1, 1.0, 10.0]


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=900, n_features=60, n_informative=20,
                               n_classes=4, class_sep=0.7, random_state=0)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return X, y


def _objective(est, X, y, C) -> float:
    if isinstance(est, LogReg):
        return logistic_objective(est.coef_, est.intercept_, X, np.searchsorted(est.classes_, y),
                                  C)
    Y = np.where(y[:, None] == est.classes_[None, :], 1.0, -1.0)
    return squared_hinge_objective(est.coef_, est.intercept_, X, Y, C)


def _reference(kind: str, X, y, C) -> float:
    """The optimum by scikit-learn in float64, solved far past featbench's tolerance."""
    if kind == "logreg":
        lr = LogisticRegression(C=C, tol=1e-10, max_iter=100_000).fit(X.astype(np.float64), y)
        return logistic_objective(lr.coef_, lr.intercept_, X, y, C)
    svc = LinearSVC(C=C, dual=False, tol=1e-10, max_iter=100_000).fit(X.astype(np.float64), y)
    Y = np.where(y[:, None] == svc.classes_[None, :], 1.0, -1.0)
    return squared_hinge_objective(svc.coef_, svc.intercept_, X, Y, C)


@pytest.mark.parametrize("kind", ["logreg", "linear-svm"])
def test_warm_path_reaches_each_cold_optimum_in_fewer_iterations(problem, kind):
    X, y = problem
    clf = LogReg(solver="torch", device="cpu", max_iter=5000) if kind == "logreg" \
        else LinearSVM(solver="lbfgs", device="cpu", max_iter=5000)
    pipe = get_classifier(kind).set_params(clf=clf)
    fitter = PathFitter(pipe, X, y, X[:10])
    warm_iters, cold_iters = 0, 0
    for C in CS:  # strongest regularization first, each from the last solution
        warm = fitter.fit(C)
        cold = clf.__class__(**{**clf.get_params(), "C": C}).fit(
            fitter.scale.transform(X), y)
        Xs = fitter.scale.transform(X)
        ref = _reference(kind, Xs, y, C)
        for est in (warm, cold):
            # within the solvers' tolerance of the float64 optimum (relative objective)
            assert _objective(est, Xs, y, C) == pytest.approx(ref, rel=2e-4)
        assert _objective(warm, Xs, y, C) == pytest.approx(_objective(cold, Xs, y, C),
                                                           rel=2e-4)
        warm_iters += int(np.max(warm.n_iter_))
        cold_iters += int(np.max(cold.n_iter_))
    assert warm_iters < cold_iters


def test_start_is_the_nearest_stronger_regularization(problem):
    X, y = problem
    pipe = get_classifier("logreg", solver="torch", device="cpu")
    fitter = PathFitter(pipe, X, y, X[:10])
    assert fitter.start(1.0) is None
    fitter.fit(1e-2)
    fitter.fit(1.0)
    assert fitter.start(0.5) is fitter.solutions[1e-2]  # below wins over a nearer above
    assert fitter.start(1e-3) is fitter.solutions[1e-2]  # nothing below: nearest above
    assert fitter.start(100.0) is fitter.solutions[1.0]


@pytest.mark.parametrize("kind, params", [("logreg", {"solver": "torch"}),
                                          ("linear-svm", {"solver": "lbfgs"})])
def test_tuning_fits_the_grid_as_one_path_on_one_copy(problem, kind, params, monkeypatch):
    X, y = problem
    designs, order = [], []
    real_init = path_mod.Design.__init__

    def counting_init(self, *a, **kw):
        designs.append(1)
        real_init(self, *a, **kw)

    monkeypatch.setattr(path_mod.Design, "__init__", counting_init)
    real_fit = PathFitter.fit
    monkeypatch.setattr(PathFitter, "fit",
                        lambda self, C: order.append(C) or real_fit(self, C))
    pipe = get_classifier(kind, device="cpu", **params)
    val = np.zeros(len(y), bool)
    val[::5] = True
    grid = {"C": [1.0, 1e-3, 0.1, 1e-2]}
    res = tune_and_fit(pipe, grid, X, y, val, n_jobs=2, extend=False)
    # one copy of the features for the 4 values of C, one for the refit on train + val
    assert len(designs) == 2
    assert order == sorted(grid["C"])  # fitted from the strongest regularization up
    # the scores stay in the grid's order, and each equals a cold fit's accuracy
    assert [s["params"]["C"] for s in res.val_scores] == grid["C"]
    scaler = StandardScaler().fit(X[~val])
    for s in res.val_scores:
        cold = pipe.named_steps["clf"].__class__(
            **{**pipe.named_steps["clf"].get_params(), "C": s["params"]["C"]})
        cold.fit(scaler.transform(X[~val]), y[~val])
        acc = float(np.mean(cold.predict(scaler.transform(X[val])) == y[val]))
        assert abs(s["val_acc"] - acc) <= 2 / val.sum()  # at most 2 images flip
