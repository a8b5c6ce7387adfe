"""Folder layouts, list files, recursive classes, EXIF and the per-extractor views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from featbench import load_dataset
from featbench.cli import main
from featbench.datasets.source import View, read_file
from featbench.errors import DataError


def _img(rng, k, size=(20, 20)):
    a = rng.integers(0, 80, (*size, 3)).astype(np.uint8)
    a[..., k % 3] += 150
    return Image.fromarray(a)


def _write(root, splits, n=6, classes=("ants", "bees"), size=(20, 20), ext=".png"):
    rng = np.random.default_rng(0)
    for split in splits:
        for k, c in enumerate(classes):
            d = root / split / c if split else root / c
            d.mkdir(parents=True)
            for i in range(n):
                _img(rng, k, size).save(d / f"{i}{ext}")
    return root


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_train_val_layout_evaluates_on_val(tmp_path, val_name):
    root = _write(tmp_path, ["train", val_name], n=5)
    ds = load_dataset(f"folder:{root}")
    assert ds.layout == f"train/ + {val_name}/ ({val_name} is the evaluation split)"
    assert len(ds.train) == 10 and len(ds.test) == 10 and ds.val is None
    assert all(p.startswith(f"{val_name}/") for p in ds.test.paths)


def test_train_test_and_three_way_layouts(tmp_path):
    ds = load_dataset(f"folder:{_write(tmp_path / 'a', ['train', 'test'])}")
    assert ds.layout == "train/ + test/" and ds.val is None
    three = load_dataset(f"folder:{_write(tmp_path / 'b', ['train', 'val', 'test'], n=4)}")
    assert three.layout == "train/ + val/ + test/ (val is the tuning split)"
    assert [len(s) for s in three.splits().values()] == [8, 8, 8]
    assert all(p.startswith("val/") for p in three.val.paths)
    assert all(p.startswith("test/") for p in three.test.paths)


def test_val_folder_is_the_tuning_split_of_a_run(tmp_path):
    root = _write(tmp_path, ["train", "val", "test"], n=6)
    (root / "val" / "ants" / "5.png").unlink()  # 11 validation images: not 10 % of train
    res = invoke("run", "-q", "-d", f"folder:{root}", "-f", "color-hist", "-c", "ridge",
                 "--results-dir", tmp_path / "res")
    assert res.exit_code == 0, res.output
    assert "train/ + val/ + test/ (val is the tuning split)" in res.output
    assert "12 train / 11 val (tuning) / 12 test images" in res.output
    rec = json.loads(next((tmp_path / "res" / "runs").glob("*.json")).read_text())
    assert rec["dataset"]["n_val"] == 11 and rec["dataset"]["n_train_fit"] == 12
    assert rec["dataset"]["n_val_split"] == 11
    assert rec["dataset"]["layout"].startswith("train/ + val/ + test/")


def test_flat_folders_recursive_classes_and_upper_case_extensions(tmp_path):
    root = _write(tmp_path, [""], n=4, ext=".JPEG")
    nested = root / "bees" / "deeper" / "deepest"
    nested.mkdir(parents=True)
    _img(np.random.default_rng(1), 1).save(nested / "x.Jpg")
    (root / "bees" / ".hidden.png").write_bytes(b"ignored")
    ds = load_dataset(f"folder:{root}", test_fraction=0.25)
    paths = sorted(ds.train.paths + ds.test.paths)
    assert len(paths) == 9
    assert "bees/deeper/deepest/x.Jpg" in paths  # ImageFolder finds it too
    idx = (ds.train.paths + ds.test.paths).index("bees/deeper/deepest/x.Jpg")
    labels = np.r_[ds.train.labels, ds.test.labels]
    assert ds.classes[labels[idx]] == "bees"
    # torchvision's ImageFolder sees the same files, with the same classes
    from torchvision.datasets import ImageFolder

    tv = ImageFolder(str(root))
    tv_paths = sorted(Path(s).relative_to(root).as_posix() for s, _ in tv.samples
                      if not Path(s).name.startswith("."))  # featbench skips hidden files
    assert tv_paths == paths
    assert [tv.classes[t] for s, t in sorted(tv.samples) if "x.Jpg" in s] == ["bees"]


def test_list_file_with_and_without_split_column(tmp_path):
    _write(tmp_path / "imgs", [""], n=4)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "imgs").rglob("*.png"))
    lines = ["path,label"] + [f"{f},{f.split('/')[1]}" for f in files]
    (tmp_path / "all.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(f"list:{tmp_path / 'all.csv'}", test_fraction=0.25)
    assert ds.layout == "list file (split by seed)" and ds.classes == ["ants", "bees"]
    assert len(ds.train) + len(ds.test) == 8
    # TSV without header, with a split column given by a header
    rows = ["file\tclass\tsplit"] + [
        f"{f}\t{f.split('/')[1]}\t{['train', 'train', 'val', 'test'][i % 4]}"
        for i, f in enumerate(files)]
    (tmp_path / "split.tsv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"list:{tmp_path / 'split.tsv'}")
    assert ds.layout == "list file (train, val, test)"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (4, 2, 2)
    img = read_file(tmp_path / files[0])
    np.testing.assert_array_equal(ds.train.read(0), img)
    (tmp_path / "bad.csv").write_text("path,label\nimgs/nope.png,ants\n")
    with pytest.raises(DataError, match="nope.png does not exist"):
        load_dataset(f"list:{tmp_path / 'bad.csv'}")


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((10, 30, 3), np.uint8)
    a[:, :5] = 255  # white band on the left
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = read_file(tmp_path / "r.jpg")
    assert out.shape == (30, 10, 3)
    # the band is at the top after a clockwise rotation
    assert out[:5].mean() > 200 and out[-5:].mean() < 50


def test_views_resize_and_crop_match_torchvision(tmp_path):
    from skimage import data
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    photo = data.chelsea()[:, :400]  # 300 x 400, not square
    Image.fromarray(photo).save(tmp_path / "c.png")
    view = View("resize-crop", 160, 183, "bilinear")
    ours = view.apply(read_file(tmp_path / "c.png"))
    preset = ImageClassification(crop_size=160, resize_size=183, mean=(0, 0, 0), std=(1, 1, 1),
                                 interpolation=InterpolationMode.BILINEAR)
    ref = preset(Image.open(tmp_path / "c.png").convert("RGB"))
    np.testing.assert_allclose(torch.from_numpy(ours.copy()).permute(2, 0, 1).float() / 255, ref,
                               atol=1e-6)
    small = View("resize", 32).apply(photo)
    assert small.shape == (32, 32, 3)


def _photo_folder(root):
    """Two classes of non-square photo crops (larger than 64 px)."""
    from skimage import data

    photos = {"cat": data.chelsea(), "coffee": data.coffee()}
    for split in ("train", "test"):
        for name, img in photos.items():
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(img[i * 10:i * 10 + 230, i * 15:i * 15 + 300]).save(
                    d / f"{i}.jpg", quality=95)
    return root


@pytest.mark.parametrize("model,weights", [("resnet18", "IMAGENET1K_V1"),
                                           ("efficientnet_b0", "IMAGENET1K_V1")])
def test_cnn_input_equals_weights_transforms(tmp_path, monkeypatch, model, weights):
    """Through the whole pipeline (listing, decode workers, store), the tensor the
    network receives for a photo is torchvision's ``weights.transforms()`` of the
    file opened with PIL."""
    import torchvision
    from torchvision.models import get_model, get_model_weights

    from featbench.extraction import extract_features
    from featbench.store import FeatureStore

    root = _photo_folder(tmp_path / "photos")
    ckpt = tmp_path / "random.pth"
    torch.save(get_model(model, weights=None).state_dict(), ckpt)
    seen = []
    first = {"resnet18": torchvision.models.ResNet, "efficientnet_b0":
             torchvision.models.EfficientNet}[model]
    original = first._forward_impl if hasattr(first, "_forward_impl") else first.forward
    name = "_forward_impl" if hasattr(first, "_forward_impl") else "forward"

    def spy(self, x):
        seen.append(x.detach().float().contiguous().clone())
        return original(self, x)

    monkeypatch.setattr(first, name, spy)
    ds = load_dataset(f"folder:{root}")
    assert not ds.small
    params = {f"cnn:{model}": {"weights": weights, "weights_path": str(ckpt),
                                "precision": "fp32", "device": "cpu", "batch_size": 2,
                                "backend": "torch"}}  # the spy watches the torch module
    extract_features(f"cnn:{model}", ds, params, FeatureStore(tmp_path / "s"))
    x = torch.cat(seen)
    order = ds.train.paths + ds.test.paths
    transform = get_model_weights(model)[weights].transforms()
    ref = torch.stack([transform(Image.open(root / p).convert("RGB")) for p in order])
    assert x.shape == ref.shape
    torch.testing.assert_close(x, ref, atol=1e-2, rtol=0)


def test_lite_input_is_crop_of_0875_scaled_to_minus1_1(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    from featbench.extraction import extract_features
    from featbench.store import FeatureStore

    root = _photo_folder(tmp_path / "photos")
    seen = []
    original = EfficientNet.forward

    def spy(self, x):
        seen.append(x.detach().float().contiguous().clone())
        return original(self, x)

    monkeypatch.setattr(EfficientNet, "forward", spy)
    ds = load_dataset(f"folder:{root}")
    params = {"cnn:efficientnet-lite0": {"weights": None, "precision": "fp32", "size": 96,
                                         "device": "cpu", "backend": "torch"}}
    extract_features("cnn:efficientnet-lite0", ds, params, FeatureStore(tmp_path / "s"))
    preset = ImageClassification(crop_size=96, resize_size=round(96 / 0.875),
                                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                 interpolation=InterpolationMode.BILINEAR)
    ref = torch.stack([preset(Image.open(root / p).convert("RGB"))
                       for p in ds.train.paths + ds.test.paths])
    torch.testing.assert_close(torch.cat(seen), ref, atol=1e-2, rtol=0)
    assert float(torch.cat(seen).min()) < -0.5  # [-1, 1] scaling, not mean/std


def test_headerless_list_with_split_column_and_one_class_refused(tmp_path):
    _write(tmp_path / "imgs", [""], n=4)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "imgs").rglob("*.png"))
    rows = [f"{f}\t{f.split('/')[1]}\t{'test' if i % 4 == 3 else 'train'}"
            for i, f in enumerate(files)]
    (tmp_path / "nohead.tsv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"list:{tmp_path / 'nohead.tsv'}")
    assert ds.layout == "list file (train, test)"
    assert (len(ds.train), len(ds.test)) == (6, 2)
    assert all(p.endswith("3.png") for p in ds.test.paths)
    one = tmp_path / "one"
    _write(one, ["train", "test"], n=3, classes=("ants",))
    with pytest.raises(DataError, match="training split has 1 class"):
        load_dataset(f"folder:{one}")
    with pytest.raises(DataError, match=f"use --dataset folder:{one}"):
        load_dataset(str(one))
