"""A combined spec (``hog+color-hist``) decodes each image file once, not once per part.

References: the same parts extracted one spec at a time (each decoding the files
itself), and a count of the decodes through a spy on the source's ``read``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from featbench import extraction
from featbench.datasets import load_image_folder
from featbench.datasets.source import FileSource
from featbench.extraction import extract_features
from featbench.store import FeatureStore

PARAMS = {"hog": {"block_norm": None}}


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 14), ("test", 6)):
        for c in ("a", "b"):
            d = tmp_path / "data" / split / c
            d.mkdir(parents=True)
            for k in range(n):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(d / f"{k}.png")
    return tmp_path / "data"


def _count_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    original = FileSource.read

    def spy(self, i):
        reads.append(str(self.path(i)))
        return original(self, i)

    monkeypatch.setattr(FileSource, "read", spy)
    return reads


@pytest.mark.parametrize("budget", [None, 0])
def test_combined_spec_decodes_each_file_once(folder, tmp_path, monkeypatch, budget):
    """With the default budget every file is read once for both parts; with no budget
    (nothing kept) twice, as before. The features are those of the parts alone."""
    if budget is not None:
        monkeypatch.setattr(extraction, "DECODED_CACHE_BYTES", budget)
        monkeypatch.setattr(extraction.DecodedShards.__init__, "__defaults__", (budget,))
    ds = load_image_folder(folder)
    n = sum(len(src) for src in ds.splits().values())
    reads = _count_reads(monkeypatch)
    both = extract_features("hog+color-hist", ds, PARAMS, FeatureStore(tmp_path / "a"),
                            shard_size=8)
    # each part also reads one image first to learn the input shape (prepare's probe)
    assert len(reads) == 2 + (n if budget is None else 2 * n)
    assert len(set(reads)) == n
    hog = extract_features("hog", ds, PARAMS, FeatureStore(tmp_path / "b"), shard_size=8)
    hist = extract_features("color-hist", ds, {}, FeatureStore(tmp_path / "c"), shard_size=8)
    for split in ("train", "test"):
        np.testing.assert_array_equal(both.splits[split],
                                      np.hstack([hog.splits[split], hist.splits[split]]))
    assert extraction._DECODED is None  # nothing kept once the spec is done


def test_shards_are_kept_per_source_view_and_bounds(folder):
    """A part reading another view (or source, or shard) never gets these images."""
    from featbench.datasets.source import View

    ds = load_image_folder(folder)
    key = extraction.DecodedShards.key
    at32 = key(ds.train, View("resize", 32), (0, 8))
    assert at32 == key(ds.train, View("resize", 32), (0, 8))
    assert at32 != key(ds.train, View("resize", 16), (0, 8))
    assert at32 != key(ds.test, View("resize", 32), (0, 8))
    assert at32 != key(ds.train, View("resize", 32), (8, 16))


def test_kept_shards_are_read_only():
    kept = extraction.DecodedShards(max_bytes=100)
    small, large = np.zeros((2, 4, 4, 3), np.uint8), np.zeros((10, 4, 4, 3), np.uint8)
    kept.put(("s", "v", (0, 2)), small, [], [])
    kept.put(("s", "v", (2, 12)), large, [], [])  # 480 bytes: over the budget, not kept
    assert kept.get(("s", "v", (2, 12))) is None and kept.used == small.nbytes
    with pytest.raises(ValueError, match="read-only"):
        kept.get(("s", "v", (0, 2)))[0][0, 0, 0, 0] = 1
