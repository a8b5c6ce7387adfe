"""Single-layer k-means features (Coates, Lee & Ng 2011), encoded with torch.

Random 6 x 6 patches of the training images are brightness/contrast normalized and
ZCA-whitened; k-means learns K centroids. An image is encoded at every patch
position (stride 1) with the "triangle" activation ``max(0, mean(z) - z_k)`` of the
distances ``z_k`` to the centroids, and the activations are summed over the four
quadrants of the image (4K features).

The encoding runs in float32 torch, on the CPU in small batches (they stay in the
CPU cache) or on a GPU in batches sized to its free memory (:func:`encode_images`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state

from ..errors import ParameterError
from ..runtime import check_device, resolve_device, run_batches, tf32_mode  # noqa: F401
from .base import ImageExtractor

#: images per torch call on the CPU (``batch_size="auto"``): see KMeansPatches
CPU_BATCH = 4
#: images per call of each encoding thread on a multi-core CPU (see KMeansPatches._extract)
CPU_THREAD_BATCH = 2
#: the most images per call on a GPU, and the share of its free memory a batch may use
GPU_MAX_BATCH, GPU_MEMORY_SHARE = 1024, 0.5


def normalize_patches(P: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """Per-patch brightness and contrast normalization: ``(x - mean) / sqrt(var + eps)``."""
    mean = P.mean(dim=dim, keepdim=True)
    var = P.var(dim=dim, keepdim=True, unbiased=True)
    return (P - mean) / torch.sqrt(var + eps)


def prepare_centroids(centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(-2 C^T, ||c_k||^2)``: the centroids as :func:`triangle_encode` multiplies by them
    (computed once per extraction, not once per batch)."""
    return (-2.0 * centroids).T.contiguous(), (centroids * centroids).sum(-1)


