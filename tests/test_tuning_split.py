"""The tuning split is decided before anything is fitted, and nothing is fitted on it.

Every learned extractor must see exactly the training images outside the
validation split (never a validation or test image), with their own labels; the
validation images are those scikit-learn's stratified ``train_test_split`` holds
out for the seed (the reference here), or the folder's own ``val/``.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import train_test_split

from featbench.datasets import load_dataset
from featbench.extraction import extract_features, plan
from featbench.features.bovw import BagOfVisualWords
from featbench.features.kmeans_patches import KMeansPatches
from featbench.runner import run_benchmark
from featbench.splits import tuning_split
from featbench.store import FeatureStore

BOVW = {"bovw": {"n_words": 8, "max_descriptors": 2000, "pyramid_levels": 1}}
KMEANS = {"kmeans-patches": {"n_centroids": 8, "device": "cpu"}}


@pytest.fixture
def fits(monkeypatch) -> list[tuple[np.ndarray, np.ndarray]]:
    """The images and labels every bag-of-words or k-means-patches fit received."""
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    for cls in (BagOfVisualWords, KMeansPatches):
        original = cls._fit

        def spy(self, X, y=None, _original=original):
            seen.append((np.array(X), None if y is None else np.array(y)))
            return _original(self, X, y)

        monkeypatch.setattr(cls, "_fit", spy)
    return seen


def _digests(images) -> Counter:
    return Counter(hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest()
                   for im in images)


def _decoded(ds, split: str, indices, view) -> list[np.ndarray]:
    src = ds.split(split)
    return [view.apply(src.read(int(i))) for i in indices]


def _reference_val(y: np.ndarray, n_val: int, seed: int) -> np.ndarray:
    """Validation indices as scikit-learn's stratified split holds them out."""
    _, val = train_test_split(np.arange(len(y)), test_size=n_val, random_state=seed,
                              stratify=y)
    return np.sort(val)


def _check_fit_outside_validation(ds, fits, view, val_idx, y_fit_expected=None):
    (X, y), = fits
    train_idx = np.setdiff1d(np.arange(len(ds.train)), val_idx)
    expected = _decoded(ds, "train", train_idx, view)
    # exactly the training images outside the validation split: no more, no fewer
    assert _digests(X) == _digests(expected)
    held_out = _digests(_decoded(ds, "train", val_idx, view))
    if ds.val is not None:
        held_out += _digests(_decoded(ds, "val", range(len(ds.val)), view))
    held_out += _digests(_decoded(ds, "test", range(len(ds.test)), view))
    # no validation or test image among them (duplicates across splits excepted)
    overlap = set(_digests(X)) & set(held_out) - set(_digests(expected))
    assert not overlap
    # labels aligned with the images, in the order fitted
    labels = np.asarray(ds.train.labels)[train_idx] if y_fit_expected is None \
        else y_fit_expected
    assert y is not None and np.array_equal(np.sort(y), np.sort(labels))
    by_image = {hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest(): lab
                for im, lab in zip(expected, labels, strict=True)}
    assert all(by_image[hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest()] == lab
               for im, lab in zip(X, y, strict=True))


def test_digits_codebook_never_sees_the_validation_split(fits, tmp_path):
    ds = load_dataset("digits").subset(300, 100, seed=0)
    split = tuning_split(ds, seed=3, val_size=60)
    # the validation images are scikit-learn's stratified hold-out for the seed
    ref = _reference_val(np.asarray(ds.train.labels), 60, 3)
    assert np.array_equal(split.val, ref)
    assert np.array_equal(split.fit, np.setdiff1d(np.arange(300), ref))
    p = plan("bovw", ds, BOVW["bovw"], 3, split)
    extract_features("bovw", ds, BOVW, FeatureStore(tmp_path), seed=3, split=split)
    _check_fit_outside_validation(ds, fits, p.view, ref)


