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
from sklearn.utils.class_weight import compute_class_weight
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


def test_logreg_default_is_torch_at_sklearn_optimum():
    """The registered logreg fits with the torch solver (since 0.3) and reaches the
    optimum of LogisticRegression's objective to float32 precision."""
    X, y = make_classification(500, 700, n_informative=20, n_classes=3, random_state=1)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    ours = get_classifier("logreg", C=0.01).fit(X, y).named_steps["clf"]
    ref = LogisticRegression(C=0.01, tol=1e-8, max_iter=5000).fit(X, y)
    assert (ours.solver_, ours.device_) == ("torch", "cpu")
    y_index = np.searchsorted(ref.classes_, y)
    f_ref = logistic_objective(ref.coef_, ref.intercept_, X, y_index, 0.01)
    assert logistic_objective(ours.coef_, ours.intercept_, X, y_index, 0.01) == \
        pytest.approx(f_ref, rel=1e-3)
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99


def test_logreg_sklearn_solver_is_sklearn_bit_for_bit():
    """solver="sklearn" is the LogisticRegression featbench registered before 0.3."""
    X, y = make_classification(500, 700, n_informative=20, n_classes=3, random_state=1)
    X = X.astype(np.float32)
    ours = get_classifier("logreg", C=0.01, solver="sklearn").fit(X, y)
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
    ours = LogReg(C=0.5, solver="sklearn").fit(X, y)
    ref = LogisticRegression(C=0.5).fit(X, y)
    np.testing.assert_array_equal(ours.predict_proba(X), ref.predict_proba(X))


def _imbalanced(n_classes: int, n: int = 800, d: int = 60):
    """Standardized data whose classes are far from equally frequent."""
    weights = [0.9, 0.1] if n_classes == 2 else [0.6, 0.25, 0.1, 0.05]
    X, y = make_classification(n, d, n_informative=10, n_classes=n_classes, weights=weights,
                               random_state=0)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("class_weight", [None, "balanced", "dict"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_logreg_torch_class_weight_reaches_sklearn_optimum(n_classes, class_weight):
    """class_weight: the torch fit minimizes scikit-learn's weighted objective
    ``0.5 ||W||^2 + C sum_i w[y_i] loss_i`` (and the unweighted one without it)."""
    X, y = _imbalanced(n_classes)
    if class_weight == "dict":  # labels left out weigh 1; weights summing to more than n
        class_weight = {1: 4.0} if n_classes == 2 else {1: 2.0, 2: 6.0, 3: 12.0}
    C = 0.1
    ref = LogisticRegression(C=C, tol=1e-8, max_iter=5000, class_weight=class_weight).fit(X, y)
    ours = LogReg(C=C, solver="torch", device="cpu", tol=1e-6, max_iter=5000,
                  class_weight=class_weight).fit(X, y)
    assert (ours.solver_, ours.device_) == ("torch", "cpu")
    y_index = np.searchsorted(ref.classes_, y)
    sw = None if class_weight is None else \
        compute_class_weight(class_weight, classes=ref.classes_, y=y)[y_index]
    f_ref = logistic_objective(ref.coef_, ref.intercept_, X, y_index, C, sw)
    assert logistic_objective(ours.coef_, ours.intercept_, X, y_index, C, sw) == \
        pytest.approx(f_ref, rel=1e-4)
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-2, atol=1e-2 * scale)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-2, atol=1e-2 * scale)
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99
    if class_weight is not None:
        # the weights matter here: the unweighted optimum is far from the weighted one
        plain = LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(X, y)
        assert logistic_objective(plain.coef_, plain.intercept_, X, y_index, C, sw) > \
            1.05 * f_ref
        assert np.mean(plain.predict(X) != ref.predict(X)) > 0.05


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logreg_torch_class_weight_scales_tol_as_sklearn(n_classes):
    """scikit-learn's tol is on the objective divided by C sum_i s_i: equal class weights
    c are C * c exactly, iteration for iteration (a tolerance on the objective divided by
    C n would stop 20 times earlier here)."""
    X, y = _data(n_classes)
    c, tol = 0.05, 1e-3
    weights = {k: c for k in range(n_classes)}
    ref_w = LogisticRegression(C=1.0, tol=tol, class_weight=weights).fit(X, y)
    ref = LogisticRegression(C=c, tol=tol).fit(X, y)
    np.testing.assert_array_equal(ref_w.n_iter_, ref.n_iter_)  # scikit-learn's own rule
    ours_w = LogReg(C=1.0, solver="torch", device="cpu", tol=tol, class_weight=weights).fit(X, y)
    ours = LogReg(C=c, solver="torch", device="cpu", tol=tol).fit(X, y)
    np.testing.assert_array_equal(ours_w.n_iter_, ours.n_iter_)
    scale = np.abs(ours.coef_).max()
    np.testing.assert_allclose(ours_w.coef_, ours.coef_, atol=1e-5 * scale)
    np.testing.assert_allclose(ours_w.intercept_, ours.intercept_, atol=1e-5 * scale)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 3.0, 2: 0.5}])
