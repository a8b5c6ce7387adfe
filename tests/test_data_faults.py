"""Data faults a user can make: links that loop or relabel, unreadable files, list files
with outside paths or two labels, duplicates of training images across splits,
decompression bombs and a working size that cannot fit in memory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featbench import load_dataset
from featbench.cli import main
from featbench.datasets import Dataset
from featbench.datasets.source import read_file
from featbench.errors import DataError

#: tiny folders (6-12 training images of 2 classes): 2 validation images, one per class
RUN = ["run", "-q", "-j", "1", "-f", "color-hist", "-c", "ridge", "--val-size", "2"]


def _write(root: Path, splits=("train", "test"), n=3, classes=("a", "b"), seed=0) -> Path:
    """``root/<split>/<class>/<i>.png``, every file with its own random pixels."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for k, c in enumerate(classes):
            d = root / split / c if split else root / c
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 80, (12, 12, 3)).astype(np.uint8)
                a[..., k % 3] += 150
                Image.fromarray(a).save(d / f"{i}.png")
    return root


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def _record(results: Path) -> dict:
    (path,) = (results / "runs").glob("*.json")
    return json.loads(path.read_text())


def _listed(ds: Dataset, split: str = "train") -> dict[str, str]:
    """Relative path -> class name of every image of a split."""
    src = ds.split(split)
    return {p: ds.classes[y] for p, y in zip(src.paths, src.labels, strict=True)}


# -- links -----------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["..", ".", "../a", "../..", "../../train"])
def test_link_that_loops_is_refused_naming_it(tmp_path, target):
    root = _write(tmp_path / "d")
    (root / "train" / "a" / "loop").symlink_to(target)
    with pytest.raises(DataError, match=r"link .*/train/a/loop -> .* makes a loop") as info:
        load_dataset(f"folder:{root}")
    assert "\n" not in str(info.value)
    res = invoke(*RUN, "-d", f"folder:{root}", "--results-dir", tmp_path / "r")
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [f"Error: {info.value}"]


def test_loop_through_a_flat_pool_is_refused(tmp_path):
    root = _write(tmp_path / "d", splits=("",))
    (root / "a" / "sub").mkdir()
    (root / "a" / "sub" / "up").symlink_to("../..")  # the dataset root
    with pytest.raises(DataError, match="makes a loop"):
        load_dataset(f"folder:{root}")


@pytest.mark.parametrize("link, target", [("train/a/more", "../b"),
                                          ("train/a/test", "../../test/b"),
                                          ("train/c", "b")])
def test_link_into_the_dataset_never_relabels(tmp_path, link, target):
    root = _write(tmp_path / "d")
    (root / link).symlink_to(target)
    with pytest.raises(DataError, match=f"link .*/{link} -> {target} points into"):
        load_dataset(f"folder:{root}")


def test_link_to_folder_outside_is_followed_and_counted_once(tmp_path):
    root = _write(tmp_path / "d")
    outside = _write(tmp_path / "extra", splits=("",), n=2, classes=("x",), seed=1) / "x"
    (outside / "deeper").mkdir()
    shutil.copy(outside / "0.png", outside / "deeper" / "9.png")
    (root / "train" / "a" / "ext").symlink_to(outside)
    (root / "train" / "a" / "again").symlink_to(outside)  # the same folder twice
    (outside / "deeper" / "back").symlink_to(outside)  # a loop outside the dataset
    with pytest.raises(DataError, match="deeper/back -> .* makes a loop"):
        load_dataset(f"folder:{root}")
    (outside / "deeper" / "back").unlink()
    ds = load_dataset(f"folder:{root}")
    expected = {f"train/{c}/{i}.png": c for c in "ab" for i in range(3)}
    expected.update({"train/a/again/0.png": "a", "train/a/again/1.png": "a",
                     "train/a/again/deeper/9.png": "a"})  # 'again' sorts before 'ext'
    assert _listed(ds) == expected
    k = ds.train.paths.index("train/a/again/deeper/9.png")
    np.testing.assert_array_equal(ds.train.read(k), read_file(outside / "0.png"))


