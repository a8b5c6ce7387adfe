"""Grid extension, iteration-limit flags, mean per-class accuracy and what records keep."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featbench.classifiers import get_classifier
from featbench.classifiers.tuning import (
    MAX_EXTENSIONS,
    split_validation,
    tie_margin,
    tune_and_fit,
)
from featbench.datasets import Dataset
from featbench.results import make_table, record_to_row
from featbench.runner import run_benchmark


def _blobs(n=600, d=20, k=3, seed=0, noise=3.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + noise * rng.normal(size=(n, d))
    return X, y


def _hand_scores(values, X, y, mask, make):
    """Validation accuracy of each value, by a plain loop over sklearn pipelines."""
    out = {}
    for v in values:
        pipe = make_pipeline(StandardScaler(), make(v)).fit(X[~mask], y[~mask])
        out[v] = float(np.mean(pipe.predict(X[mask]) == y[mask]))
    return out


def test_grid_extends_past_an_edge_to_the_hand_loop_optimum():
    X, y = _blobs()
    mask = split_validation(y, 200, 0)
    # ridge with an absurd grid far above the useful alpha: the best is the lowest value
    res = tune_and_fit(get_classifier("ridge"), {"alpha": [1e7, 1e8]}, X, y, mask, extend=True)
    tried = [s["params"]["alpha"] for s in res.val_scores]
    assert tried[:2] == [1e7, 1e8]
    assert min(tried) < 1e7  # extended downwards
    hand = _hand_scores(tried, X, y, mask, lambda a: RidgeClassifier(alpha=a))
    for s in res.val_scores:  # every value recorded with its own validation accuracy
        assert s["val_acc"] == pytest.approx(hand[s["params"]["alpha"]])
    # the chosen value is the first best of the values tried
    best = max(hand.values())
    assert res.best_params["alpha"] == next(v for v in tried if hand[v] == best)
    # it stopped for a documented reason: inside, a gain within the margin, or the bound
    assert res.edge == "" or "margin" in res.edge or "bound" in res.edge
    assert len(tried) <= 2 + MAX_EXTENSIONS


def test_no_extension_when_disabled_or_inside():
    X, y = _blobs()
    mask = split_validation(y, 200, 0)
    res = tune_and_fit(get_classifier("ridge"), {"alpha": [1e7, 1e8]}, X, y, mask, extend=False)
    assert [s["params"]["alpha"] for s in res.val_scores] == [1e7, 1e8]
    assert "not extended" in res.edge
    # a single value is a setting, not a grid: never extended
    res = tune_and_fit(get_classifier("ridge"), {"alpha": [1e7]}, X, y, mask, extend=True)
    assert len(res.val_scores) == 1 and res.edge == ""


def test_extension_stops_on_ties():
    # a constant problem: every alpha scores the same, so nothing is chased
    X, y = _blobs(noise=0.01)
    mask = split_validation(y, 200, 0)
    res = tune_and_fit(get_classifier("ridge"), {"alpha": [1e-3, 1e-2]}, X, y, mask,
                       extend=True)
    accs = {s["val_acc"] for s in res.val_scores}
    assert accs == {1.0}
    assert len(res.val_scores) == 3  # one step past the edge, a tie: stop
    assert tie_margin(1000) == pytest.approx(0.002) and tie_margin(50) == pytest.approx(0.04)


def test_iteration_limit_is_flagged_and_shown_in_the_table(tmp_path):
    ds = _dataset()
    recs = run_benchmark(ds, ["raw"], ["logreg"], params={"logreg": {"max_iter": 1, "C": 1.0}},
                         results_dir=tmp_path, n_jobs=1)
    rec = recs[0]
    assert rec["error"] is None
    assert rec["classifier"]["hit_iteration_limit"] is True
    assert "iter-limit" in record_to_row(rec)["tuning"]
    # and the converged default does not carry the flag
    ok = run_benchmark(ds, ["raw"], ["logreg"], results_dir=None, n_jobs=1)[0]
    assert ok["classifier"]["hit_iteration_limit"] is False
    assert "iter-limit" not in record_to_row(ok)["tuning"]


def _dataset(imbalanced=False):
    rng = np.random.default_rng(0)
    n = 240
    y = rng.integers(0, 3, n)
    if imbalanced:
        y = np.where(rng.random(n) < 0.7, 0, y)
    X = (rng.random((n, 8, 8, 3)) * 200 + y[:, None, None, None] * 12).astype(np.uint8)
    return Dataset.from_arrays("toy", X[:180], y[:180], X[180:], y[180:], ["a", "b", "c"])


def test_mean_class_accuracy_matches_sklearn_on_imbalanced_data(tmp_path):
    ds = _dataset(imbalanced=True)
    rec = run_benchmark(ds, ["raw"], ["logreg"], params={"logreg": {"C": 0.01}},
                        results_dir=tmp_path, n_jobs=1, extend_grid=False)[0]
    conf = np.asarray(rec["confusion"])
    per_class = np.diag(conf) / conf.sum(1)
    assert rec["test_mean_class_acc"] == pytest.approx(per_class.mean())
    # and independently: refit the same pipeline by hand
    from featbench.features import get_extractor

    F = get_extractor("raw").fit_transform(ds.X_train)
    Ft = get_extractor("raw").fit_transform(ds.X_test)
    mask = split_validation(ds.y_train, rec["dataset"]["n_val"], 0)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=5000,
                                                              random_state=0))
    pipe.fit(F[~mask], ds.y_train[~mask])
    val_pred = pipe.predict(F[mask])
    assert rec["val_mean_class_acc"] == pytest.approx(
        balanced_accuracy_score(ds.y_train[mask], val_pred))
    pipe.fit(F, ds.y_train)
    assert rec["test_acc"] == pytest.approx(np.mean(pipe.predict(Ft) == ds.y_test))
    assert rec["test_mean_class_acc"] != pytest.approx(rec["test_acc"])  # imbalanced: differ
    row = make_table([rec]).iloc[0]
    assert row["test_mean_class_acc"] == pytest.approx(rec["test_mean_class_acc"])


def test_record_lists_every_value_tried_and_the_tuning_rules(tmp_path):
    ds = _dataset()
    rec = run_benchmark(ds, ["raw"], ["ridge"], params={"ridge": {"alpha": (1e7, 1e8)}},
                        results_dir=tmp_path, n_jobs=1)[0]
    clf = rec["classifier"]
    tried = [s["params"]["alpha"] for s in clf["val_scores"]]
    assert len(tried) > 2 and min(tried) < 1e7
    assert all("val_acc" in s and "val_mean_class_acc" in s for s in clf["val_scores"])
    assert clf["extend_grid"] is True and clf["grid"] == {"alpha": [1e7, 1e8]}
    assert clf["tie_margin"] == pytest.approx(tie_margin(rec["dataset"]["n_val"]))
    on_disk = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert [s["params"]["alpha"] for s in on_disk["classifier"]["val_scores"]] == tried
    assert record_to_row(rec)["tuning"].startswith(f"+{len(tried) - 2}")


def test_feature_params_come_from_the_record_not_todays_defaults(monkeypatch):
    ds = _dataset()
    rec = run_benchmark(ds, ["raw"], ["ridge"], params={"raw": {"grayscale": True}},
                        results_dir=None, n_jobs=1)[0]
    assert rec["error"] is None
    assert record_to_row(rec)["feature_params"] == "raw.grayscale=True"
    # a later version makes grayscale the default: the old record still says what it changed
    from featbench.features import raw as raw_module

    original = raw_module.RawPixels.__init__

    def new_default(self, size=None, grayscale=True):
        original(self, size=size, grayscale=grayscale)

    monkeypatch.setattr(raw_module.RawPixels, "__init__", new_default)
    from featbench.features import build_extractor

    assert build_extractor("raw").grayscale is True  # the patch took effect
    assert record_to_row(rec)["feature_params"] == "raw.grayscale=True"
    assert rec["features"]["params"]["raw"] == {"grayscale": True, "size": None}


def test_record_defaults_are_the_registered_classifiers_not_this_runs():
    from featbench.classifiers import MAX_ITER

    ds = _dataset()
    rec = run_benchmark(ds, ["raw"], ["linear-svm"],
                        params={"linear-svm": {"C": 0.01, "max_iter": 100, "tol": 1e-3}},
                        results_dir=None, n_jobs=1)[0]
    assert rec["error"] is None
    clf = rec["classifier"]
    assert clf["params"]["max_iter"] == 100 and clf["defaults"]["max_iter"] == MAX_ITER != 100
    assert clf["defaults"]["tol"] == 1e-4  # LinearSVM's own default
    assert record_to_row(rec)["hyperparams"] == "C=0.01 max_iter=100 tol=0.001"


def test_grid_points_fit_in_threads_only_where_that_helps(monkeypatch):
    from featbench.classifiers import tuning

    X, y = _blobs(n=300, d=20)
    mask = split_validation(y, 60, seed=0)
    liblinear = get_classifier("linear-svm", solver="liblinear")
    assert tuning.threads_help(liblinear, X.shape)  # liblinear is single-threaded
    assert not tuning.threads_help(get_classifier("linear-svm"), X.shape)  # torch L-BFGS
    assert not tuning.threads_help(get_classifier("linear-svm", solver="lbfgs"), X.shape)
    for name in ("logreg", "mlp", "ridge"):
        assert not tuning.threads_help(get_classifier(name), X.shape)
    pools = []
    real = tuning.ThreadPoolExecutor

    def spy(n):
        pools.append(n)
        return real(n)

    monkeypatch.setattr(tuning, "ThreadPoolExecutor", spy)
    tune_and_fit(get_classifier("logreg"), {"C": [0.01, 0.1, 1.0]}, X, y, mask, n_jobs=2)
    assert pools == []  # one by one: L-BFGS already uses every core
    tune_and_fit(get_classifier("linear-svm"), {"C": [0.01, 0.1, 1.0]}, X, y, mask, n_jobs=2)
    assert pools == []
    tune_and_fit(liblinear, {"C": [0.01, 0.1, 1.0]}, X, y, mask, n_jobs=2)
    assert pools == [2]


def test_record_val_acc_is_the_validation_accuracy_not_the_test_accuracy(tmp_path):
    """The record's val_acc, recomputed by hand: features, the seeded stratified split
    of the default size, and the pipeline refitted with scikit-learn on the fit rows."""
    from sklearn.model_selection import train_test_split

    ds = _dataset()
    rec = run_benchmark(ds, ["raw"], ["ridge"], params={"ridge": {"alpha": 10.0}},
                        results_dir=tmp_path, n_jobs=1, extend_grid=False)[0]
    F = ds.X_train.reshape(len(ds.X_train), -1).astype(np.float32) / 255.0
    Ft = ds.X_test.reshape(len(ds.X_test), -1).astype(np.float32) / 255.0
    y, yt = ds.y_train, ds.y_test
    n_val = 18  # the default: a tenth of 180 training images
    assert rec["dataset"]["n_val"] == n_val
    _, val_idx = train_test_split(np.arange(len(y)), test_size=n_val, random_state=0,
                                  stratify=y)
    val = np.zeros(len(y), bool)
    val[val_idx] = True
    pipe = make_pipeline(StandardScaler(), RidgeClassifier(alpha=10.0)).fit(F[~val], y[~val])
    val_acc = float(np.mean(pipe.predict(F[val]) == y[val]))
    test_acc = float(np.mean(pipe.fit(F, y).predict(Ft) == yt))
    assert val_acc != pytest.approx(test_acc)  # the fixture tells them apart
    assert rec["val_acc"] == pytest.approx(val_acc)
    assert rec["classifier"]["val_scores"][0]["val_acc"] == pytest.approx(val_acc)
    assert rec["test_acc"] == pytest.approx(test_acc)
    on_disk = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert on_disk["val_acc"] == pytest.approx(val_acc)


class _LogCAccuracy(ClassifierMixin, BaseEstimator):
    """A classifier whose validation accuracy grows with log10(C) without end: row
    ``i`` of X holds its label (column 0) and a rank in [0, 1) (column 1), and it
    predicts the right label for ranks below ``0.05 * (log10(C) + 10)``."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        right = X[:, 1] < 0.05 * (np.log10(self.C) + 10)
        return np.where(right, X[:, 0], X[:, 0] + 1).astype(int)


