"""``own-head``: a ConvNet's own trained softmax head, as a classifier on its features.

The "ConvNet end to end" number of CS231n Lecture 5: the network that
``convnet:<arch>`` trained classifies with its final linear layer, on the penultimate
activations it extracted; nothing is fitted or tuned here. The runner gives it the
fitted extractor (:mod:`featbench.end_to_end`); used alone it takes one::

    head = OwnHead(extractor=net).fit(F_train, y_train)   # only checks and takes classes_
    head.predict(net.transform(images))
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted


class OwnHead(ClassifierMixin, BaseEstimator):
    """The trained final layer of a ``convnet:<arch>`` extractor, applied to its features.

    Parameters
    ----------
    extractor : ConvNet, optional
        The fitted extractor whose features this classifies (the runner sets it).
    tta : bool, optional
        Test-time flip (each image's logits averaged with its mirror image's) when the
        runner scores images; None: the architecture's setting (``resnet-small`` yes,
        ``convnetjs`` no). :meth:`predict` on features never flips: a feature vector
        has no mirror image.
    random_state : int, optional
        Unused (nothing here is random); every registered classifier takes one.

    Attributes
    ----------
    classes_ : ndarray
        The extractor's classes, in the order of its logits.

    Notes
    -----
    ``fit`` learns nothing: the head was trained with the network on the training
    images less the validation split, which are exactly the images the other
    classifiers fit on. It only checks that the labels are the network's.
    """

    def __init__(self, extractor: Any = None, tta: bool | None = None,
                 random_state: int | None = None) -> None:
        self.extractor = extractor
        self.tta = tta
        self.random_state = random_state

    def _net(self):
        if self.extractor is None or not hasattr(self.extractor, "head_logits"):
            raise ValueError("own-head classifies with the head of a fitted convnet:<arch> "
                             "extractor; none was given")
        check_is_fitted(self.extractor, "weights_")
        return self.extractor

    def fit(self, X, y) -> OwnHead:
        net = self._net()
        unknown = np.setdiff1d(np.unique(y), net.classes_)
        if len(unknown):
            raise ValueError(f"own-head: labels {unknown[:5].tolist()} are not among the "
                             f"network's classes {net.classes_.tolist()}")
        self.classes_ = np.asarray(net.classes_)
        self.n_features_in_ = int(np.asarray(X).shape[1])
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return self._net().head_logits(X)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]
