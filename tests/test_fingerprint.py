"""Folder datasets are keyed by the bytes of their files, not by file times.

A re-provisioned or copied folder (new mtimes, another root) must find the features
it already has; an edited file must not.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from featbench import load_dataset
from featbench.datasets.source import FileSource
from featbench.extraction import extract_features
from featbench.store import FeatureStore


def _folder(root, n=6, seed=0):
    rng = np.random.default_rng(seed)
    for c in ("ant", "bee"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(
                root / c / f"{i}.png")
    return root


def _copy_with_new_times(src, dst):
    shutil.copytree(src, dst, copy_function=shutil.copyfile)  # no times kept
    for p in dst.rglob("*.png"):
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))  # and clearly other ones


def test_digests_are_blake2b_of_the_file_bytes(tmp_path):
    root = _folder(tmp_path / "d")
    src = load_dataset(f"folder:{root}", seed=0).splits()["train"]
    ref = [hashlib.blake2b((root / p).read_bytes(), digest_size=16).digest()
           for p in src.paths]
    assert src.file_digests().tobytes() == b"".join(ref)


def test_copy_with_new_times_keeps_the_fingerprint_an_edit_changes_it(tmp_path):
    a = _folder(tmp_path / "a")
    _copy_with_new_times(a, tmp_path / "b")
    da = load_dataset(f"folder:{a}", seed=0)
    db = load_dataset(f"folder:{tmp_path / 'b'}", seed=0)
    sa, sb = da.splits()["train"], db.splits()["train"]
    assert sa.listing_fingerprint != sb.listing_fingerprint  # the times differ ...
    assert da.fingerprint == db.fingerprint  # ... the content does not
    for split in ("train", "test"):
        assert da.split_fingerprint(split) == db.split_fingerprint(split)
    # one pixel of one image changed: another key
    p = sorted((tmp_path / "b" / "bee").glob("*.png"))[0]
    img = np.asarray(Image.open(p)).copy()
    img[0, 0] ^= 1
    Image.fromarray(img).save(p)
    assert load_dataset(f"folder:{tmp_path / 'b'}", seed=0).fingerprint != da.fingerprint


def test_digests_are_remembered_and_any_write_is_seen(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    from featbench.datasets import source

    hashed: list[str] = []
    original = source.file_digest

    def spy(path):
        hashed.append(str(path))
        return original(path)

    monkeypatch.setattr(source, "file_digest", spy)
    root = _folder(tmp_path / "d")
    first = load_dataset(f"folder:{root}", seed=0).fingerprint
    assert len(hashed) == 12 and list((tmp_path / "cache" / "listings").glob("*.blake2b.npy"))
    hashed.clear()
    assert load_dataset(f"folder:{root}", seed=0).fingerprint == first
    assert hashed == []  # remembered: no file read
    # other bytes of the same size with the file's time put back: the write changed
    # the ctime, so the files are hashed again and the edit is seen
    p = sorted((root / "ant").glob("*.png"))[0]
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load_dataset(f"folder:{root}", seed=0).fingerprint != first
    assert str(p) in hashed


def test_truncated_memo_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "d")
    first = load_dataset(f"folder:{root}", seed=0)
    fp, sizes = first.fingerprint, first.splits()["train"].image_sizes()
    memos = list((tmp_path / "cache" / "listings").glob("*.npy"))
    assert len(memos) >= 3  # digests per split and the sizes
    for m in memos:
        m.write_bytes(b"")  # as a crash between write and rename could leave it
    again = load_dataset(f"folder:{root}", seed=0)
    assert again.fingerprint == fp
    np.testing.assert_array_equal(again.splits()["train"].image_sizes(), sizes)
    assert all(m.stat().st_size > 0 for m in memos)  # rewritten


def test_same_files_with_other_labels_get_another_fingerprint(tmp_path):
    root = _folder(tmp_path / "d")
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    labels = np.array([p.startswith("bee/") for p in paths], dtype=np.int64)
    a = FileSource(root, paths, labels)
    b = FileSource(root, paths, 1 - labels)
    assert a.file_digests().tobytes() == b.file_digests().tobytes()
    assert a.fingerprint != b.fingerprint
    assert FileSource(root, paths, labels).fingerprint == a.fingerprint


def test_subset_with_inherited_digests_equals_its_own_hash(tmp_path):
    root = _folder(tmp_path / "d")
    src = load_dataset(f"folder:{root}", seed=0).splits()["train"]
    src.file_digests()  # computed on the whole split, inherited by take()
    sub = src.take([3, 0, 5])
    assert sub._digests is not None
    fresh = FileSource(src.root, list(sub.paths), sub.labels)
    assert fresh._digests is None
    assert sub.fingerprint == fresh.fingerprint


def test_copied_folder_reuses_stored_features(tmp_path, counted):
    a = _folder(tmp_path / "a")
    _copy_with_new_times(a, tmp_path / "b")
    store = FeatureStore(tmp_path / "store")
    first = extract_features("hog", load_dataset(f"folder:{a}", seed=0), {}, store)
    assert sum(counted) > 0
    counted.clear()
    again = extract_features("hog", load_dataset(f"folder:{tmp_path / 'b'}", seed=0), {},
                             store)
    assert counted == [] and again.cached
    np.testing.assert_array_equal(again.train, first.train)


def test_unreadable_file_is_hashed_as_such_and_named_when_decoded(tmp_path):
    from featbench.cache import cache_dir
    from featbench.datasets.source import UNREADABLE_DIGEST
    from featbench.errors import DataError

    root = _folder(tmp_path / "d")
    src = load_dataset(f"folder:{root}", seed=0).splits()["train"]
    src.stats()  # listed while the file was there
    gone = root / src.paths[0]
    gone.unlink()
    digests = src.file_digests()  # no crash: a bad image, reported when decoded
    assert digests[0].tobytes() == UNREADABLE_DIGEST
    assert digests[1].tobytes() == hashlib.blake2b((root / src.paths[1]).read_bytes(),
                                                   digest_size=16).digest()
    # not remembered: the file is hashed again once it can be read
    assert not list((cache_dir() / "listings").glob("*.blake2b.npy"))
    with pytest.raises(DataError, match=f"cannot read image {gone}"):
        src.read(0)
