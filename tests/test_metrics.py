"""Top-5 and per-class accuracy: hand-worked examples, scikit-learn, and a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import top_k_accuracy_score

from featbench.metrics import class_scores, per_class_accuracy, top_k_accuracy


def test_top5_by_hand():
    """Six classes; the true class ranks 1st, 5th and 6th: two of three in the top 5."""
    scores = np.array([[9, 1, 2, 3, 4, 5],     # true 0: 1st
                       [6, 5, 4, 3, 2, 1],     # true 4: 5th
                       [6, 5, 4, 3, 2, 1.0]])  # true 5: 6th
    y = np.array([0, 4, 5])
    assert top_k_accuracy(y, scores, np.arange(6)) == pytest.approx(2 / 3)
    # labels that are not 0..n-1, in the classifier's order
    classes = np.array([10, 20, 30, 40, 50, 60])
    assert top_k_accuracy(classes[y], scores, classes) == pytest.approx(2 / 3)
    # five classes or fewer: no top-5; no scores; a test class never trained on
    assert top_k_accuracy(y[:1], scores[:1, :5], np.arange(5)) is None
    assert top_k_accuracy(y, None, np.arange(6)) is None
    assert top_k_accuracy(np.array([0, 4, 7]), scores, np.arange(6)) is None


def test_per_class_accuracy_by_hand():
    assert per_class_accuracy([[3, 1, 0], [2, 2, 0], [0, 0, 0]]) == [0.75, 0.5, None]


def test_class_scores_of_each_kind_of_classifier():
    from sklearn.linear_model import RidgeClassifier

    from featbench.classifiers import get_classifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 5)), np.arange(120) % 7
    for name in ("logreg", "linear-svm", "mlp", "knn"):
        pipe = get_classifier(name, max_iter=20) if name == "mlp" else get_classifier(name)
        pipe.fit(X, y)
        s = class_scores(pipe, X)
        assert s.shape == (120, 7)
        # the highest score is the prediction
        np.testing.assert_array_equal(pipe.classes_[np.argmax(s, axis=1)], pipe.predict(X))
    assert class_scores(RidgeClassifier().fit(X, y), X).shape == (120, 7)
    assert class_scores(object(), X) is None


def test_a_runs_record_holds_top5_and_per_class(tmp_path):
    """hog + knn (k fixed at 10) on digits: the record's top-5 equals scikit-learn's on
    the votes of a KNN refitted by hand; the per-class accuracies average to the
    balanced accuracy scikit-learn computed from the predictions."""
    from featbench.classifiers.knn import KNN
    from featbench.cli import main
    from featbench.datasets import load_dataset
    from featbench.extraction import extract_features
    from featbench.runner import fit_data, run_benchmark
    from featbench.splits import tuning_split
    from featbench.store import FeatureStore

    ds = load_dataset("digits").subset(400, 100, seed=0)
    rec, = run_benchmark(ds, ["hog"], ["knn"], params={"knn": {"n_neighbors": 10}}, seed=0,
                         store=FeatureStore(tmp_path / "s"), results_dir=tmp_path / "res")
    feats = extract_features("hog", ds, {}, FeatureStore(tmp_path / "s"), seed=0)
    X, y, _, X_test, y_test, _ = fit_data(ds, feats, tuning_split(ds, 0))
    knn = KNN(10, device="cpu").fit(X, y)
    expected = top_k_accuracy_score(y_test, knn.decision_function(X_test), k=5,
                                    labels=knn.classes_)
    assert rec["test_top5_acc"] == pytest.approx(expected, abs=1e-12)
    assert rec["test_top5_acc"] > rec["test_acc"]
    per_class = rec["test_per_class_acc"]
    assert len(per_class) == 10
    assert np.mean(per_class) == pytest.approx(rec["test_mean_class_acc"], abs=1e-12)
    # featbench table --per-class shows them, one column per class
    out = tmp_path / "t.json"
    result = CliRunner().invoke(main, ["table", str(tmp_path / "res"), "--per-class",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    row, = json.loads(out.read_text())
    classes = rec["dataset"]["classes"]
    assert [row[f"acc:{c}"] for c in classes] == pytest.approx(per_class)
    assert row["test_top5_acc"] == pytest.approx(rec["test_top5_acc"])


def test_top5_equals_scikit_learn_without_ties_and_counts_ties_as_misses():
    rng = np.random.default_rng(0)
    scores, y = rng.normal(size=(500, 9)), rng.integers(0, 9, 500)
    assert top_k_accuracy(y, scores, np.arange(9)) == pytest.approx(
        top_k_accuracy_score(y, scores, k=5, labels=np.arange(9)))
    # a k-NN vote: the true class (8) got no votes, like classes 4-7: not in the top 5,
    # though scikit-learn's class order would put it there
    votes = np.array([[5.0, 4.0, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert top_k_accuracy(np.array([8]), votes, np.arange(9)) == 0.0
    assert top_k_accuracy(np.array([3]), votes, np.arange(9)) == 1.0


def test_accuracy_cells_have_four_decimals():
    from featbench.results import format_cell

    assert [format_cell(c, v) for c, v in (("test_acc_std", 0.0377778), ("acc:cat", 1),
                                           ("acc:dog", 0.6))] == ["0.0378", "1.0000", "0.6000"]
