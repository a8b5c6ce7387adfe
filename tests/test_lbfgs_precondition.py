"""The Gram-preconditioned L-BFGS reaches the same optimum, by the same rule, in fewer steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from featbench.classifiers import get_classifier
from featbench.classifiers.lbfgs import cholesky_factor, minimize
from featbench.classifiers.linear_svm import LinearSVM, squared_hinge_objective
from featbench.classifiers.path import Design, PathFitter
from featbench.classifiers.torch_logreg import LogReg, logistic_objective
from featbench.errors import ParameterError
from featbench.plan import classifier_setup


@pytest.fixture(scope="module")
def correlated():
    """Features like pooled encodings: 120 correlated columns (a few latent factors plus
    noise), so that plain L-BFGS needs many iterations at large C."""
    rng = np.random.default_rng(0)
    n, d, k = 1500, 120, 8
    Z = rng.normal(size=(n, k))
    X = Z @ rng.normal(size=(k, d)) + 0.05 * rng.normal(size=(n, d))
    y = (X @ rng.normal(size=(d, 4)) + 2 * rng.normal(size=(n, 4))).argmax(1)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def test_cholesky_factor_of_the_model_hessian():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(50, 20)).astype(np.float32)
    gram = torch.from_numpy(A.T @ A / 50)
    L = cholesky_factor(gram, 1e-3, 0.25).double().numpy()
    assert np.allclose(np.triu(L, 1), 0)
    expected = 0.25 * (A.T.astype(np.float64) @ A / 50) + 1e-3 * np.eye(20)
    np.testing.assert_allclose(L @ L.T, expected, rtol=1e-5, atol=1e-6)


def test_design_gram_is_xtx_over_n():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 7)).astype(np.float32)
    design = Design(X)
    np.testing.assert_allclose(design.gram().numpy(), X.T.astype(np.float64) @ X / 300,
                               rtol=1e-5, atol=1e-5)
    assert design.gram() is design.gram()  # computed once per copy of the features
    assert design.factor(0.1, 1.0, "none") is None
    assert Design(X[:5]).factor(0.1, 1.0, "auto") is None  # fewer samples than features
    assert Design(X[:5]).factor(0.1, 1.0, "gram") is not None


def test_minimize_stops_on_the_gradient_in_w_not_in_the_whitened_variables():
    # f(W) = 0.5 (W - A)^T H (W - A) with a badly conditioned H: the rule must hold for
    # the gradient H (W - A) itself, whatever the preconditioner
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    H = torch.from_numpy((Q * np.logspace(-3, 2, 30)) @ Q.T).float()
    A = torch.from_numpy(rng.normal(size=(30, 2))).float()

    def fun_grad(W, b):
        R = W - A
        G = H @ R
        return 0.5 * (R * G).sum(dtype=torch.float64) + 0.5 * (b * b).sum(), G, b.clone()

    for factor in (None, cholesky_factor(H, 1e-4, 1.0)):
        W, b, n_iter = minimize(fun_grad, torch.zeros(30, 2), torch.ones(2), gtol=1e-4,
                                max_iter=2000, factor=factor)
        grad = H.double() @ (W.double() - A.double())
        assert float(grad.abs().max()) <= 1e-4 and float(b.abs().max()) <= 1e-4
    # the exact Hessian as preconditioner: a quadratic is solved in a step or two
    assert n_iter <= 3


@pytest.mark.parametrize("kind", ["logreg", "linear-svm"])
def test_preconditioned_fit_lands_nearer_the_float64_optimum(correlated, kind):
    # at C = 100 the problem is badly conditioned: the same gradient rule stops plain
    # L-BFGS (and scikit-learn's lbfgs at its default tol) about 1 % above the optimum of
    # logreg, and the preconditioned one within 0.1-0.2 %; the SVM's L-BFGS needs 28x fewer
    # iterations (25 against 707 on this machine)
    X, y = correlated
    C = 100.0
    if kind == "logreg":
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=100_000).fit(X.astype(np.float64), y)
        best = logistic_objective(ref.coef_, ref.intercept_, X, y, C)
    else:
        ref = LinearSVC(C=C, dual=False, tol=1e-10, max_iter=100_000).fit(
            X.astype(np.float64), y)
        Y = np.where(y[:, None] == ref.classes_[None, :], 1.0, -1.0)
        best = squared_hinge_objective(ref.coef_, ref.intercept_, X, Y, C)
    gap, iters = {}, {}
    for precondition in ("none", "gram"):
        if kind == "logreg":
            est = LogReg(C=C, solver="torch", device="cpu", max_iter=20_000,
                         precondition=precondition).fit(X, y)
            value = logistic_objective(est.coef_, est.intercept_, X, y, C)
        else:
            est = LinearSVM(C=C, solver="lbfgs", device="cpu", max_iter=20_000,
                            precondition=precondition).fit(X, y)
            value = squared_hinge_objective(est.coef_, est.intercept_, X, Y, C)
        gap[precondition] = (value - best) / best
        iters[precondition] = int(np.max(est.n_iter_))
    assert -1e-6 < gap["gram"] < 2e-3, gap
    if kind == "logreg":
        assert gap["gram"] < gap["none"] / 5, gap
    else:
        assert gap["none"] < 1e-3, gap
        assert iters["gram"] * 10 < iters["none"], iters


def test_precondition_is_a_declared_parameter():
    pipe, _ = classifier_setup("logreg", {"precondition": "none"}, 0)
    assert pipe.named_steps["clf"].precondition == "none"
    with pytest.raises(ParameterError, match="precondition"):
        classifier_setup("linear-svm", {"precondition": "cholesky"}, 0)


def test_refit_gram_equals_the_gram_of_all_rows_standardized_again():
    rng = np.random.default_rng(4)
    X = (rng.normal(size=(400, 9)) * rng.uniform(0.5, 20, 9) + rng.normal(0, 5, 9)
         ).astype(np.float32)
    X[:, 3] = 7.0  # a constant column: StandardScaler's scale 1
    val = np.zeros(400, bool)
    val[rng.choice(400, 60, replace=False)] = True
    fitter = PathFitter(get_classifier("logreg", solver="torch", device="cpu"), X[~val],
                        np.arange(340) % 3, X[val])
    assert fitter.refit_gram(X, val) is None  # the path has not computed its own
    fitter.fit(0.1)
    Z = StandardScaler().fit_transform(X.astype(np.float64))
    np.testing.assert_allclose(fitter.refit_gram(X, val).double().numpy(), Z.T @ Z / 400,
                               rtol=1e-4, atol=1e-5)


def test_refit_gram_only_for_a_centering_scaler():
    rng = np.random.default_rng(5)
    X = rng.normal(3.0, 2.0, size=(200, 6)).astype(np.float32)
    val = np.arange(200) < 30
    pipe = get_classifier("logreg", solver="torch", device="cpu")
    pipe.set_params(scale=StandardScaler(with_mean=False))
    fitter = PathFitter(pipe, X[~val], np.arange(170) % 2, X[val])
    fitter.fit(0.1)
    assert fitter.design.known_gram is not None
    assert fitter.refit_gram(X, val) is None  # its formula would center the rows