def test_run_tunes_on_the_images_the_codebook_left_out(fits, tmp_path):
    """The sweep draws the split once: the records' validation images are the ones the
    codebook was not fitted on."""
    ds = load_dataset("digits").subset(200, 60, seed=0)
    recs = run_benchmark(ds, ["bovw"], ["ridge"], params=BOVW, seed=1, val_size=40,
                         store=FeatureStore(tmp_path / "store"), results_dir=None)
    ref = _reference_val(np.asarray(ds.train.labels), 40, 1)
    view = plan("bovw", ds, BOVW["bovw"], 1).view
    _check_fit_outside_validation(ds, fits, view, ref)
    rec = recs[0]
    assert rec["error"] is None
    assert rec["dataset"]["n_val"] == 40 == rec["dataset"]["tuning_split"]["n_val"]
    assert rec["dataset"]["tuning_split"]["n_fit"] == 160


def _write(path, rng, size=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def test_folder_with_val_fits_on_train_only(fits, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        for c in ("a", "b"):
            for i in range(n):
                _write(root / split / c / f"{i}.png", rng)
    ds = load_dataset(f"folder:{root}")
    assert ds.val is not None
    split = tuning_split(ds, seed=0)
    assert split.val is None and len(split.fit) == 16
    p = plan("bovw", ds, BOVW["bovw"], 0, split)
    extract_features("bovw", ds, BOVW, FeatureStore(tmp_path / "store"), split=split)
    _check_fit_outside_validation(ds, fits, p.view, np.array([], int))


def test_skipped_bad_image_leaves_its_label_out(fits, tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "photos"
    for split, n in (("train", 10), ("test", 3)):
        for c in ("a", "b"):
            for i in range(n):
                _write(root / split / c / f"{i}.png", rng)
    (root / "train" / "a" / "3.png").write_bytes(b"not an image")
    ds = load_dataset(f"folder:{root}")
    split = tuning_split(ds, seed=0, val_size=4)
    extract_features("kmeans-patches", ds, KMEANS, FeatureStore(tmp_path / "store"),
                     split=split, skip_bad=True)
    (X, y), = fits
    names = [ds.train.name_of(int(i)) for i in split.fit]
    good = [i for i, n in zip(split.fit, names, strict=True) if not n.endswith("a/3.png")]
    assert len(X) == len(y) == len(good)
    assert np.array_equal(y, np.asarray(ds.train.labels)[good])


def test_cifar10_codebook_never_sees_validation_or_test(fits, shared_data, tmp_path):
    ds = load_dataset("cifar10", data_dir=shared_data, train_size=200, test_size=50)
    split = tuning_split(ds, seed=0, val_size=50)
    ref = _reference_val(np.asarray(ds.train.labels), 50, 0)
    assert np.array_equal(split.val, ref)
    p = plan("kmeans-patches", ds, KMEANS["kmeans-patches"], 0, split)
    extract_features("kmeans-patches", ds, KMEANS, FeatureStore(tmp_path), split=split)
    _check_fit_outside_validation(ds, fits, p.view, ref)


def test_fit_key_holds_what_the_codebook_was_fitted_on():
    ds = load_dataset("digits").subset(200, 50, seed=0)
    params = BOVW["bovw"]

    def key(ds=ds, seed=0, val_size=40):
        return plan("bovw", ds, params, seed, tuning_split(ds, seed, val_size)).fit_key

    base = key()
    assert key() == base
    assert key(seed=1) != base  # other validation images, so other fit images
    assert key(val_size=30) != base
    # same images, one label changed: another codebook key
    relabelled = ds.subset(None, None)
    relabelled.train.labels = np.array(relabelled.train.labels, copy=True)
    first_fit = tuning_split(ds, 0, 40).fit[0]
    relabelled.train.labels[first_fit] = (relabelled.train.labels[first_fit] + 1) % 10
    assert key(ds=relabelled) != base
    # a stateless extractor has no fit key at all
    assert plan("hog", ds, {}, 0).fit_key is None
