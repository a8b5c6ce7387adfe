"""Classifiers, their grids, and the validation protocol."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from featbench import get_classifier
from featbench.classifiers import default_grid
from featbench.classifiers.linear_svm import LinearSVM
from featbench.classifiers.tuning import split_validation, tune_and_fit, validation_size
from featbench.errors import DataError, UnknownNameError


@pytest.mark.parametrize("C", [1e-3, 0.1])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_lbfgs_solver_matches_liblinear(C, n_classes):
    X, y = make_classification(600, 40, n_informative=10, n_classes=n_classes, random_state=0)
    ref = LinearSVC(C=C, dual=False, tol=1e-8, max_iter=10000).fit(X, y)
    ours = LinearSVM(C=C, solver="lbfgs", tol=1e-8, max_iter=3000).fit(X, y)
    assert ours.coef_.shape == ref.coef_.shape and ours.solver_ == "lbfgs"
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-3 * scale)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=2e-2 * scale)
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99


def test_auto_solver_choice():
    # L-BFGS at every size since 0.3 (liblinear only when asked for)
    X, y = make_classification(200, 20, random_state=0)
    assert LinearSVM().fit(X, y).solver_ == "lbfgs"
    assert LinearSVM(solver="liblinear").fit(X, y).solver_ == "liblinear"
    X2, y2 = make_classification(200, 600, random_state=0)
    assert LinearSVM(C=0.01).fit(X2, y2).solver_ == "lbfgs"


def test_get_classifier_pipeline_and_errors():
    pipe = get_classifier("logreg", C=0.5)
    assert [n for n, _ in pipe.steps] == ["scale", "clf"] and pipe.named_steps["clf"].C == 0.5
    with pytest.raises(UnknownNameError, match="Did you mean linear-svm"):
        get_classifier("linear-svn")


def test_validation_protocol():
    assert validation_size(49000, None) == 1000 and validation_size(1347, None) == 135
    assert validation_size(1000, 0.2) == 200 and validation_size(1000, 50) == 50
    with pytest.raises(DataError):
        validation_size(10, 10)
    y = np.repeat(np.arange(4), 25)
    mask = split_validation(y, 20, seed=0)
    assert mask.sum() == 20 and np.bincount(y[mask]).tolist() == [5, 5, 5, 5]
    assert (split_validation(y, 20, seed=0) == mask).all()
    assert (split_validation(y, 20, seed=1) != mask).any()


#: the registered classifiers built by hand from scikit-learn, and their grid parameter
HAND = {"ridge": ("alpha", lambda v: RidgeClassifier(alpha=v)),
        "logreg": ("C", lambda v: LogisticRegression(C=v, max_iter=1000))}


def _by_hand(name, value):
    key, make = HAND[name]
    return Pipeline([("scale", StandardScaler()), ("clf", make(value))])


@pytest.mark.parametrize("name", list(HAND))
@pytest.mark.parametrize("shape", [(300, 80), (400, 30)])  # (400, 30): logreg has a tie
def test_tune_picks_best_validation_value_and_refits_on_all(name, shape):
    X, y = make_classification(*shape, n_informative=5, n_classes=3, random_state=0)
    mask = split_validation(y, 100, seed=0)
    key = HAND[name][0]
    values = default_grid(name)[key]
    # scikit-learn's own solver, to compare bit for bit (the torch path: test_path.py)
    params = {"solver": "sklearn"} if name == "logreg" else {}
    res = tune_and_fit(get_classifier(name, **params), default_grid(name), X, y, mask)
    # a slow loop: each value fitted on the training rows, scored on the validation rows
    hand = [float(np.mean(_by_hand(name, v).fit(X[~mask], y[~mask]).predict(X[mask])
                          == y[mask])) for v in values]
    assert len(set(hand)) > 1  # the choice matters
    assert [s["params"] for s in res.val_scores] == [{key: v} for v in values]
    assert [s["val_acc"] for s in res.val_scores] == pytest.approx(hand, abs=1e-12)
    best = values[int(np.argmax(hand))]  # the first of equal accuracies
    assert res.best_params == {key: best}
    assert res.val_acc == pytest.approx(max(hand), abs=1e-12)
    # the refit saw the validation rows too: the same model as one fitted on all of X
    fitted = res.estimator.named_steps
    manual = _by_hand(name, best).fit(X, y).named_steps
    assert fitted["clf"].get_params()[key] == best
    np.testing.assert_allclose(fitted["scale"].mean_, X.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fitted["clf"].coef_, manual["clf"].coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fitted["clf"].intercept_, manual["clf"].intercept_, rtol=1e-6,
                               atol=1e-9)
    train_only = _by_hand(name, best).fit(X[~mask], y[~mask]).named_steps["clf"]
    assert not np.allclose(fitted["clf"].coef_, train_only.coef_, rtol=1e-3, atol=1e-6)


def test_lbfgs_warns_when_it_stops_early():
    from sklearn.exceptions import ConvergenceWarning

    X, y = make_classification(300, 600, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        LinearSVM(C=1.0, solver="lbfgs", max_iter=2).fit(X, y)