def test_link_to_a_file_is_followed(tmp_path):
    root = _write(tmp_path / "d")
    photo = tmp_path / "elsewhere.png"
    Image.fromarray(np.full((12, 12, 3), 200, np.uint8)).save(photo)
    (root / "train" / "b" / "z.png").symlink_to(photo)
    ds = load_dataset(f"folder:{root}")
    assert _listed(ds)["train/b/z.png"] == "b" and len(ds.train) == 7
    k = ds.train.paths.index("train/b/z.png")
    np.testing.assert_array_equal(ds.train.read(k), np.full((12, 12, 3), 200, np.uint8))


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_one_file_under_two_classes_is_refused(tmp_path, how):
    root = _write(tmp_path / "d")
    first, second = root / "train" / "a" / "1.png", root / "train" / "b" / "dup.png"
    if how == "symlink":
        second.symlink_to("../a/1.png")
    else:
        os.link(first, second)
    with pytest.raises(DataError, match=f"{first} and {second} are the same file .* "
                                        f"two classes, a and b"):
        load_dataset(f"folder:{root}")


def test_one_file_twice_in_one_class_is_listed_once(tmp_path):
    root = _write(tmp_path / "d")
    os.link(root / "train" / "a" / "1.png", root / "train" / "a" / "1-copy.png")
    (root / "train" / "a" / "2-link.png").symlink_to("2.png")
    ds = load_dataset(f"folder:{root}")
    # a hard link is as much the file as its other name: the first in sorted order
    assert sorted(p for p, c in _listed(ds).items() if c == "a") == [
        "train/a/0.png", "train/a/1-copy.png", "train/a/2.png"]


# -- unreadable files ------------------------------------------------------------------
def test_broken_link_is_a_bad_image_or_one_line_error(tmp_path):
    root = _write(tmp_path / "d")
    broken = root / "train" / "a" / "broken.png"
    broken.symlink_to("nothere.png")
    res = invoke(*RUN, "-d", f"folder:{root}", "--results-dir", tmp_path / "r1")
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"Error: cannot read image {broken}: No such file or directory; "
        f"--skip-bad-images leaves such images out"]
    assert not (tmp_path / "r1" / "runs").exists() or not list(
        (tmp_path / "r1" / "runs").iterdir())

    res = invoke(*RUN, "-d", f"folder:{root}", "--results-dir", tmp_path / "r2",
                 "--skip-bad-images")
    assert res.exit_code == 0, res.output
    assert "skipped 1 image(s) that could not be decoded" in res.output
    assert f"cannot read image {broken}" in res.output
    rec = _record(tmp_path / "r2")
    assert len(rec["bad_images"]) == 1 and str(broken) in rec["bad_images"][0]
    assert rec["dataset"]["n_train"] == 7
    assert rec["dataset"]["n_train_fit"] + rec["dataset"]["n_val"] == 6  # good ones


def test_missing_file_of_a_list_is_a_bad_image_or_one_line_error(tmp_path):
    root = _write(tmp_path / "d", splits=("",), n=6)
    rows = ["path,label,split"] + [f"d/{c}/{i}.png,{c},{'test' if i == 5 else 'train'}"
                                   for c in "ab" for i in range(6)]
    rows.append("d/a/gone.png,a,train")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    res = invoke(*RUN, "-d", f"list:{tmp_path / 'list.csv'}", "--results-dir", tmp_path / "r1")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert f"image {root / 'a' / 'gone.png'} does not exist" in res.output

    res = invoke(*RUN, "-d", f"list:{tmp_path / 'list.csv'}", "--results-dir", tmp_path / "r2",
                 "--skip-bad-images")
    assert res.exit_code == 0, res.output
    rec = _record(tmp_path / "r2")
    assert len(rec["bad_images"]) == 1
    assert f"cannot read image {root / 'a' / 'gone.png'}" in rec["bad_images"][0]
    assert rec["dataset"]["n_train_fit"] + rec["dataset"]["n_val"] == 10


