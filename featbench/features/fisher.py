"""Improved Fisher vectors (Perronnin, Sánchez & Mensink 2010)."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted

from .bovw import CodebookExtractor, power_l2

#: what a fitted PCA needs to project (``transform``), and a diagonal GMM to give
#: posteriors (``predict_proba``): the arrays :meth:`FisherVector.fitted_state` exports
_PCA_STATE = ("components_", "mean_", "explained_variance_")
_GMM_STATE = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def fisher_encode(desc: np.ndarray, gmm: GaussianMixture, power: bool = True) -> np.ndarray:
    """Fisher vector of each image: gradients w.r.t. the GMM means and variances.

    For descriptors ``x_t`` (t = 1..T) with posteriors ``g_tk`` under a diagonal GMM
    (weights ``w_k``, means ``mu_k``, standard deviations ``s_k``)::

        u_k = 1 / (T sqrt(w_k))   sum_t g_tk (x_t - mu_k) / s_k
        v_k = 1 / (T sqrt(2 w_k)) sum_t g_tk [((x_t - mu_k) / s_k)^2 - 1]

    concatenated as ``[u_1..u_K, v_1..v_K]`` (``2 K dim`` numbers), then signed
    square root and L2 normalization (the "improved" Fisher vector).
    """
    n, T, d = desc.shape
    w, mu = gmm.weights_, gmm.means_
    sigma = np.sqrt(gmm.covariances_)
    gamma = gmm.predict_proba(desc.reshape(n * T, d).astype(np.float64)).reshape(n, T, -1)
    X = desc.astype(np.float64)
    # sums over descriptors: S0 = sum g, S1 = sum g x, S2 = sum g x^2
    S0 = gamma.sum(1)  # (n, K)
    S1 = np.einsum("ntk,ntd->nkd", gamma, X)
    S2 = np.einsum("ntk,ntd->nkd", gamma, X * X)
    u = (S1 - mu[None] * S0[..., None]) / sigma[None]
    v = (S2 - 2 * mu[None] * S1 + (mu**2)[None] * S0[..., None]) / (sigma**2)[None] \
        - S0[..., None]
    u /= T * np.sqrt(w)[None, :, None]
    v /= T * np.sqrt(2 * w)[None, :, None]
    return power_l2(np.concatenate([u.reshape(n, -1), v.reshape(n, -1)], axis=1), power)


class FisherVector(CodebookExtractor):
    """Improved Fisher vector of dense local descriptors.

    Parameters
    ----------
    n_components : int, default=64
        Gaussians K of the diagonal GMM; output ``2 * K * dim`` numbers.
    pca_dim : int or None, default=64
        Reduce descriptors with PCA (fitted on the training sample) first; None keeps them.
    descriptor, step, patch_sizes, max_descriptors, random_state
        As in :class:`~featbench.features.bovw.BagOfVisualWords`.
    power_norm : bool, default=True
        Signed square root before L2 normalization.
    spatial : bool, default=False
        Append each descriptor's position in the image, ``(x, y)`` in [-0.5, 0.5),
        to it after PCA, so that the GMM also models where its words occur (spatial
        Fisher vector, Sanchez et al. 2012 [2]_); ``2 * K * (pca_dim + 2)`` numbers.

    Attributes
    ----------
    pca_ : PCA or None
    gmm_ : GaussianMixture

    References
    ----------
    .. [1] F. Perronnin, J. Sánchez and T. Mensink, "Improving the Fisher kernel for
       large-scale image classification", ECCV 2010.
    .. [2] J. Sanchez, F. Perronnin and T. de Campos, "Modeling the spatial layout of
       images beyond spatial pyramids", Pattern Recognition Letters 33(16), 2012.
    """

    def __init__(self, n_components: int = 64, pca_dim: int | None = 64,
                 descriptor: str = "sift", step: int = 2, patch_sizes: tuple[int, ...] = (8,),
                 power_norm: bool = True, spatial: bool = False,
                 max_descriptors: int = 100_000, random_state: int | None = 0) -> None:
        self.n_components = n_components
        self.pca_dim = pca_dim
        self.descriptor = descriptor
        self.step = step
        self.patch_sizes = patch_sizes
        self.power_norm = power_norm
        self.spatial = spatial
        self.max_descriptors = max_descriptors
        self.random_state = random_state

    def fitted_state(self) -> dict[str, np.ndarray | float | int | None]:
        """The PCA and the GMM as plain arrays (no pickled scikit-learn objects);
        :meth:`set_fitted_state` rebuilds them."""
        check_is_fitted(self, "image_shape_")
        state: dict[str, np.ndarray | float | int | None] = {
            "image_shape_": np.asarray(self.image_shape_, dtype=np.int64)}
        if self.pca_ is not None:
            state.update({f"pca_{name}": getattr(self.pca_, name) for name in _PCA_STATE})
        state.update({f"gmm_{name}": getattr(self.gmm_, name) for name in _GMM_STATE})
        return state

    def set_fitted_state(self, state: dict[str, np.ndarray | float | int | None]
                         ) -> FisherVector:
        """Rebuild the PCA (when fitted) and the GMM from :meth:`fitted_state`'s arrays:
        they project and give posteriors exactly as the fitted ones.

        Raises
        ------
        ValueError
            When the state lacks an array this extractor needs.
        """
        pca = "pca_components_" in state
        needed = {"image_shape_", *(f"gmm_{n}" for n in _GMM_STATE),
                  *((f"pca_{n}" for n in _PCA_STATE) if pca else ())}
        missing = sorted(needed - state.keys())
        if missing:
            raise ValueError(f"FisherVector: fitted state lacks {', '.join(missing)}")
        self.image_shape_ = tuple(int(v) for v in np.asarray(state["image_shape_"]))
        self.pca_ = None
        if pca:
            self.pca_ = PCA(self.pca_dim, random_state=self.random_state)
            for name in _PCA_STATE:
                setattr(self.pca_, name, state[f"pca_{name}"])
            self.pca_.n_components_ = int(self.pca_.components_.shape[0])
            self.pca_.n_features_in_ = int(self.pca_.components_.shape[1])
        gmm = GaussianMixture(self.n_components, covariance_type="diag",
                              random_state=self.random_state, max_iter=100, reg_covar=1e-4)
        for name in _GMM_STATE:
            setattr(gmm, name, state[f"gmm_{name}"])
        gmm.precisions_ = gmm.precisions_cholesky_**2  # as scikit-learn sets it ("diag")
        gmm.n_features_in_ = int(gmm.means_.shape[1])
        self.gmm_ = gmm
        return self

    def _project(self, D: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """PCA-reduced descriptors, with their centred positions appended if ``spatial``."""
        P = D if self.pca_ is None else self.pca_.transform(D).astype(np.float32)
        if self.spatial:
            P = np.hstack([P, (positions - 0.5).astype(np.float32)])
        return P

    def _fit_codebook(self, D: np.ndarray, positions: np.ndarray) -> None:
        self.pca_ = None
        if self.pca_dim is not None:
            self.pca_ = PCA(self.pca_dim, random_state=self.random_state).fit(D)
        self.gmm_ = GaussianMixture(self.n_components, covariance_type="diag",
                                    random_state=self.random_state, max_iter=100,
                                    reg_covar=1e-4).fit(self._project(D, positions))

    def _encode(self, desc: np.ndarray, positions: np.ndarray) -> np.ndarray:
        n, m, d = desc.shape
        proj = self._project(desc.reshape(n * m, d), np.tile(positions, (n, 1)))
        return fisher_encode(proj.reshape(n, m, -1), self.gmm_, self.power_norm)
