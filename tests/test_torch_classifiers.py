"""The torch solvers of linear-svm and logreg: same optimum as scikit-learn, device rules.

Every test runs on the CPU; ``test_cuda_*`` repeats the fits on a CUDA device and
is skipped where there is none (``benchmarks/gpu_check.sh`` runs it on a GPU).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import check_estimator

import featbench.runtime as runtime
from featbench import get_classifier
from featbench.classifiers.linear_svm import LinearSVM, squared_hinge_objective
from featbench.classifiers.torch_logreg import LogReg, logistic_objective
from featbench.errors import ParameterError
from featbench.params import parse_params
from featbench.plan import validate_plan

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _data(n_classes: int, n: int = 600, d: int = 40, seed: int = 0):
    X, y = make_classification(n, d, n_informative=10, n_classes=n_classes, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _pm1(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """LinearSVC's one-vs-rest +-1 targets (one column for two classes)."""
    if len(classes) == 2:
        return np.where(y == classes[1], 1.0, -1.0)[:, None]
    return np.where(y[:, None] == classes[None, :], 1.0, -1.0)


@pytest.mark.parametrize("C", [1e-3, 0.1])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_svm_lbfgs_on_cpu_reaches_linearsvc_optimum(C, n_classes):
    X, y = _data(n_classes)
    ref = LinearSVC(C=C, dual=False, tol=1e-8, max_iter=10000).fit(X, y)
    ours = LinearSVM(C=C, solver="lbfgs", device="cpu", tol=1e-7, max_iter=3000).fit(X, y)
    assert (ours.solver_, ours.device_) == ("lbfgs", "cpu")
    Y = _pm1(y, ref.classes_)
    f_ref = squared_hinge_objective(ref.coef_, ref.intercept_, X, Y, C)
    f_ours = squared_hinge_objective(ours.coef_, ours.intercept_, X, Y, C)
    # liblinear's is the optimum (to its tol=1e-8): ours is at most 1e-4 above it
    assert f_ours == pytest.approx(f_ref, rel=1e-4)
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99
    # the objective is flat near its optimum (at C = 0.1 the optimum for 2 C is within
    # 2e-4 of it): the coefficients must agree too
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-3 * scale)


@pytest.mark.parametrize("C", [1e-3, 0.1, 10.0])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_logreg_torch_on_cpu_reaches_sklearn_optimum(C, n_classes):
    X, y = _data(n_classes, n=800, d=60)
    ref = LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(X, y)
    ours = LogReg(C=C, solver="torch", device="cpu", tol=1e-6, max_iter=5000).fit(X, y)
    assert (ours.solver_, ours.device_) == ("torch", "cpu")
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    assert list(ours.classes_) == list(ref.classes_) and ours.n_iter_.shape == (1,)
    y_index = np.searchsorted(ref.classes_, y)
    f_ref = logistic_objective(ref.coef_, ref.intercept_, X, y_index, C)
    assert logistic_objective(ours.coef_, ours.intercept_, X, y_index, C) == \
        pytest.approx(f_ref, rel=1e-4)
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-2, atol=1e-2 * scale)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-2, atol=1e-2 * scale)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=2e-3)
    np.testing.assert_allclose(ours.predict_log_proba(X[:5]), np.log(ours.predict_proba(X[:5])))
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99


def test_logistic_objective_is_sklearns():
    """Our objective is the one scikit-learn minimizes: its own solution is optimal for
    it, and scaling C changes the minimizer (C multiplies the loss, not the penalty)."""
    X, y = _data(3, n=300, d=20)
    ref = LogisticRegression(C=0.1, tol=1e-10, max_iter=5000).fit(X, y)
    f = logistic_objective(ref.coef_, ref.intercept_, X, y, 0.1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        dW, db = 1e-3 * rng.normal(size=ref.coef_.shape), 1e-3 * rng.normal(size=3)
        assert logistic_objective(ref.coef_ + dW, ref.intercept_ + db, X, y, 0.1) > f
    assert logistic_objective(0.5 * ref.coef_, ref.intercept_, X, y, 0.1) > f


def test_logreg_defaults_on_cpu_are_sklearn_bit_for_bit():
    """The registered logreg, on the CPU, is the LogisticRegression it was before."""
    X, y = make_classification(500, 700, n_informative=20, n_classes=3, random_state=1)
    X = X.astype(np.float32)
    ours = get_classifier("logreg", C=0.01).fit(X, y)
    ref = Pipeline([("scale", StandardScaler()),
                    ("clf", LogisticRegression(C=0.01, max_iter=5000, random_state=0))]).fit(X, y)
    clf = ours.named_steps["clf"]
    assert isinstance(clf, LogReg) and (clf.solver_, clf.device_) == ("sklearn", "cpu")
    for attr in ("coef_", "intercept_", "n_iter_", "classes_"):
        np.testing.assert_array_equal(getattr(clf, attr), getattr(ref.named_steps["clf"], attr))
    assert clf.coef_.dtype == ref.named_steps["clf"].coef_.dtype
    np.testing.assert_array_equal(ours.predict_proba(X), ref.predict_proba(X))
    np.testing.assert_array_equal(ours.decision_function(X), ref.decision_function(X))


def test_logreg_binary_probabilities_match_sklearn():
    X, y = _data(2, n=300, d=20)
    ours, ref = LogReg(C=0.5).fit(X, y), LogisticRegression(C=0.5).fit(X, y)
    np.testing.assert_array_equal(ours.predict_proba(X), ref.predict_proba(X))


def test_logreg_torch_warns_at_its_iteration_limit():
    X, y = _data(4)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        est = LogReg(solver="torch", device="cpu", max_iter=2).fit(X, y)
    from featbench.classifiers.tuning import hit_iteration_limit

    assert hit_iteration_limit(est)


@pytest.mark.parametrize("make", [
    lambda d: LinearSVM(solver="lbfgs", device=d),
    lambda d: LogReg(solver="torch", device=d),
])
def test_bad_device_is_a_parameter_error(make, monkeypatch):
    X, y = _data(2, n=60, d=20)
    with pytest.raises(ParameterError, match="invalid device 'bogus'"):
        make("bogus").fit(X, y)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="CUDA is not available here"):
        make("cuda").fit(X, y)