def test_unreadable_file_does_not_break_the_listing(tmp_path):
    root = _write(tmp_path / "d")
    (root / "test" / "b" / "broken.png").symlink_to("nothere.png")
    with pytest.raises(DataError, match="broken.png: No such file"):
        load_dataset(f"folder:{root}")
    ds = load_dataset(f"folder:{root}", skip_bad_images=True)
    k = ds.test.paths.index("test/b/broken.png")
    assert ds.test.image_sizes()[k].tolist() == [0, 0]
    assert ds.image_scan()["shared_size"] == [12, 12]
    assert len(ds.fingerprint) == 32 and ds.duplicates_of_train() == {"test": 0}


# -- list files ------------------------------------------------------------------------
def test_list_file_paths_outside_its_folder_work_and_are_recorded(tmp_path):
    root = _write(tmp_path / "imgs", splits=("",))
    lists = tmp_path / "lists"
    lists.mkdir()
    rows, n_abs, n_out = ["path,label"], 0, 0
    for c in "ab":
        for i in range(3):
            if i == 0:
                rows.append(f"{root / c / f'{i}.png'},{c}")  # absolute, outside
                n_abs, n_out = n_abs + 1, n_out + 1
            else:
                rows.append(f"../imgs/{c}/{i}.png,{c}")
                n_out += 1
    inside = lists / "own.png"
    shutil.copy(root / "b" / "1.png", inside)
    rows += [f"{inside},b", "own.png,b"]  # absolute but inside; relative inside
    n_abs += 1
    (lists / "list.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"list:{lists / 'list.csv'}", test_fraction=0.25)
    assert len(ds.train) + len(ds.test) == 8
    assert ds.notes["absolute_paths"] == n_abs == 3
    assert ds.notes["paths_outside_list_folder"] == n_out == 6
    res = invoke(*RUN, "-d", f"list:{lists / 'list.csv'}", "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert "6 listed paths outside the list file's folder" in res.output.splitlines()[0]
    rec = _record(tmp_path / "r")
    assert rec["dataset"]["notes"]["paths_outside_list_folder"] == 6
    assert rec["dataset"]["notes"]["absolute_paths"] == 3


def test_path_listed_with_two_labels_is_refused(tmp_path):
    _write(tmp_path / "imgs", splits=("",))
    rows = ["path,label"] + [f"imgs/{c}/{i}.png,{c}" for c in "ab" for i in range(3)]
    rows.insert(6, "imgs/b/../a/1.png,b")  # line 7: the file of line 3, another label
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"list.csv, line 7: imgs/b/\.\./a/1\.png is listed on "
                                        r"line 3 with label 'a' and here with 'b'") as info:
        load_dataset(f"list:{tmp_path / 'list.csv'}")
    assert "\n" not in str(info.value)


# -- duplicates of training images -----------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_test_images_identical_to_training_images_are_counted(tmp_path):
    root = _write(tmp_path / "d")
    shutil.copy(root / "train" / "a" / "0.png", root / "test" / "a" / "1.png")
    shutil.copy(root / "train" / "b" / "2.png", root / "test" / "a" / "2.png")  # other class
    train = {_sha(p) for p in (root / "train").rglob("*.png")}
    expected = sum(_sha(p) in train for p in (root / "test").rglob("*.png"))
    assert expected == 2
    ds = load_dataset(f"folder:{root}")
    assert ds.duplicates_of_train() == {"test": expected}
    res = invoke(*RUN, "-d", f"folder:{root}", "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert "(2 of 6 test images byte-identical to training images)" in res.output
    assert _record(tmp_path / "r")["dataset"]["test_duplicates_of_train"] == 2


def test_list_naming_one_path_in_train_and_test_is_counted(tmp_path):
    _write(tmp_path / "imgs", splits=("",))
    rows = ["path,label,split"] + [f"imgs/{c}/{i}.png,{c},{'test' if i == 2 else 'train'}"
                                   for c in "ab" for i in range(3)]
    rows.append("imgs/a/0.png,a,test")  # a training image, listed for test too
    rows.append("imgs/a/1.png,a,val")  # and one for tuning
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"list:{tmp_path / 'list.csv'}")
    assert ds.duplicates_of_train() == {"val": 1, "test": 1}
    summary = ds.summary()
    assert summary["test_duplicates_of_train"] == 1 and summary["val_duplicates_of_train"] == 1


def test_in_memory_duplicates_are_counted(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (20, 8, 8, 3)).astype(np.uint8)
    y = np.arange(20) % 2
    X_test = rng.integers(0, 255, (6, 8, 8, 3)).astype(np.uint8)
    X_test[[1, 4]] = X[[3, 7]]
    ds = Dataset.from_arrays("arrays", X, y, X_test, np.arange(6) % 2, ["a", "b"])
    reference = sum(any(np.array_equal(t, x) for x in X) for t in X_test)
    assert ds.duplicates_of_train() == {"test": reference} == {"test": 2}
    assert ds.summary()["test_duplicates_of_train"] == 2


# -- decompression bombs ---------------------------------------------------------------
def test_decompression_bomb_warning_is_given_once_naming_the_file(tmp_path, monkeypatch):
    from featbench.errors import ImageWarning

    root = _write(tmp_path / "d")
    big = root / "train" / "a" / "0.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(big)  # 1,200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the others have 144
    # what Python shows (after its filters and once-per-message registry) is recorded
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()  # as in a fresh process: no filter installed yet
        res = invoke(*RUN, "-d", f"folder:{root}", "--image-size", "12",
                     "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    bombs = [w for w in shown if issubclass(w.category, (Image.DecompressionBombWarning,
                                                         ImageWarning))]
    assert [(w.category, str(w.message)) for w in bombs] == [
        (ImageWarning, f"image {big} has 1200 pixels, more than Pillow's limit of 1000 "
                       f"against decompression bombs; decoding it anyway")]


