"""The torch MLP: scikit-learn's MLPClassifier (adam, relu) step for step.

In float64 the torch loop must reproduce ``MLPClassifier``'s fit to rounding: the
initial weights, the validation split, the shuffles, Adam and the stopping rule are
all checked at once by comparing coefficients, loss curves and validation scores.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from featbench import get_classifier
from featbench.classifiers import resolve_placement
from featbench.classifiers.torch_mlp import MLP, _AdamFit
from featbench.errors import ParameterError
from featbench.params import parse_params
from featbench.plan import validate_plan

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small fits in one torch thread: on a busy machine, OpenMP workers that spin-wait
    make them many times slower (nothing checked here depends on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(n_classes: int, n: int = 600, d: int = 20, seed: int = 0):
    X, y = make_classification(n, d, n_informative=8, n_classes=n_classes,
                               random_state=seed)
    return StandardScaler().fit_transform(X), y


def _fit_both(X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = MLPClassifier(**kw).fit(X, y)
        ours = MLP(dtype="float64", device="cpu", **kw).fit(X, y)
    return ref, ours


def _assert_same_fit(ref, ours, X, atol=1e-8):
    assert ours.solver_ == "torch" and ours.device_ == "cpu"
    assert ours.n_iter_ == ref.n_iter_ and ours.t_ == ref.t_
    assert list(ours.classes_) == list(ref.classes_)
    assert ours.out_activation_ == ref.out_activation_ and ours.n_layers_ == ref.n_layers_
    assert len(ours.coefs_) == len(ref.coefs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
        assert a.dtype == np.float64 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=atol, atol=0)
    assert ours.loss_ == pytest.approx(ref.loss_, rel=atol)
    if ref.validation_scores_ is None:
        assert ours.validation_scores_ is None and ours.best_validation_score_ is None
        assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=atol)
    else:
        np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_, atol=1e-12)
        assert ours.best_validation_score_ == ref.best_validation_score_
        assert ours.best_loss_ is None
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=atol)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_float64_with_early_stopping_is_sklearns_fit(n_classes):
    X, y = _data(n_classes)
    ref, ours = _fit_both(X, y, hidden_layer_sizes=(30,), early_stopping=True, max_iter=200,
                          random_state=3, alpha=1e-2)
    # it stopped early, on the rule, and kept the best epoch's coefficients
    assert ref.n_iter_ < 200 and ref.n_iter_ > 12
    assert np.argmax(ref.validation_scores_) < ref.n_iter_ - 1
    _assert_same_fit(ref, ours, X)


@pytest.mark.parametrize("max_iter", [1, 4, 25])
def test_float64_without_early_stopping_is_sklearns_fit(max_iter):
    X, y = _data(4)
    ref, ours = _fit_both(X, y, hidden_layer_sizes=(30,), max_iter=max_iter, random_state=0,
                          alpha=1.0)
    _assert_same_fit(ref, ours, X)


def test_float64_stopping_on_the_training_loss_and_other_options_is_sklearns():
    """Two hidden layers, a batch size that leaves a partial last batch, no shuffling,
    Adam's parameters changed, and a loose tol that stops the fit on the training loss."""
    X, y = _data(3, n=350)
    kw = dict(hidden_layer_sizes=(16, 8), batch_size=64, learning_rate_init=3e-3,
              beta_1=0.8, beta_2=0.99, epsilon=1e-6, tol=5e-3, n_iter_no_change=3,
              random_state=7)
    for shuffle in (True, False):
        ref, ours = _fit_both(X, y, shuffle=shuffle, max_iter=300, **kw)
        assert ref.n_iter_ < 300  # stopped on the loss rule
        _assert_same_fit(ref, ours, X)


def test_float32_is_close_to_sklearn():
    X, y = _data(5, n=3000, d=40, seed=1)
    kw = dict(hidden_layer_sizes=(100,), early_stopping=True, random_state=0, alpha=1e-2)
    ref = MLPClassifier(**kw).fit(X, y)
    ours = MLP(device="cpu", **kw).fit(X, y)
    assert all(c.dtype == np.float32 for c in ours.coefs_ + ours.intercepts_)
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.98
    n = min(len(ref.validation_scores_), len(ours.validation_scores_))
    np.testing.assert_allclose(ours.validation_scores_[:n], ref.validation_scores_[:n],
                               atol=0.01)
    assert abs(ours.n_iter_ - ref.n_iter_) <= 10
    assert ours.best_validation_score_ == pytest.approx(ref.best_validation_score_, abs=0.01)


def test_sklearn_solver_is_mlpclassifier_bit_for_bit():
    X, y = _data(3)
    kw = dict(hidden_layer_sizes=(30,), early_stopping=True, random_state=3, alpha=1e-2)
    ref = MLPClassifier(**kw).fit(X, y)
    ours = MLP(solver="sklearn", **kw).fit(X, y)
    assert (ours.solver_, ours.device_) == ("sklearn", "cpu")
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)
    assert ours.loss_curve_ == ref.loss_curve_
    assert ours.validation_scores_ == ref.validation_scores_
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(ours.predict_proba(X), ref.predict_proba(X))
    np.testing.assert_array_equal(ours.predict_log_proba(X), ref.predict_log_proba(X))


