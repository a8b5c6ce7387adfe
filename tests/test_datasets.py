"""Loaders on small files the tests write, and on the shared CIFAR-10 copy."""

from __future__ import annotations

import hashlib
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from featbench import load_dataset
from featbench.datasets import cifar10
from featbench.datasets.imageio import read_image
from featbench.errors import DataError


def test_digits_is_default_and_stratified():
    ds = load_dataset()
    assert ds.name == "digits"
    assert ds.X_train.shape == (1347, 32, 32, 3) and ds.X_test.shape == (450, 32, 32, 3)
    assert ds.X_train.dtype == np.uint8 and ds.X_train.max() == 255
    np.testing.assert_array_equal(ds.X_train[..., 0], ds.X_train[..., 2])  # gray as RGB
    assert set(np.bincount(ds.y_test)) <= {43, 44, 45, 46}  # stratified 25 %
    again = load_dataset("digits")
    assert again.fingerprint == ds.fingerprint
    assert load_dataset("digits", seed=1).fingerprint != ds.fingerprint
    sub = ds.subset(train_size=100, test_size=50, seed=0)
    assert len(sub.y_train) == 100 and np.bincount(sub.y_train).min() == 10


def _write_batches(folder, n_per_batch=20, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batches = {}
    for name in [*cifar10.TRAIN_BATCHES, "test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n_per_batch}, f, protocol=2)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in cifar10.CLASSES]}, f, protocol=2)
    return batches


def _md5s(folder):
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest()
            for name in cifar10.BATCH_MD5}


def test_cifar10_official_pickles(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    batches = _write_batches(folder)
    monkeypatch.setattr(cifar10, "BATCH_MD5", _md5s(folder))
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.X_train.shape == (100, 32, 32, 3) and ds.X_test.shape == (20, 32, 32, 3)
    assert ds.classes == cifar10.CLASSES
    # row layout: 1024 red, 1024 green, 1024 blue values, row-major
    data = batches["data_batch_2"][0]
    np.testing.assert_array_equal(ds.X_train[20 + 3, 5, 7], data[3, [5 * 32 + 7, 1024 + 5 * 32 + 7,
                                                                    2048 + 5 * 32 + 7]])
    assert ds.y_train[:3].tolist() == [0, 1, 2]


def test_cifar10_md5_mismatch_is_an_error(tmp_path):
    _write_batches(tmp_path / "cifar-10-batches-py")  # md5s differ from the official files
    with pytest.raises(DataError, match="data_batch_1 is corrupt"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_download_from_a_local_archive(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-py"
    _write_batches(src)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar10, "URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(cifar10, "BATCH_MD5", _md5s(src))
    root = tmp_path / "root"
    with pytest.raises(DataError, match="Pass --download"):
        load_dataset("cifar10", data_dir=root)
    ds = load_dataset("cifar10", data_dir=root, download=True)
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert len(ds.y_train) == 100
    # a wrong archive checksum is refused
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", "0" * 32)
    with pytest.raises(DataError, match="could not download CIFAR-10"):
        load_dataset("cifar10", data_dir=tmp_path / "other", download=True)


def test_image_modes_convert_to_rgb8(tmp_path):
    # grayscale
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.full((4, 4, 3), 77))
    # 16-bit grayscale: scaled, not clipped
    a16 = np.array([[0, 65535], [32768, 257]], np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[..., 0], [[0, 255], [128, 1]])
    # RGBA: composited over white
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[...] = (255, 0, 0, 128)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png")[0, 0], [255, 127, 127])
    # palette, with and without transparency
    pal = Image.new("P", (2, 2))
    pal.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[1, 1], [0, 255, 0])
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[0, 0], [0, 0, 255])
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    np.testing.assert_array_equal(read_image(tmp_path / "pt.png")[0, 0], [255, 255, 255])
    # resize to a common size
    assert read_image(tmp_path / "g.png", size=8).shape == (8, 8, 3)
    # corrupt file: the error names it
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="cannot read image .*bad.png"):
        read_image(tmp_path / "bad.png")


def test_flat_folder_split_and_working_size(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "emu"):
        (tmp_path / c).mkdir()
        for i in range(8):
            size = (20, 24) if i % 2 else (32, 32)  # mixed sizes get resized
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
                tmp_path / c / f"{i}.jpg")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # ignored
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.25, seed=0)
    assert ds.classes == ["cat", "dog", "emu"]
    assert ds.layout == "class folders (split by seed)"
    # images do not share one size: the hand-crafted working size is 128
    assert ds.X_train.shape == (18, 128, 128, 3) and np.bincount(ds.y_test).tolist() == [2, 2, 2]
    again = load_dataset(f"folder:{tmp_path}", test_fraction=0.25, seed=0)
    assert again.fingerprint == ds.fingerprint
    assert load_dataset(f"folder:{tmp_path}", seed=1).fingerprint != ds.fingerprint
    small = load_dataset(f"folder:{tmp_path}", image_size=16)
    assert small.X_train.shape[1:] == (16, 16, 3)


def test_shared_cifar10_jpeg_copy(shared_data):
    ds = load_dataset("cifar10", data_dir=shared_data, train_size=500, test_size=200)
    assert ds.classes == cifar10.CLASSES
    assert ds.X_train.shape == (500, 32, 32, 3) and len(ds.y_test) == 200
    assert np.bincount(ds.y_train).tolist() == [50] * 10
    full_root = shared_data / "cifar10-jpeg"
    assert cifar10.find_cifar10(full_root) == ("folder", full_root)