def test_logreg_class_weight_on_cpu_is_sklearn_bit_for_bit(class_weight):
    X, y = _imbalanced(4, n=300, d=20)
    y = np.minimum(y, 2)
    ours = LogReg(C=0.5, solver="sklearn", class_weight=class_weight).fit(X, y)
    ref = LogisticRegression(C=0.5, class_weight=class_weight).fit(X, y)
    assert ours.solver_ == "sklearn"
    np.testing.assert_array_equal(ours.coef_, ref.coef_)
    np.testing.assert_array_equal(ours.intercept_, ref.intercept_)


def test_logreg_class_weight_through_the_cli(tmp_path):
    import json

    from click.testing import CliRunner

    from featbench.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)

    res = invoke("run", "-q", "-d", "digits", "-f", "color-hist", "-c", "logreg", "-p",
                 "logreg.class_weight=balanced", "--train-size", "300", "--test-size", "100",
                 "--results-dir", tmp_path / "ok")
    assert res.exit_code == 0, res.output
    [path] = (tmp_path / "ok" / "runs").glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["classifier"]["params"]["class_weight"] == "balanced"
    assert rec["classifier"]["name"] == "logreg" and not rec.get("error")
    res = invoke("run", "-q", "-d", "digits", "-f", "color-hist", "-c", "logreg", "-p",
                 "logreg.class_weight=foo", "--results-dir", tmp_path / "bad")
    assert res.exit_code != 0
    out = [line for line in res.output.splitlines() if line.strip()]
    assert len(out) == 1 and "logreg.class_weight='foo'" in out[0], res.output
    assert "balanced" in out[0]
    assert not (tmp_path / "bad" / "runs").exists()


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
    assert LogReg()._placement(100_000, 10_000) == ("torch", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.fit_device("auto", big) == torch.device("cuda")
    assert runtime.fit_device("auto", big - 1) == torch.device("cpu")
    monkeypatch.setattr(runtime, "AUTO_CUDA_MIN_SIZE", 1000)
    assert LinearSVM()._placement(10, 600) == ("lbfgs", torch.device("cuda"))
    assert LinearSVM()._placement(10, 99) == ("lbfgs", torch.device("cpu"))  # too small
    assert LinearSVM()._placement(1, 600) == ("lbfgs", torch.device("cpu"))  # too small
    assert LinearSVM(device="cpu")._placement(10, 600) == ("lbfgs", torch.device("cpu"))
    assert LogReg()._placement(10, 100) == ("torch", torch.device("cuda"))
    assert LogReg()._placement(10, 99) == ("torch", torch.device("cpu"))
    assert LogReg(device="cpu")._placement(10, 100) == ("torch", torch.device("cpu"))
    assert LogReg(solver="sklearn")._placement(10, 99) == ("sklearn", torch.device("cpu"))
    assert LinearSVM(solver="liblinear")._placement(10, 99) == ("liblinear",
                                                                 torch.device("cpu"))
    assert LogReg(solver="torch")._placement(10, 99) == ("torch", torch.device("cpu"))


def test_record_says_where_the_classifier_ran():
    from featbench.datasets import load_dataset
    from featbench.runner import run_benchmark

    ds = load_dataset("digits").subset(300, 100, seed=0)
    recs = run_benchmark(ds, ["hog"], ["logreg", "linear-svm"],
                         params={"logreg": {"C": 0.1}, "linear-svm": {"C": 0.1}},
                         results_dir=None, n_jobs=1)
    assert [r["classifier"]["placement"] for r in recs] == [
        {"solver": "torch", "device": "cpu", "default_solver": "torch"},
        {"solver": "lbfgs", "device": "cpu", "default_solver": "lbfgs"}]


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
    # class weights: the sample weights go to the device too
    sw = compute_class_weight("balanced", classes=np.unique(y), y=y)[y_index]
    cpu = LogReg(C=C, solver="torch", device="cpu", tol=1e-6, max_iter=3000,
                 class_weight="balanced").fit(X, y)
    gpu = LogReg(C=C, device="cuda", tol=1e-6, max_iter=3000, class_weight="balanced").fit(X, y)
    assert logistic_objective(gpu.coef_, gpu.intercept_, X, y_index, C, sw) == pytest.approx(
        logistic_objective(cpu.coef_, cpu.intercept_, X, y_index, C, sw), rel=1e-4)
    Y = _pm1(y, np.unique(y))
    cpu = LinearSVM(C=C, solver="lbfgs", device="cpu", tol=1e-6, max_iter=3000).fit(X, y)
    gpu = LinearSVM(C=C, device="cuda", tol=1e-6, max_iter=3000).fit(X, y)
    assert (gpu.solver_, gpu.device_[:4]) == ("lbfgs", "cuda")
    assert squared_hinge_objective(gpu.coef_, gpu.intercept_, X, Y, C) == pytest.approx(
        squared_hinge_objective(cpu.coef_, cpu.intercept_, X, Y, C), rel=1e-4)
    assert np.mean(gpu.predict(X) == cpu.predict(X)) >= 0.99
