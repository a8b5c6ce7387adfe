"""Metrics a record holds beside accuracy: top-5 accuracy and per-class accuracy.

Top-k accuracy comes from the classifier's class scores (``decision_function``, else
``predict_proba``), only where there are more classes than ``k`` (with 5 classes or
fewer a record holds None: every prediction would count). It equals scikit-learn's
:func:`~sklearn.metrics.top_k_accuracy_score` except on ties: a true class tied with
others at the k-th place counts as a miss here
(scikit-learn breaks the tie by class order: a k-NN's classes without votes, all at 0,
would count as hits for the last classes).
Per-class accuracy is each class's recall, read off the confusion matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the k of the top-k accuracy records hold (ImageNet's convention)
TOP_K = 5


def class_scores(estimator: Any, X) -> np.ndarray | None:
    """``(n, n_classes)`` scores of a fitted classifier, in the order of its
    ``classes_`` (decision function, else probabilities); None when it has neither."""
    for method in ("decision_function", "predict_proba"):
        fn = getattr(estimator, method, None)
        if fn is None:
            continue
        try:
            scores = np.asarray(fn(X), dtype=np.float64)
        except (AttributeError, NotImplementedError):
            continue
        if scores.ndim == 2:
            return scores
    return None


def top_k_accuracy(y_true, scores: np.ndarray | None, classes, k: int = TOP_K
                   ) -> float | None:
    """The fraction of images whose class is among the ``k`` highest scores; None with
    ``k`` classes or fewer, without scores, or when a test class was never trained on."""
    classes = np.asarray(classes)
    if scores is None or len(classes) <= k or not np.isin(y_true, classes).all():
        return None
    scores = np.asarray(scores, dtype=np.float64)
    order = {c: i for i, c in enumerate(classes.tolist())}
    true = scores[np.arange(len(scores)), [order[c] for c in np.asarray(y_true).tolist()]]
    # classes at least as high as the true one, the true one left out
    ahead = (scores >= true[:, None]).sum(axis=1) - 1
    return float(np.mean(ahead < k))


def per_class_accuracy(confusion) -> list[float | None]:
    """Each class's accuracy (recall: its diagonal entry over its row) from a confusion
    matrix with true classes as rows; None for a class without test images."""
    m = np.asarray(confusion, dtype=np.float64)
    rows = m.sum(axis=1)
    return [None if r == 0 else float(m[i, i] / r) for i, r in enumerate(rows)]