def _warnings_of(est, X, y) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


@pytest.mark.parametrize("early_stopping", [False, True])
def test_convergence_warning_at_max_iter_as_sklearn(early_stopping):
    X, y = _data(3)
    kw = dict(hidden_layer_sizes=(20,), max_iter=3, random_state=0,
              early_stopping=early_stopping)
    ref = _warnings_of(MLPClassifier(**kw), X, y)
    assert ref == ["Stochastic Optimizer: Maximum iterations (3) reached and the "
                   "optimization hasn't converged yet."]
    assert _warnings_of(MLP(device="cpu", **kw), X, y) == ref
    # stopped by the rule before max_iter: no warning, from either
    kw.update(max_iter=300, tol=0.5, n_iter_no_change=2)
    assert _warnings_of(MLPClassifier(**kw), X, y) == []
    assert _warnings_of(MLP(device="cpu", **kw), X, y) == []


def test_ctrl_c_stops_the_fit(monkeypatch):
    """MLPClassifier swallows KeyboardInterrupt and returns half-trained; this one stops."""
    X, y = _data(3)
    calls = []

    def interrupted(self, *args):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(_AdamFit, "_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        MLP(device="cpu").fit(X, y)
    assert calls == [1]


def test_registered_mlp_and_its_parameters():
    pipe = get_classifier("mlp", random_state=4, alpha=0.5)
    clf = pipe.named_steps["clf"]
    assert isinstance(clf, MLP)
    assert (clf.hidden_layer_sizes, clf.early_stopping, clf.max_iter, clf.random_state,
            clf.alpha, clf.solver, clf.dtype) == ((500,), True, 200, 4, 0.5, "auto", "float32")
    assert resolve_placement(clf, 1000, 154) == {"solver": "torch", "device": "cpu",
                                                 "default_solver": "torch"}
    assert resolve_placement(clf.set_params(solver="sklearn"), 1000, 154)["solver"] == "sklearn"
    with pytest.raises(ParameterError, match="invalid value mlp.dtype='float16'"):
        validate_plan(["raw"], ["mlp"], parse_params(["mlp.dtype=float16"]))
    with pytest.raises(ParameterError, match="invalid value mlp.hidden_layer_sizes=0"):
        validate_plan(["raw"], ["mlp"], parse_params(["mlp.hidden_layer_sizes=0"]))
    validate_plan(["raw"], ["mlp"], parse_params(["mlp.hidden_layer_sizes=20,10",
                                                   "mlp.solver=sklearn", "mlp.dtype=float64"]))
    X, y = _data(3)
    with pytest.raises(ParameterError, match="invalid device 'bogus'"):
        MLP(device="bogus").fit(X, y)
    with pytest.raises(ValueError, match="dtype"):
        MLP(dtype="float16").fit(X, y)


def test_sklearn_estimator_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_estimator(MLP(hidden_layer_sizes=(20,), device="cpu"))


def test_record_says_where_the_mlp_ran():
    from featbench.datasets import load_dataset
    from featbench.runner import run_benchmark

    ds = load_dataset("digits").subset(300, 100, seed=0)
    params = {"hidden_layer_sizes": (20,), "alpha": 0.01}
    torch_rec, sk_rec = (
        run_benchmark(ds, ["hog"], ["mlp"], params={"mlp": {**params, **extra}},
                      results_dir=None, n_jobs=1)[0]
        for extra in ({}, {"solver": "sklearn"}))
    assert torch_rec["classifier"]["placement"] == {"solver": "torch", "device": "cpu",
                                                    "default_solver": "torch"}
    assert sk_rec["classifier"]["placement"] == {"solver": "sklearn", "device": "cpu",
                                                 "default_solver": "torch"}
    assert torch_rec["classifier"]["params"]["dtype"] == "float32"
    assert torch_rec["test_acc"] >= 0.8
    # float32 torch and float64 scikit-learn: the same network to a point or two
    assert abs(torch_rec["test_acc"] - sk_rec["test_acc"]) <= 0.03


@needs_cuda
def test_cuda_fit_is_sklearns():
    X, y = _data(3)
    kw = dict(hidden_layer_sizes=(30,), early_stopping=True, random_state=3, alpha=1e-2)
    ref = MLPClassifier(**kw).fit(X, y)
    ours = MLP(dtype="float64", device="cuda", **kw).fit(X, y)
    assert ours.device_.startswith("cuda")
    assert ours.n_iter_ == ref.n_iter_
    assert ours.validation_scores_ == pytest.approx(ref.validation_scores_, abs=1e-12)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    f32 = MLP(device="cuda", **kw).fit(X, y)
    assert np.mean(f32.predict(X) == ref.predict(X)) >= 0.98
