"""``knn``: weighted k-nearest-neighbour classification on L2-normalized features.

The k-NN evaluation of self-supervised representations (Wu et al. 2018; DINO, Caron et
al. 2021, ``eval_knn.py``; dinov2): each feature vector is scaled to unit length, the
``k`` training vectors of highest cosine similarity vote for their class with weight
``exp(similarity / T)``, T = 0.07, and the class with the largest sum wins. ``k`` is
chosen on the validation split like any other grid value (10, 20, 100, 200).

Departures from DINO's script: the similarities are computed a block of queries at a
time against all training vectors in float32 (DINO: float32 on the GPU, blocks of 1,000
test images too), on CUDA when present and the training matrix is large; ties between
classes go to the lowest class index (``argmax``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

#: query rows per similarity block (block x n_train float32 in memory at once)
BLOCK = 1024


def normalize_rows(X) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


class KNN(ClassifierMixin, BaseEstimator):
    """Temperature-weighted k-nearest-neighbour vote on cosine similarity (DINO's k-NN).

    Parameters
    ----------
    n_neighbors : int, default=20
        Neighbours that vote (at most the number of training vectors).
    temperature : float, default=0.07
        T of the vote weights ``exp(similarity / T)``.
    device : str, default="auto"
        Torch device of the similarity search: "auto" (CUDA when present and the
        training matrix holds at least 10^7 numbers), "cpu", "cuda", "cuda:N", "mps".
    random_state : int, optional
        Unused (nothing is random); every registered classifier takes one.

    Attributes
    ----------
    classes_ : ndarray
        The labels, in the order of the vote columns.
    n_features_in_ : int

    References
    ----------
    .. [1] Z. Wu, Y. Xiong, S. Yu and D. Lin, "Unsupervised feature learning via
       non-parametric instance discrimination", CVPR 2018.
    .. [2] M. Caron et al., "Emerging properties in self-supervised vision transformers"
       (DINO), ICCV 2021, and its ``eval_knn.py``.
    """

    def __init__(self, n_neighbors: int = 20, temperature: float = 0.07,
                 device: str = "auto", random_state: int | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.temperature = temperature
        self.device = device
        self.random_state = random_state

    def fit(self, X, y) -> KNN:
        X, y = validate_data(self, X, y, dtype=np.float32)
        if int(self.n_neighbors) > len(X):
            raise ValueError(f"knn: n_neighbors={self.n_neighbors} is more than the "
                             f"{len(X)} training vectors")
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self._X = normalize_rows(X)
        self._y = y_index.astype(np.int64)
        return self

    def _device(self):
        from ..runtime import AUTO_CUDA_MIN_SIZE, check_device

        device = check_device(self.device)
        if self.device == "auto" and device.type == "cuda" and \
                self._X.size < AUTO_CUDA_MIN_SIZE:
            import torch

            return torch.device("cpu")
        return device

    def decision_function(self, X) -> np.ndarray:
        """The weighted votes ``(n, n_classes)`` of each row's neighbours."""
        import torch

        check_is_fitted(self, "classes_")
        X = normalize_rows(validate_data(self, X, dtype=np.float32, reset=False))
        device = self._device()
        train = torch.from_numpy(self._X).to(device)
        labels = torch.from_numpy(self._y).to(device)
        k, n_classes = int(self.n_neighbors), len(self.classes_)
        out = []
        for start in range(0, len(X), BLOCK):
            q = torch.from_numpy(X[start:start + BLOCK]).to(device)
            sims, idx = (q @ train.T).topk(k, dim=1)
            weights = (sims / float(self.temperature)).exp()
            votes = torch.zeros(len(q), n_classes, device=device, dtype=weights.dtype)
            votes.scatter_add_(1, labels[idx], weights)
            out.append(votes.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags
