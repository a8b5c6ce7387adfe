"""The fused k-means triangle encoding equals the implementation it replaced.

The reference below is featbench 0.2's ``encode_images`` (mean subtracted before the
whitening, distances from a separate matrix product and broadcast sums, quadrant sums by
slicing), kept here verbatim in its arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featbench.features.kmeans_patches import (
    encode_images,
    normalize_patches,
    quadrant_pooling,
    quadrant_sum,
)


def _previous(images, mean, whiten, centroids, p=6, s=1, eps=10.0):
    x = torch.tensor(images).permute(0, 3, 1, 2).float()
    b, _, h, w = x.shape
    rows, cols = (h - p) // s + 1, (w - p) // s + 1
    patches = F.unfold(x, p, stride=s).transpose(1, 2)
    Z = (normalize_patches(patches, eps) - torch.from_numpy(mean)) @ torch.from_numpy(whiten)
    C = torch.from_numpy(centroids)
    z = torch.matmul(Z, C.T).mul_(-2.0)
    z.add_((Z * Z).sum(-1, keepdim=True)).add_((C * C).sum(-1))
    z.clamp_(min=0.0).sqrt_()
    A = z.mean(-1, keepdim=True).sub(z).relu_().reshape(b, rows, cols, -1)
    hr, hc = int(np.floor(rows / 2 + 0.5)), int(np.floor(cols / 2 + 0.5))
    quads = [A[:, :hr, :hc], A[:, :hr, hc:], A[:, hr:, :hc], A[:, hr:, hc:]]
    return torch.cat([q.sum(dim=(1, 2)) for q in quads], dim=1).numpy()


def _float64(images, mean, whiten, centroids, p=6, s=1, eps=10.0):
    """The same encoding in float64 with exact distances (``torch.cdist``)."""
    x = torch.tensor(images).permute(0, 3, 1, 2).double()
    b, _, h, w = x.shape
    rows, cols = (h - p) // s + 1, (w - p) // s + 1
    P = F.unfold(x, p, stride=s).transpose(1, 2)
    P = (P - P.mean(-1, keepdim=True)) / torch.sqrt(P.var(-1, keepdim=True) + eps)
    Z = (P - torch.from_numpy(mean).double()) @ torch.from_numpy(whiten).double()
    z = torch.cdist(Z, torch.from_numpy(centroids).double()[None].expand(b, -1, -1))
    A = (z.mean(-1, keepdim=True) - z).relu().reshape(b, rows, cols, -1).numpy()
    hr, hc = int(np.floor(rows / 2 + 0.5)), int(np.floor(cols / 2 + 0.5))
    return np.concatenate([A[:, :hr, :hc].sum((1, 2)), A[:, :hr, hc:].sum((1, 2)),
                           A[:, hr:, :hc].sum((1, 2)), A[:, hr:, hc:].sum((1, 2))], 1)


def _model(K: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=108).astype(np.float32) * 0.1
    A = rng.normal(size=(108, 108)) * 0.05
    whiten = (np.eye(108) + A @ A.T).astype(np.float32)
    centroids = rng.normal(size=(K, 108)).astype(np.float32)
    return mean, whiten, centroids


def _check(images, K, stride=1, batch=4):
    mean, whiten, centroids = _model(K)
    ours, _ = encode_images(images, mean, whiten, centroids, 6, stride, 10.0,
                            torch.device("cpu"), batch)
    ref = _previous(images, mean, whiten, centroids, s=stride)
    exact = _float64(images, mean, whiten, centroids, s=stride)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    # float32 rounding only: within 5e-6 of each image's largest feature, of the previous
    # implementation and of float64 (summing 729 equal activations of a flat image in
    # another order moves the sum by up to 2.5e-6 of it; other images stay below 1e-6)
    scale = np.abs(exact).max(axis=1, keepdims=True)
    assert (np.abs(ours - ref) / scale).max() < 5e-6
    assert (np.abs(ours - exact) / scale).max() < 5e-6
    return np.abs(ours - exact) / scale


def test_equals_previous_encoding_on_cifar(cifar_sample):
    images, _ = cifar_sample
    err = _check(images[:32], K=1600)
    assert err.max() < 1e-6


@pytest.mark.parametrize("shape", [(3, 31, 29, 3), (2, 7, 6, 3), (2, 32, 32, 3)])
def test_equals_previous_encoding_on_edge_cases(shape):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    images[0] = 128  # a flat image: every patch normalizes to zero
    if shape[0] > 2:
        images[1, ..., 0] = 255  # a saturated channel
    _check(images, K=64)
    _check(images, K=64, stride=2, batch=1)


def test_quadrant_pooling_equals_slicing_for_odd_and_even_maps():
    rng = np.random.default_rng(0)
    for rows, cols in [(1, 1), (2, 3), (27, 27), (26, 5)]:
        A = torch.from_numpy(rng.normal(size=(2, rows, cols, 3)).astype(np.float32))
        hr, hc = int(np.floor(rows / 2 + 0.5)), int(np.floor(cols / 2 + 0.5))
        an = A.numpy()
        ref = np.concatenate([an[:, :hr, :hc].sum((1, 2)), an[:, :hr, hc:].sum((1, 2)),
                              an[:, hr:, :hc].sum((1, 2)), an[:, hr:, hc:].sum((1, 2))], 1)
        np.testing.assert_allclose(quadrant_sum(A).numpy(), ref, rtol=1e-5, atol=1e-5)
        P = quadrant_pooling(rows, cols)
        assert P.sum().item() == rows * cols and (P.sum(0) == 1).all()


def test_threaded_cpu_encoding_equals_one_call():
    """With several torch threads the CPU encoding runs one Python thread per core (one
    torch thread each, 2 images per call): the same numbers as one call, in order."""
    import torch

    from featbench.features.kmeans_patches import KMeansPatches, encode_images

    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (37, 16, 16, 3), dtype=np.uint8)
    est = KMeansPatches(n_centroids=24, n_patches=3000, device="cpu").fit(X)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = est.transform(X)
        assert torch.get_num_threads() == 2  # restored after the threaded section
    finally:
        torch.set_num_threads(before)
    ref, _ = encode_images(X, est.mean_, est.whiten_, est.centroids_, 6, 1, est.norm_eps,
                           torch.device("cpu"), 37)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-5)
