"""Bag of words, VLAD, Fisher vectors and Coates k-means features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.mixture import GaussianMixture

from featbench.cli import main
from featbench.features import VLAD, BagOfVisualWords, FisherVector, KMeansPatches
from featbench.features.fisher import fisher_encode
from featbench.features.kmeans_patches import quadrant_sum, triangle_encode
from featbench.features.local import dense_descriptors, grid_centers
from featbench.features.vlad import vlad_encode

SMALL = {
    "bovw": dict(n_words=16, step=8, max_descriptors=2000),
    "vlad": dict(n_words=4, step=8, max_descriptors=2000),
    "fisher": dict(n_components=3, pca_dim=8, step=8, max_descriptors=2000),
    "kmeans-patches": dict(n_centroids=8, n_patches=2000, kmeans_iter=5),
}


@pytest.fixture(scope="module")
def images():
    from skimage import data
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    out = []
    for img in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket()):
        for _ in range(6):
            r, c = rng.integers(0, 200, 2)
            crop = img[r:r + 96, c:c + 96, :3]
            out.append((resize(crop, (32, 32), anti_aliasing=True) * 255).astype(np.uint8))
    return np.stack(out)


def test_dense_grid_and_descriptors(images):
    assert len(grid_centers(32, 32, 2, 8)) == 169  # the calibration's 13 x 13 grid
    desc, pos = dense_descriptors(images[:3], "sift", step=4, patch_sizes=(8, 12))
    assert desc.shape == (3, 49 + 36, 128) and pos.shape == (85, 2)
    assert desc.dtype == np.float32 and desc.max() > 0
    patches, _ = dense_descriptors(images[:2], "patch", step=8, patch_sizes=(8,))
    assert patches.shape == (2, 16, 64)
    np.testing.assert_allclose(patches.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(patches, axis=-1)[patches.std(-1) > 0], 1,
                               atol=1e-4)


@pytest.mark.parametrize(
    "est, dim",
    [
        (BagOfVisualWords(pyramid_levels=1, **SMALL["bovw"]), 16),
        (BagOfVisualWords(pyramid_levels=2, **SMALL["bovw"]), 16 * 5),
        (BagOfVisualWords(pyramid_levels=3, **SMALL["bovw"]), 16 * 21),
        (BagOfVisualWords(descriptor="patch", assignment="soft", **SMALL["bovw"]), 16 * 5),
        (VLAD(**SMALL["vlad"]), 4 * 128),
        (FisherVector(**SMALL["fisher"]), 2 * 3 * 8),
        (FisherVector(n_components=2, pca_dim=None, step=8, max_descriptors=500), 2 * 2 * 128),
        (FisherVector(spatial=True, **SMALL["fisher"]), 2 * 3 * (8 + 2)),
        (BagOfVisualWords(descriptor="rootsift", **SMALL["bovw"]), 16 * 5),
        (KMeansPatches(**SMALL["kmeans-patches"]), 4 * 8),
    ],
)
def test_dimensions_and_normalization(images, est, dim):
    F = est.fit(images[:16]).transform(images[16:])
    assert F.shape == (8, dim) and np.isfinite(F).all()
    if not isinstance(est, KMeansPatches):
        np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1, atol=1e-5)  # L2 normalized


#: what each extractor learns in fit (attribute paths of :func:`_learned`)
LEARNED = {
    "bovw": {"codebook_", "sigma_"},
    "vlad": {"codebook_"},
    "fisher": {"pca_.mean_", "pca_.components_", "gmm_.weights_", "gmm_.means_",
               "gmm_.covariances_"},
    "kmeans-patches": {"mean_", "whiten_", "centroids_"},
}


def _learned(est, prefix=""):
    """Every fitted attribute (name ending in ``_``) as a copied numeric array, those of
    fitted scikit-learn sub-models (Fisher vectors' PCA and GMM) included."""
    out = {}
    for k, v in vars(est).items():
        if not k.endswith("_") or k.startswith("_"):
            continue
        if hasattr(v, "get_params"):
            out.update(_learned(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = np.array(v, copy=True)
    return out


def _assert_same_state(got, expected):
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


@pytest.mark.parametrize("name", list(SMALL))
def test_codebook_learned_from_train_only_and_seeded(images, name):
    from featbench.features import get_extractor

    train, test = images[:16], images[16:]
    est = get_extractor(name, **SMALL[name]).fit(train)
    state = _learned(est)
    assert LEARNED[name] <= state.keys()
    assert all(v.dtype.kind in "biuf" for v in state.values())  # numbers, not objects
    F_test = est.transform(test)
    est.transform(np.concatenate([train, test]))
    _assert_same_state(_learned(est), state)  # transforming changes nothing learned
    same = get_extractor(name, **SMALL[name]).fit(train)
    _assert_same_state(_learned(same), state)  # same seed, same codebook
    np.testing.assert_array_equal(same.transform(test), F_test)  # and same features
    other = get_extractor(name, **SMALL[name], random_state=1).fit(train)
    assert not np.array_equal(other.transform(test), F_test)
    with_test = get_extractor(name, **SMALL[name]).fit(np.concatenate([train, test]))
    changed = _learned(with_test)
    assert any(not np.array_equal(changed[k], state[k]) for k in LEARNED[name])
    assert not np.array_equal(with_test.transform(test), F_test)  # fit data matters


def test_hard_bovw_histogram_by_hand(images):
    est = BagOfVisualWords(pyramid_levels=2, power_norm=False, **SMALL["bovw"]).fit(images)
    desc, pos = dense_descriptors(images[:1], "sift", 8, (8,))
    words = ((desc[0][:, None, :] - est.codebook_[None]) ** 2).sum(-1).argmin(1)
    expected = [np.bincount(words, minlength=16)]
    for r in range(2):
        for c in range(2):
            inside = (np.floor(pos[:, 1] * 2) == r) & (np.floor(pos[:, 0] * 2) == c)
            expected.append(np.bincount(words[inside], minlength=16))
    expected = np.concatenate(expected).astype(float)
    np.testing.assert_allclose(est.transform(images[:1])[0], expected / np.linalg.norm(expected),
                               atol=1e-5)


def test_vlad_matches_reference():
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(2, 7, 3)).astype(np.float32)
    centers = rng.normal(size=(3, 3)).astype(np.float32)
    ours = vlad_encode(desc, centers, power=False)
    for i in range(2):
        v = np.zeros((3, 3))
        for x in desc[i]:
            k = np.argmin([np.sum((x - c) ** 2) for c in centers])
            v[k] += x - centers[k]
        v = v.ravel() / np.linalg.norm(v)
        np.testing.assert_allclose(ours[i], v, atol=1e-5)
    powered = vlad_encode(desc, centers, power=True)
    s = np.sign(ours) * np.sqrt(np.abs(ours))
    np.testing.assert_allclose(powered, s / np.linalg.norm(s, axis=1, keepdims=True), atol=1e-5)


def test_fisher_matches_reference():
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(2, 9, 3))
    gmm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(desc.reshape(-1, 3))
    ours = fisher_encode(desc.astype(np.float32), gmm, power=False)
    w, mu, sd = gmm.weights_, gmm.means_, np.sqrt(gmm.covariances_)
    for i in range(2):
        T = len(desc[i])
        gamma = gmm.predict_proba(desc[i])
        u = np.zeros((2, 3))
        v = np.zeros((2, 3))
        for t in range(T):
            for k in range(2):
                z = (desc[i, t] - mu[k]) / sd[k]
                u[k] += gamma[t, k] * z
                v[k] += gamma[t, k] * (z**2 - 1)
        u /= T * np.sqrt(w)[:, None]
        v /= T * np.sqrt(2 * w)[:, None]
        fv = np.concatenate([u.ravel(), v.ravel()])
        np.testing.assert_allclose(ours[i], fv / np.linalg.norm(fv), atol=1e-5)


def test_rootsift_is_the_hellinger_map_of_sift(images):
    sift, pos = dense_descriptors(images[:2], "sift", step=8, patch_sizes=(8, 16))
    root, pos2 = dense_descriptors(images[:2], "rootsift", step=8, patch_sizes=(8, 16))
    expected = np.sqrt(sift / sift.sum(-1, keepdims=True))
    np.testing.assert_allclose(root, expected, atol=1e-6)
    np.testing.assert_array_equal(pos, pos2)
    np.testing.assert_allclose((root**2).sum(-1), 1, atol=1e-5)  # unit L2 norm, as per paper


def test_spatial_fisher_models_positions(images):
    """spatial=True: the GMM sees [PCA(descriptor), x - 0.5, y - 0.5] (Sanchez et al. 2012)."""
    est = FisherVector(spatial=True, power_norm=False, **SMALL["fisher"]).fit(images[:16])
    assert est.gmm_.means_.shape == (3, 8 + 2)
    desc, pos = dense_descriptors(images[16:18], "sift", step=8, patch_sizes=(8,))
    aug = np.concatenate([est.pca_.transform(desc.reshape(-1, 128)).reshape(2, -1, 8),
                          np.broadcast_to(pos - 0.5, (2, *pos.shape))], axis=2)
    np.testing.assert_allclose(est.transform(images[16:18]),
                               fisher_encode(aug.astype(np.float32), est.gmm_, power=False),
                               atol=1e-5)
    # the positions are learned: the mean positions of the Gaussians differ
    assert np.ptp(est.gmm_.means_[:, -2:], axis=0).max() > 0.01


def test_triangle_encoding_and_quadrant_pooling_by_hand():
    # one patch at distances 1, 2 and 6 from three centroids: mean 3 -> (2, 1, 0)
    Z = torch.tensor([[0.0, 0.0]])
    C = torch.tensor([[1.0, 0.0], [0.0, 2.0], [6.0, 0.0]])
    np.testing.assert_allclose(triangle_encode(Z, C).numpy(), [[2.0, 1.0, 0.0]], atol=1e-6)
    # a 3 x 3 map splits at round(1.5) = 2: quadrants hold 4, 2, 2 and 1 positions
    A = torch.arange(9, dtype=torch.float32).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(quadrant_sum(A).numpy(), [[0 + 1 + 3 + 4, 2 + 5, 6 + 7, 8]])


def test_kmeans_patches_encoding_matches_loop(images):
    est = KMeansPatches(**SMALL["kmeans-patches"]).fit(images)
    F = est.transform(images[:1])[0]
    img = images[0].astype(np.float64)
    acts = np.zeros((27, 27, 8))
    for r in range(27):
        for c in range(27):
            x = img[r:r + 6, c:c + 6].transpose(2, 0, 1).ravel()
            x = (x - x.mean()) / np.sqrt(x.var(ddof=1) + 10)
            z = np.linalg.norm((x - est.mean_) @ est.whiten_ - est.centroids_, axis=1)
            acts[r, c] = np.maximum(0, z.mean() - z)
    ref = np.concatenate([acts[:14, :14].sum((0, 1)), acts[:14, 14:].sum((0, 1)),
                          acts[14:, :14].sum((0, 1)), acts[14:, 14:].sum((0, 1))])
    np.testing.assert_allclose(F, ref, rtol=1e-3, atol=1e-3)


def test_through_cli_and_cache(tmp_path):
    args = ["run", "-q", "-f", "bovw", "-c", "ridge", "--train-size", "300", "--test-size", "100",
            "-p", "bovw.n_words=16", "-p", "bovw.step=8", "--results-dir", tmp_path]
    first = CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)
    assert first.exit_code == 0, first.output
    # --rerun: fit the finished pair again (its features come from the store)
    second = CliRunner().invoke(main, [*map(str, args), "--rerun"], catch_exceptions=False)
    # in run order: file names start with the time in seconds, and both runs may share one
    recs = sorted((json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")),
                  key=lambda r: r["created"])
    assert [r["features"]["cached"] for r in recs] == [False, True]
    assert recs[0]["feature_dim"] == 16 * 5 and recs[0]["test_acc"] == recs[1]["test_acc"]
    assert recs[0]["features"]["params"]["bovw"]["n_words"] == 16
    assert second.exit_code == 0


def test_sift_descriptor_describes_only_its_patch():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    desc, pos = dense_descriptors(img, "sift", step=8, patch_sizes=(8,))
    first = np.argmin(np.abs(pos - [4 / 32, 4 / 32]).sum(1))  # the patch at rows/cols 0-7
    changed = img.copy()
    changed[0, 12:, 12:] = 255 - changed[0, 12:, 12:]  # far outside that patch
    desc2, _ = dense_descriptors(changed, "sift", step=8, patch_sizes=(8,))
    np.testing.assert_array_equal(desc[0, first], desc2[0, first])
    assert not np.array_equal(desc[0, -1], desc2[0, -1])  # the last patch did change