def test_cpu_only_solvers_refuse_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ParameterError, match="'sklearn' runs on the CPU only"):
        LogReg(solver="sklearn", device="cuda")._placement(10, 10)
    with pytest.raises(ParameterError, match="'liblinear' runs on the CPU only"):
        LinearSVM(solver="liblinear", device="cuda")._placement(10, 10)
    # an explicit GPU takes the torch solvers, whatever the size
    assert LinearSVM(device="cuda")._placement(10, 10) == ("lbfgs", torch.device("cuda"))
    assert LogReg(device="cuda:0")._placement(10, 10) == ("torch", torch.device("cuda:0"))


def test_bad_classifier_device_fails_the_plan_up_front():
    with pytest.raises(ParameterError, match="invalid device 'bogus'"):
        validate_plan(["raw"], ["logreg"], parse_params(["logreg.device=bogus"]))
    with pytest.raises(ParameterError, match="invalid value logreg.solver='lbfgs'"):
        validate_plan(["raw"], ["logreg"], parse_params(["logreg.solver=lbfgs"]))
    validate_plan(["raw"], ["logreg", "linear-svm"],
                  parse_params(["logreg.device=cpu", "linear-svm.device=cpu"]))


def test_auto_device_rule(monkeypatch):
    """auto: CUDA only when there is one and the problem is large; else the CPU."""
    big = runtime.AUTO_CUDA_MIN_SIZE
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.fit_device("auto", 100 * big) == torch.device("cpu")
    assert LinearSVM()._placement(100_000, 10_000) == ("lbfgs", torch.device("cpu"))
    assert LogReg()._placement(100_000, 10_000) == ("sklearn", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.fit_device("auto", big) == torch.device("cuda")
    assert runtime.fit_device("auto", big - 1) == torch.device("cpu")
    monkeypatch.setattr(runtime, "AUTO_CUDA_MIN_SIZE", 1000)
    assert LinearSVM()._placement(10, 600) == ("lbfgs", torch.device("cuda"))
    assert LinearSVM()._placement(10, 99) == ("liblinear", torch.device("cpu"))  # liblinear
    assert LinearSVM()._placement(1, 600) == ("lbfgs", torch.device("cpu"))  # too small
    assert LinearSVM(device="cpu")._placement(10, 600) == ("lbfgs", torch.device("cpu"))
    assert LogReg()._placement(10, 100) == ("torch", torch.device("cuda"))
    assert LogReg()._placement(10, 99) == ("sklearn", torch.device("cpu"))
    assert LogReg(device="cpu")._placement(10, 100) == ("sklearn", torch.device("cpu"))
    assert LogReg(solver="torch")._placement(10, 99) == ("torch", torch.device("cpu"))


def test_record_says_where_the_classifier_ran():
    from featbench.datasets import load_dataset
    from featbench.runner import run_benchmark

    ds = load_dataset("digits").subset(300, 100, seed=0)
    recs = run_benchmark(ds, ["hog"], ["logreg", "linear-svm"],
                         params={"logreg": {"C": 0.1}, "linear-svm": {"C": 0.1}},
                         results_dir=None, n_jobs=1)
    assert [r["classifier"]["placement"] for r in recs] == [
        {"solver": "sklearn", "device": "cpu"}, {"solver": "liblinear", "device": "cpu"}]


@pytest.mark.parametrize("est", [LogReg(), LogReg(solver="torch", device="cpu"),
                                 LinearSVM(solver="lbfgs", device="cpu")], ids=repr)
def test_sklearn_estimator_checks(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_estimator(est)


@needs_cuda
@pytest.mark.parametrize("n_classes", [2, 4])
def test_cuda_fits_match_cpu(n_classes):
    X, y = _data(n_classes, n=2000, d=300)
    C = 0.01
    y_index = np.searchsorted(np.unique(y), y)
    cpu = LogReg(C=C, solver="torch", device="cpu", tol=1e-6, max_iter=3000).fit(X, y)
    gpu = LogReg(C=C, device="cuda", tol=1e-6, max_iter=3000).fit(X, y)
    assert (gpu.solver_, gpu.device_[:4]) == ("torch", "cuda")
    assert logistic_objective(gpu.coef_, gpu.intercept_, X, y_index, C) == pytest.approx(
        logistic_objective(cpu.coef_, cpu.intercept_, X, y_index, C), rel=1e-4)
    assert np.mean(gpu.predict(X) == cpu.predict(X)) >= 0.99
    Y = _pm1(y, np.unique(y))
    cpu = LinearSVM(C=C, solver="lbfgs", device="cpu", tol=1e-6, max_iter=3000).fit(X, y)
    gpu = LinearSVM(C=C, device="cuda", tol=1e-6, max_iter=3000).fit(X, y)
    assert (gpu.solver_, gpu.device_[:4]) == ("lbfgs", "cuda")
    assert squared_hinge_objective(gpu.coef_, gpu.intercept_, X, Y, C) == pytest.approx(
        squared_hinge_objective(cpu.coef_, cpu.intercept_, X, Y, C), rel=1e-4)
    assert np.mean(gpu.predict(X) == cpu.predict(X)) >= 0.99