def test_extension_stops_after_exactly_four_values_on_a_side():
    """A grid whose optimum keeps moving up: exactly four values are added above it
    (C = 10, 100, 1e3, 1e4; the bound 1e5 is not reached), and the edge says so."""
    from sklearn.pipeline import Pipeline

    n = 400
    y = np.arange(n) % 2
    X = np.c_[y, (np.arange(n) * 0.618) % 1.0]
    mask = np.zeros(n, bool)
    mask[::4] = True
    grid = {"C": [1e-3, 1e-2, 1e-1, 1.0]}
    res = tune_and_fit(Pipeline([("clf", _LogCAccuracy())]), grid, X, y, mask, extend=True,
                       margin=0.01)
    tried = [s["params"]["C"] for s in res.val_scores]
    assert tried == [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
    accs = [s["val_acc"] for s in res.val_scores]
    assert all(b > a + 0.01 for a, b in zip(accs, accs[1:], strict=False))  # always moving
    assert [s["extended"] for s in res.val_scores] == [False] * 4 + [True] * 4
    assert res.best_params == {"C": 10000.0}
    assert res.edge == "highest value tried after 4 extensions (bound)"


def test_validation_size_counts_fractions_and_classes():
    from featbench.classifiers.tuning import validation_size
    from featbench.errors import DataError

    assert validation_size(1347, 0.1) == 135 and validation_size(1347, 135) == 135
    assert validation_size(100, 10, n_classes=10) == 10
    for bad in (1.0, 2.5, 0.0, -0.5, True, "5"):  # 1.0 is not a count of one image
        with pytest.raises(DataError, match="--val-size"):
            validation_size(1347, bad)
    with pytest.raises(DataError, match=r"--val-size 5 gives 5 validation image\(s\) for "
                                        r"10 classes"):
        validation_size(1347, 5, n_classes=10)
    with pytest.raises(DataError, match=r"--val-size 2000 \(2000\) leaves no training"):
        validation_size(1347, 2000, n_classes=10)