# -- memory ----------------------------------------------------------------------------
def test_working_memory_estimate_by_hand():
    from featbench.datasets.base import working_memory

    # 2 shards x 6 images x 200*200*3 bytes + 1 worker x 8 bytes x 200*200*3
    assert working_memory(200, 6, 1) == 2 * 6 * 120_000 + 960_000 == 2_400_000


def test_available_memory_is_within_the_machine():
    from featbench.datasets.base import available_memory

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    have = available_memory()
    assert have is not None and 0 < have <= total


def test_image_size_beyond_memory_is_refused_before_any_work(tmp_path, monkeypatch):
    import featbench.datasets.base as base
    from featbench.datasets import source

    root = _write(tmp_path / "d")
    decoded = []
    original = source.read_file
    monkeypatch.setattr(source, "read_file", lambda p: decoded.append(p) or original(p))
    monkeypatch.setattr(base, "available_memory", lambda: 2_399_999)  # 1 byte short
    res = invoke(*RUN, "-d", f"folder:{root}", "--image-size", "200",
                 "--results-dir", tmp_path / "r")
    assert res.exit_code == 1 and decoded == []
    error = res.output.strip().splitlines()[-1]
    assert error.startswith("Error: --image-size 200: extraction would hold about")
    assert "6 per shard" in error and "use a smaller --image-size" in error
    assert not (tmp_path / "r" / "runs").exists() or not list((tmp_path / "r" / "runs").iterdir())

    monkeypatch.setattr(base, "available_memory", lambda: 2_400_000)  # just enough
    res = invoke(*RUN, "-d", f"folder:{root}", "--image-size", "200",
                 "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert decoded
