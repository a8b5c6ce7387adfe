"""Batch sizes per device (CNN probe, k-means patches) and the torch k-means encoding.

Every test runs on the CPU: the CUDA memory functions are faked where a probe is
tested; ``test_cuda_*`` run on a real GPU and are skipped elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

import featbench.features.cnn as cnn
from featbench.errors import ParameterError
from featbench.features import CNNEmbedding, KMeansPatches
from featbench.features.kmeans_patches import encode_images, gpu_batch_size
from featbench.params import parse_params
from featbench.plan import validate_plan
from featbench.runtime import OutOfMemoryError, probe_batch_size

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def kmeans(images):
    return KMeansPatches(n_centroids=16, n_patches=3000, kmeans_iter=5, device="cpu").fit(images)


def numpy_encode(est: KMeansPatches, images: np.ndarray) -> np.ndarray:
    """Coates et al.'s encoding in float64 numpy: every 6x6 patch, normalized, whitened,
    triangle-coded, summed over the 4 quadrants (split at round(27 / 2) = 14)."""
    p, K = est.patch_size, est.n_centroids
    out = []
    for img in images.astype(np.float64):
        win = sliding_window_view(img, (p, p), axis=(0, 1))  # (27, 27, 3, p, p): c, row, col
        rows, cols = win.shape[:2]
        P = win.reshape(rows * cols, -1)
        P = (P - P.mean(1, keepdims=True)) / np.sqrt(P.var(1, ddof=1, keepdims=True)
                                                     + est.norm_eps)
        Z = (P - est.mean_) @ est.whiten_.astype(np.float64)
        z = np.sqrt(((Z[:, None, :] - est.centroids_[None].astype(np.float64)) ** 2).sum(-1))
        A = np.maximum(0.0, z.mean(1, keepdims=True) - z).reshape(rows, cols, K)
        h, w = int(np.floor(rows / 2 + 0.5)), int(np.floor(cols / 2 + 0.5))
        out.append(np.concatenate([A[:h, :w].sum((0, 1)), A[:h, w:].sum((0, 1)),
                                   A[h:, :w].sum((0, 1)), A[h:, w:].sum((0, 1))]))
    return np.array(out)


def test_kmeans_torch_encoding_on_cpu_equals_numpy(kmeans, images):
    ref = numpy_encode(kmeans, images)
    F = kmeans.transform(images)
    assert F.shape == (10, 4 * 16) and F.dtype == np.float32
    np.testing.assert_allclose(F, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # the batch does not change the numbers (encode_images called directly)
    F3, used = encode_images(images, kmeans.mean_, kmeans.whiten_, kmeans.centroids_, 6, 1,
                             kmeans.norm_eps, torch.device("cpu"), 3)
    assert used == 3
    np.testing.assert_allclose(F3, F, rtol=1e-6, atol=1e-6 * np.abs(F).max())
    # and the reference itself is not trivially satisfied: another whitening differs
    other = numpy_encode(KMeansPatches(n_centroids=16, n_patches=3000, kmeans_iter=5,
                                       zca_eps=1.0).fit(images), images)
    assert not np.allclose(other, ref, rtol=1e-2)


def test_kmeans_auto_batch_per_device(kmeans, monkeypatch):
    assert KMeansPatches().batch_size == "auto"
    shape = (32, 32, 3)
    assert kmeans._batch_size(torch.device("cpu"), shape) == 4  # as it always was
    assert kmeans._batch_size(torch.device("mps"), shape) == 64
    assert KMeansPatches(batch_size=7)._batch_size(torch.device("cuda"), shape) == 7
    # CUDA: half the free memory over the bytes an image needs (K=1600: 15 MB at 32 px)
    per_image = 4 * 729 * (3 * 1600 + 4 * 108)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 80 * 2**30))
    assert gpu_batch_size(torch.device("cuda"), 729, 1600, 108) == 4 * 2**30 // per_image
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**40, 2**40))
    assert gpu_batch_size(torch.device("cuda"), 729, 1600, 108) == 1024
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**20, 2**40))
    assert gpu_batch_size(torch.device("cuda"), 729, 1600, 108) == 1
    for bad in (0, -2, 1.5, True, "big"):
        with pytest.raises(ParameterError, match="positive integer or 'auto'"):
            KMeansPatches(batch_size=bad)._batch_size(torch.device("cpu"), shape)


@pytest.mark.parametrize(("option", "ok"), [
    ("kmeans-patches.batch_size=auto", True), ("kmeans-patches.batch_size=16", True),
    ("kmeans-patches.batch_size=0", False), ("cnn:resnet18.batch_size=auto", True),
    ("cnn:resnet18.batch_size=256", True), ("cnn:resnet18.batch_size=huge", False),
])
def test_batch_size_constraints(option, ok):
    features = ["kmeans-patches", "cnn:resnet18"]
    if ok:
        validate_plan(features, ["ridge"], parse_params([option]))
    else:
        with pytest.raises(ParameterError, match="must be an int in the range"):
            validate_plan(features, ["ridge"], parse_params([option]))


def test_probe_finds_the_largest_batch_that_fits():
    calls: list[int] = []

    def fits_up_to(limit):
        def forward(batch):
            calls.append(batch)
            if batch > limit:
                raise OutOfMemoryError("CUDA out of memory (fake)")
        return forward

    assert probe_batch_size(fits_up_to(300), 64, 1024) == 256
    assert calls == [64, 128, 256, 512]
    assert probe_batch_size(fits_up_to(10**9), 64, 1024) == 1024  # the cap
    calls.clear()
    assert probe_batch_size(fits_up_to(20), 64, 1024) == 16  # halved below the start
    assert calls == [64, 32, 16]
    with pytest.raises(OutOfMemoryError):
        probe_batch_size(fits_up_to(0), 4, 1024)
    # the memory budget: 1 MB per image, 200 MB allowed
    last = []

    def forward(batch):
        last[:] = [batch]

    def used():
        return last[0] * 2.0**20

    assert probe_batch_size(forward, 64, 1024, used, 200 * 2.0**20) == 128
    assert probe_batch_size(forward, 64, 1024, used, 10 * 2.0**20) == 64  # the start fits


def test_cnn_auto_batch_is_64_on_cpu(images):
    est = CNNEmbedding("resnet18", weights=None, size=32, precision="fp32", device="cpu")
    assert est.batch_size == "auto"
    est.fit(images).transform(images)
    assert est.runtime_["batch_size"] == 64
    assert cnn.auto_batch_size(lambda b: pytest.fail("no probe off CUDA"),
                               torch.device("cpu"), ("k",)) == 64
    with pytest.raises(ParameterError, match="positive integer or 'auto'"):
        CNNEmbedding("resnet18", weights=None, batch_size="big").fit(images)


def test_cnn_cuda_probe_with_fake_memory(monkeypatch):
    """The CUDA branch, with CUDA's memory functions faked: 1 MB per image."""
    state = {"peak": 0.0}
    for name, fn in {"synchronize": lambda device=None: None,
                     "mem_get_info": lambda device=None: (1000 * 2**20, 2000 * 2**20),
                     "memory_allocated": lambda device=None: 0,
                     "memory_reserved": lambda device=None: 0,
                     "reset_peak_memory_stats": lambda device=None: state.update(peak=0.0),
                     "max_memory_allocated": lambda device=None: state["peak"],
                     "empty_cache": lambda: None}.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    monkeypatch.setattr(cnn, "_auto_batches", {})
    calls = []

    def run_blank(batch):
        calls.append(batch)
        if batch > 600:
            raise OutOfMemoryError("CUDA out of memory (fake)")
        state["peak"] = batch * 2.0**20

    cuda = torch.device("cuda")
    # budget 0.85 * 1000 MB: 512 fits, 1024 runs out of memory
    assert cnn.auto_batch_size(run_blank, cuda, ("a",)) == 512
    assert calls == [64, 128, 256, 512, 1024]
    assert cnn.auto_batch_size(run_blank, cuda, ("a",)) == 512  # cached per key
    assert len(calls) == 5
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (300 * 2**20, 0))
    assert cnn.auto_batch_size(run_blank, cuda, ("b",)) == 128  # 256 MB > 0.85 * 300 MB


@needs_cuda
def test_cuda_kmeans_matches_cpu(kmeans, images):
    gpu = KMeansPatches(**{**kmeans.get_params(), "device": "cuda"}).fit(images)
    cpu = kmeans.transform(images)
    np.testing.assert_allclose(gpu.transform(images), cpu, rtol=1e-4,
                               atol=1e-4 * np.abs(cpu).max())
    assert gpu._batch_size(torch.device("cuda"), images.shape[1:]) > 4


@needs_cuda
def test_cuda_cnn_auto_batch_probe(images):
    est = CNNEmbedding("resnet18", weights=None, size=64, device="cuda", precision="fp32")
    F = est.fit(images).transform(images)
    used = est.runtime_["batch_size"]
    assert 64 <= used <= 1024 and used & (used - 1) == 0
    ref = CNNEmbedding("resnet18", weights=None, size=64, device="cuda", precision="fp32",
                       batch_size=4).fit(images).transform(images)
    np.testing.assert_allclose(F, ref, rtol=1e-3, atol=1e-4)