def triangle_encode(Z: torch.Tensor, centroids: torch.Tensor,
                    prepared: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``max(0, mean_k(z) - z_k)`` with ``z_k = ||x - c_k||``, for rows ``x`` of ``Z``.

    ``prepared`` is :func:`prepare_centroids` of ``centroids``. The squared distance
    ``||x||^2 - 2 x.c_k + ||c_k||^2`` comes out of one ``addmm`` (the centroid norms as
    its bias) and every later step works in place on that ``(rows x K)`` array, the
    big one: five passes over it instead of ten (1.4x on 2 cores, K = 1,600).
    """
    CT, c2 = prepared if prepared is not None else prepare_centroids(centroids)
    lead, d = Z.shape[:-1], Z.shape[-1]
    Z = Z.reshape(-1, d)
    z = torch.addmm(c2, Z, CT)  # ||c_k||^2 - 2 x.c_k
    z.add_((Z * Z).sum(-1, keepdim=True)).clamp_(min=0.0).sqrt_()
    mean = z.mean(-1, keepdim=True)
    return torch.sub(mean, z, out=z).relu_().reshape(*lead, -1)  # max(0, mean - z)


def quadrant_pooling(rows: int, cols: int, dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``(4, rows * cols)`` 0/1 matrix whose product with ``(rows * cols, K)`` activations
    sums them over the 4 image quadrants (see :func:`quadrant_sum`)."""
    hr, hc = int(np.floor(rows / 2 + 0.5)), int(np.floor(cols / 2 + 0.5))
    P = torch.zeros(4, rows, cols, dtype=dtype, device=device)
    P[0, :hr, :hc] = P[1, :hr, hc:] = P[2, hr:, :hc] = P[3, hr:, hc:] = 1.0
    return P.reshape(4, rows * cols)


def quadrant_sum(A: torch.Tensor, pooling: torch.Tensor | None = None) -> torch.Tensor:
    """Sum ``(n, rows, cols, K)`` activations over the 4 image quadrants -> ``(n, 4K)``.

    The split is at ``round(rows / 2)`` (halves rounded up), as in Coates et al.'s
    code; the quadrant order is top-left, top-right, bottom-left, bottom-right. The
    sums are one matrix product with :func:`quadrant_pooling` (``pooling``, made once
    per extraction when given): one pass over ``A``.
    """
    n, rows, cols, K = A.shape
    if pooling is None:
        pooling = quadrant_pooling(rows, cols, A.dtype, A.device)
    return torch.matmul(pooling, A.reshape(n, rows * cols, K)).reshape(n, 4 * K)


def encode_images(images: np.ndarray, mean: np.ndarray, whiten: np.ndarray,
                  centroids: np.ndarray, patch_size: int, stride: int, norm_eps: float,
                  device: torch.device, batch_size: int) -> tuple[np.ndarray, int]:
    """Triangle code of every patch of uint8 ``(n, h, w, 3)`` images, quadrant-summed.

    Runs on ``device`` in float32, ``batch_size`` images per call (halved when the
    device runs out of memory). Returns ``(n, 4K)`` float32 features and the batch
    size that worked.
    """
    whiten_t = torch.from_numpy(whiten).to(device)
    # (x - mean) W = x W - mean W: the mean leaves the per-patch work
    mean_w = torch.from_numpy(mean).to(device) @ whiten_t
    centroids_t = torch.from_numpy(centroids).to(device)
    prepared = prepare_centroids(centroids_t)
    p, s = patch_size, stride
    pooling: dict[tuple[int, int], torch.Tensor] = {}

    def encode(start: int, stop: int) -> torch.Tensor:
        with torch.inference_mode(), tf32_mode(False):  # fp32 means IEEE float32
            x = torch.tensor(images[start:stop], device=device)
            x = x.permute(0, 3, 1, 2).float()
            b, _, h, w = x.shape
            rows, cols = (h - p) // s + 1, (w - p) // s + 1
            patches = F.unfold(x, p, stride=s).transpose(1, 2)  # (b, L, 3 p p)
            Z = torch.matmul(normalize_patches(patches, norm_eps), whiten_t).sub_(mean_w)
            A = triangle_encode(Z, centroids_t, prepared).reshape(b, rows, cols, -1)
            if (rows, cols) not in pooling:
                pooling[rows, cols] = quadrant_pooling(rows, cols, A.dtype, device)
            return quadrant_sum(A, pooling[rows, cols]).cpu()

    # the shared runtime halves the batch when the device runs out of memory
    out, used = run_batches(encode, len(images), batch_size)
    if not out:
        return np.zeros((0, 4 * len(centroids)), np.float32), used
    return torch.cat(out).numpy().astype(np.float32), used


def gpu_batch_size(device: torch.device, n_positions: int, n_centroids: int, dim: int) -> int:
    """Images per call that use at most GPU_MEMORY_SHARE of the device's free memory.

    Per image the encoding holds the patches (``n_positions x dim``, a few copies) and
    the ``n_positions x n_centroids`` distances (the product and one temporary).
    """
    per_image = 4 * n_positions * (3 * n_centroids + 4 * dim)
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(GPU_MAX_BATCH, GPU_MEMORY_SHARE * free // per_image)))


class KMeansPatches(ImageExtractor):
    """Coates et al.'s single-layer network: whitened patches, k-means, triangle code.

    Parameters
    ----------
    n_centroids : int, default=1600
        K; the output has 4K numbers (sum pooling over 4 quadrants).
    patch_size : int, default=6
        Receptive field in pixels (patches are ``patch_size**2 * 3`` numbers).
    stride : int, default=1
        Step between encoded patch positions.
    n_patches : int, default=400000
        Random training patches used for whitening and k-means.
    norm_eps : float, default=10.0
        Added to the patch variance (pixel values 0-255) in contrast normalization.
    zca_eps : float, default=0.1
        Added to the eigenvalues in ZCA whitening.
    kmeans_iter : int, default=30
        Lloyd iterations of k-means (scikit-learn's KMeans, k-means++ start).
    device : str, default="auto"
        Torch device for the encoding: "auto", "cpu", "cuda", "cuda:N", "mps".
    batch_size : int or "auto", default="auto"
        Images encoded per torch call. "auto": on a CPU with several cores, 2 per call
        in one Python thread per core (one torch thread each: 411-441 images/s on 2
        cores against 322 with 4 images per call and 2 torch threads, K = 1600); 4 on a
        single core (small batches keep the ``729 x K`` activation arrays in the CPU
        cache); on CUDA as many as fit in half of the free device memory (at most 1,024; see
        :func:`gpu_batch_size`); 64 on MPS.
    random_state : int, default=0
        Seed of the patch sample and of k-means.

    Attributes
    ----------
    mean_ : ndarray of shape (dim,)
        Mean of the normalized patches.
    whiten_ : ndarray of shape (dim, dim)
        ZCA whitening matrix.
    centroids_ : ndarray of shape (n_centroids, dim)

    References
    ----------
    .. [1] A. Coates, H. Lee and A. Y. Ng, "An analysis of single-layer networks in
       unsupervised feature learning", AISTATS 2011.
    """

    _chunk_size = 512
    learns_from_images = True
    _n_jobs = 1  # torch parallelizes inside each batch
    #: parameters that do not change the features: left out of the cache key
    _cache_exclude = ("device", "batch_size")
    #: fitted attributes that :meth:`fitted_state` exports
    _state_names = ("mean_", "whiten_", "centroids_")

    def __init__(self, n_centroids: int = 1600, patch_size: int = 6, stride: int = 1,
                 n_patches: int = 400_000, norm_eps: float = 10.0, zca_eps: float = 0.1,
                 kmeans_iter: int = 30, device: str = "auto", batch_size: int | str = "auto",
                 random_state: int | None = 0) -> None:
        self.n_centroids = n_centroids
        self.patch_size = patch_size
        self.stride = stride
        self.n_patches = n_patches
        self.norm_eps = norm_eps
        self.zca_eps = zca_eps
        self.kmeans_iter = kmeans_iter
        self.device = device
        self.batch_size = batch_size
        self.random_state = random_state

    def check_plan(self, name: str, fit_images: tuple[int, int, int] | None = None) -> None:
        """Fail before any work on settings the fit cannot meet: more centroids than
        sampled patches, or patches larger than the ``(n, height, width)`` fit images."""
        if int(self.n_centroids) > int(self.n_patches):
            raise ParameterError(
                f"-p {name}.n_centroids={self.n_centroids}: must be at most n_patches="
                f"{self.n_patches}, the patches k-means is fitted on")
        if fit_images is not None and int(self.patch_size) > min(fit_images[1:]):
            raise ParameterError(
                f"-p {name}.patch_size={self.patch_size}: must be at most "
                f"{min(fit_images[1:])}, the side of the {fit_images[1]}x{fit_images[2]} px "
                f"images the extractor sees")

    def _fit(self, X, y=None) -> None:
        self.check_plan("kmeans-patches")
        rng = check_random_state(self.random_state)
        n, h, w, _ = X.shape
        p = self.patch_size
        if p > min(h, w):
            raise ValueError(f"patch_size {p} is larger than the {h}x{w} images")
        # Random patches, flattened channel-major (c, row, col) like torch's unfold.
        i = rng.randint(0, n, self.n_patches)
        r = rng.randint(0, h - p + 1, self.n_patches)
        c = rng.randint(0, w - p + 1, self.n_patches)
        rows = r[:, None, None] + np.arange(p)[None, :, None]
        cols = c[:, None, None] + np.arange(p)[None, None, :]
        patches = X[i[:, None, None], rows, cols]  # (m, p, p, 3)
        patches = patches.transpose(0, 3, 1, 2).reshape(self.n_patches, -1).astype(np.float32)
        patches = normalize_patches(torch.from_numpy(patches), self.norm_eps).numpy()
        # ZCA whitening.
        self.mean_ = patches.mean(0)
        cov = np.cov(patches - self.mean_, rowvar=False)
        evals, evecs = np.linalg.eigh(cov)
        self.whiten_ = (evecs @ np.diag(1.0 / np.sqrt(evals + self.zca_eps)) @ evecs.T
                        ).astype(np.float32)
        white = (patches - self.mean_) @ self.whiten_
        km = KMeans(self.n_centroids, n_init=1, max_iter=self.kmeans_iter,
                    random_state=self.random_state)
        self.centroids_ = km.fit(white).cluster_centers_.astype(np.float32)

    def cache_token(self) -> dict[str, str]:
        """What the store key needs beyond the parameters: the encoding's precision
        (always fp32, TF32 off) and the device type it runs on (``cpu``, ``cuda``, ``mps``)."""
        return {"precision": "fp32", "device": check_device(self.device).type}

    def _batch_size(self, device: torch.device, image_shape: tuple[int, ...]) -> int:
        """``batch_size`` as set, or resolved for ``device`` when "auto"."""
        size = self.batch_size
        if size != "auto":
            if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
                raise ParameterError(f"batch_size must be a positive integer or 'auto'; "
                                     f"got {size!r}")
            return int(size)
        if device.type == "cpu":
            return CPU_BATCH
        if device.type != "cuda":
            return 64
        h, w = image_shape[:2]
        p, s = self.patch_size, self.stride
        positions = ((h - p) // s + 1) * ((w - p) // s + 1)
        return gpu_batch_size(device, positions, self.n_centroids, 3 * p * p)

    def _extract(self, images: np.ndarray) -> np.ndarray:
        device = check_device(self.device)
        batch_size = self._batch_size(device, images.shape[1:])
        args = (self.mean_, self.whiten_, self.centroids_, self.patch_size, self.stride,
                self.norm_eps, device)
        threads = torch.get_num_threads()
        if device.type != "cpu" or threads < 2 or len(images) < 2 * threads:
            return encode_images(images, *args, batch_size)[0]
        # on the CPU: one Python thread per core, each with one torch thread, small
        # batches (CPU_THREAD_BATCH images): no OpenMP barrier inside the element-wise
        # passes, which take three quarters of the time; each image's numbers are the
        # same as in one call (every operation is per image)
        size = CPU_THREAD_BATCH if self.batch_size == "auto" else batch_size
        chunks = np.array_split(np.arange(len(images)), threads * 8)
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(threads) as pool:
                parts = list(pool.map(
                    lambda c: encode_images(images[c[0]:c[-1] + 1], *args, size)[0],
                    [c for c in chunks if len(c)]))
        finally:
            torch.set_num_threads(threads)
        return np.concatenate(parts)
