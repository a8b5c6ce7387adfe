"""Feature cache: hits, misses, keys and recovery from corrupt entries."""

from __future__ import annotations

import numpy as np
import pytest

from featbench import load_dataset
from featbench.cache import ArrayCache
from featbench.features.hog import HOG
from featbench.runner import extract


@pytest.fixture
def ds():
    return load_dataset("digits").subset(200, 100, seed=0)


@pytest.fixture
def counted(monkeypatch):
    calls = []
    original = HOG._extract

    def spy(self, images):
        calls.append(len(images))
        return original(self, images)

    monkeypatch.setattr(HOG, "_extract", spy)
    return calls


def test_second_run_hits(tmp_path, ds, counted):
    cache = ArrayCache(tmp_path)
    first = extract("hog", ds, {}, cache)
    assert not first.cached and sum(counted) >= 300
    counted.clear()
    second = extract("hog", ds, {}, cache)
    assert second.cached and counted == []
    np.testing.assert_array_equal(first.train, second.train)
    assert second.extract_s == pytest.approx(first.extract_s)  # the computing time is kept
    # a union reuses the cached part
    union = extract("hog+color-hist", ds, {}, cache)
    assert counted == [] and union.parts[0]["cached"] and not union.parts[1]["cached"]


def test_key_covers_parameters_and_data(tmp_path, ds, counted):
    cache = ArrayCache(tmp_path)
    extract("hog", ds, {}, cache)
    counted.clear()
    extract("hog", ds, {"hog": {"block_norm": None}}, cache)
    assert sum(counted) >= 300
    counted.clear()
    extract("hog", ds.subset(150, 100, seed=0), {}, cache)
    assert sum(counted) >= 150  # other training images: recomputed
    counted.clear()
    extract("hog", ds, {}, ArrayCache(tmp_path, enabled=False))
    assert sum(counted) >= 300


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_corrupt_entry_is_recomputed(tmp_path, ds, counted, damage):
    cache = ArrayCache(tmp_path)
    good = extract("hog", ds, {}, cache)
    npy = sorted((tmp_path / "features").rglob("F.npy"))[0]
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(npy.read_bytes())
        raw[-5] ^= 0xFF
        npy.write_bytes(bytes(raw))
    else:
        (npy.parent / "meta.json").write_text("{")
    counted.clear()
    with pytest.warns(UserWarning, match="corrupt"):
        again = extract("hog", ds, {}, cache)
    assert sum(counted) > 0 and not again.cached
    np.testing.assert_array_equal(again.train, good.train)
    assert cache.load("features", npy.parent.name) is not None  # rewritten


def test_atomic_write_leaves_no_partial_entry(tmp_path):
    cache = ArrayCache(tmp_path)
    with pytest.raises(ValueError, match="allow_pickle"):
        cache.save("features", "k", {"F": np.zeros(3), "G": object()})
    assert not (tmp_path / "features" / "k").exists()
    assert list((tmp_path / "features").iterdir()) == []
    cache.save("features", "k", {"F": np.arange(3)})
    np.testing.assert_array_equal(cache.load("features", "k")["F"], np.arange(3))


def test_learned_extractor_never_mixes_two_fits(tmp_path, ds):
    import shutil

    cache = ArrayCache(tmp_path)
    params = {"bovw": {"n_words": 8, "step": 8, "max_descriptors": 500}}
    extract("bovw", ds, params, cache)
    entries = sorted((tmp_path / "features").iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(entries) == 2
    meta = {p: (p / "meta.json").read_text() for p in entries}
    test_entry = next(p for p, m in meta.items() if '"n_images": 100' in m)
    train_entry = next(p for p in entries if p != test_entry)
    before = (train_entry / "F.npy").stat().st_mtime_ns
    shutil.rmtree(test_entry)
    again = extract("bovw", ds, params, cache)
    assert not again.cached
    assert (train_entry / "F.npy").stat().st_mtime_ns != before  # refit: train rewritten too
