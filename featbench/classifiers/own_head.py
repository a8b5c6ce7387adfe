"""``own-head``: a ConvNet's own trained softmax head, as a classifier on its features.

The "ConvNet end to end" number of CS231n Lecture 5: the network that
``convnet:<arch>`` trained classifies with its final linear layer, on the penultimate
activations it extracted; nothing is fitted or tuned here. ``fit`` takes the fitted
extractor (the runner passes it, :mod:`featbench.end_to_end`)::

    head = OwnHead().fit(F_train, y_train, extractor=net)  # checks, takes classes_
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
    tta : bool, optional
        Test-time flip (each image's logits averaged with its mirror image's) when the
        runner scores images; None: the architecture's setting (``resnet-small`` yes,
        ``convnetjs`` no). :meth:`predict` on features never flips: a feature vector
        has no mirror image.
    random_state : int, optional
        Unused (nothing here is random); every registered classifier takes one.

    Attributes
    ----------
    extractor_ : ConvNet
        The fitted extractor given to :meth:`fit`.
    classes_ : ndarray
        The extractor's classes, in the order of its logits.

    Notes
    -----
    ``fit`` learns nothing: the head was trained with the network, on the training
    images less the validation split (the tuned classifiers are refitted on train and
    validation together once their value is chosen). It only checks that the labels
    are the network's.
    """

    def __init__(self, tta: bool | None = None, random_state: int | None = None) -> None:
        self.tta = tta
        self.random_state = random_state

    def fit(self, X, y, extractor: Any = None) -> OwnHead:
        """Take ``extractor``'s head (a fitted ``convnet:<arch>``); check the labels."""
        if extractor is None or not hasattr(extractor, "head_logits"):
            raise ValueError("own-head classifies with the head of a fitted convnet:<arch> "
                             "extractor: pass it, fit(X, y, extractor=net)")
        check_is_fitted(extractor, "weights_")
        self.extractor_ = net = extractor
        unknown = np.setdiff1d(np.unique(y), net.classes_)
        if len(unknown):
            raise ValueError(f"own-head: labels {unknown[:5].tolist()} are not among the "
                             f"network's classes {net.classes_.tolist()}")
        self.classes_ = np.asarray(net.classes_)
        self.n_features_in_ = int(np.asarray(X).shape[1])
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "extractor_")
        return self.extractor_.head_logits(X)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]
