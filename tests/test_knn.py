"""``knn``: DINO's weighted k-NN evaluation, and integer, data-bounded grids.

References: a brute-force NumPy k-NN (full sort of the cosine similarities), a
hand-worked vote where the weights overturn the majority, and the tuner's extension
rules worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from featbench.classifiers import get_classifier
from featbench.classifiers.knn import KNN
from featbench.classifiers.tuning import _extend, _within_data


def brute_force_votes(X_train, y_train, X, k, T):
    """The DINO vote by brute force: normalize, sort every similarity, sum exp(s/T)."""
    A = X_train / np.linalg.norm(X_train, axis=1, keepdims=True)
    B = X / np.linalg.norm(X, axis=1, keepdims=True)
    classes = np.unique(y_train)
    votes = np.zeros((len(X), len(classes)))
    for i, b in enumerate(B):
        sims = A.astype(np.float64) @ b.astype(np.float64)
        for j in np.argsort(-sims, kind="stable")[:k]:
            votes[i, np.searchsorted(classes, y_train[j])] += np.exp(sims[j] / T)
    return votes, classes


@pytest.mark.parametrize("k", [1, 5, 17])
def test_knn_equals_a_brute_force_vote(k):
    rng = np.random.default_rng(k)
    X_train = rng.normal(size=(300, 12)).astype(np.float32)
    y_train = rng.choice([3, 7, 9, 11], 300)
    X = rng.normal(size=(2100, 12)).astype(np.float32)  # more than one block of queries
    knn = KNN(n_neighbors=k, device="cpu").fit(X_train, y_train)
    votes, classes = brute_force_votes(X_train, y_train, X, k, 0.07)
    np.testing.assert_allclose(knn.decision_function(X), votes, rtol=2e-4)
    np.testing.assert_array_equal(knn.predict(X), classes[np.argmax(votes, axis=1)])


def test_the_weights_overturn_a_majority():
    """k = 3: one neighbour of class 0 at cosine 1, two of class 1 at cosine 0.8.
    exp(1 / 0.07) = 1.6e6 outweighs 2 exp(0.8 / 0.07) = 1.9e5: class 0 wins; with
    T = 1 the weights are nearly equal and the majority, class 1, wins."""
    X_train = np.array([[1.0, 0.0], [0.8, 0.6], [0.8, -0.6], [-1.0, 0.0]], np.float32)
    y_train = np.array([0, 1, 1, 0])
    query = np.array([[2.0, 0.0]], np.float32)  # its length does not matter
    assert KNN(3, device="cpu").fit(X_train, y_train).predict(query)[0] == 0
    assert KNN(3, temperature=1.0, device="cpu").fit(X_train, y_train).predict(query)[0] == 1
    votes = KNN(3, device="cpu").fit(X_train, y_train).decision_function(query)[0]
    np.testing.assert_allclose(votes, [np.exp(1 / 0.07), 2 * np.exp(0.8 / 0.07)], rtol=1e-4)


def test_knn_reads_unscaled_features_and_refuses_more_neighbours_than_vectors():
    assert get_classifier("knn").named_steps["scale"] == "passthrough"
    with pytest.raises(ValueError, match="n_neighbors=5 is more than the 4 training"):
        KNN(5).fit(np.eye(4), [0, 1, 0, 1])


def _fake_scores(accuracy):
    """A tuner's score list and a ``fit_many`` that scores each k by ``accuracy(k)``."""
    scores = []

    def fit_many(batch, extended):
        scores.extend({"params": dict(p), "val_acc": accuracy(p["n_neighbors"]),
                       "extended": extended} for p in batch)

    return scores, fit_many


def test_an_integer_grid_extends_in_integers_up_to_the_data_bound():
    scores, fit_many = _fake_scores(lambda k: k / 1000)  # the larger, the better
    fit_many([{"n_neighbors": 10}, {"n_neighbors": 20}], extended=False)
    why = _extend("n_neighbors", scores, fit_many, margin=0.0, bar=None, upper=50)
    tried = [s["params"]["n_neighbors"] for s in scores]
    assert tried == [10, 20, 40, 50]  # 20 x 2; 80 is past the 50 vectors: the bound
    assert all(type(k) is int for k in tried)
    assert "bound" in why


def test_an_integer_grid_stops_below_one():
    scores, fit_many = _fake_scores(lambda k: 1 - k / 1000)  # the smaller, the better
    fit_many([{"n_neighbors": 2}, {"n_neighbors": 3}], extended=False)
    why = _extend("n_neighbors", scores, fit_many, margin=0.0, bar=None, upper=50)
    assert [s["params"]["n_neighbors"] for s in scores] == [2, 3, 1]  # 2 / 1.5 -> 1
    assert "no other integer" in why


def test_grid_values_above_the_training_vectors_are_left_out():
    assert _within_data({"n_neighbors": [10, 20, 100, 200]}, 50) == {"n_neighbors": [10, 20]}
    assert _within_data({"n_neighbors": [100, 200]}, 50) == {"n_neighbors": [50]}
    assert _within_data({"C": [1e-3, 1e3]}, 5) == {"C": [1e-3, 1e3]}


def test_knn_in_a_run_is_tuned_on_validation_and_refitted(tmp_path):
    """hog + knn on digits: k is chosen among the grid's integers, and the test accuracy
    is that of KNN refitted by hand on every training row with that k."""
    from featbench.datasets import load_dataset
    from featbench.extraction import extract_features
    from featbench.runner import fit_data, run_benchmark
    from featbench.splits import tuning_split
    from featbench.store import FeatureStore

    ds = load_dataset("digits").subset(400, 100, seed=0)
    rec, = run_benchmark(ds, ["hog"], ["knn"], seed=0, store=FeatureStore(tmp_path),
                         results_dir=None)
    assert not rec.get("error"), rec.get("traceback")
    k = rec["classifier"]["chosen"]["n_neighbors"]
    assert type(k) is int and rec["classifier"]["standardized"] is False
    tried = [s["params"]["n_neighbors"] for s in rec["classifier"]["val_scores"]]
    assert all(type(t) is int and t <= 360 for t in tried)
    feats = extract_features("hog", ds, {}, FeatureStore(tmp_path), seed=0)
    X, y, _, X_test, y_test, _ = fit_data(ds, feats, tuning_split(ds, 0))
    expected = np.mean(KNN(k, device="cpu").fit(X, y).predict(X_test) == y_test)
    assert rec["test_acc"] == pytest.approx(expected, abs=1e-12)


def test_only_integer_parameters_are_extended_in_integers():
    """A grid of C given as integers (-p logreg.C=1,10) still extends to 0.1."""
    scores = []

    def fit_many(batch, extended):
        scores.extend({"params": dict(p), "val_acc": 1 - p["C"] / 100, "extended": extended}
                      for p in batch)

    fit_many([{"C": 1}, {"C": 10}], extended=False)
    _extend("C", scores, fit_many, margin=0.0, bar=None)
    assert [s["params"]["C"] for s in scores][:3] == [1, 10, 0.1]
