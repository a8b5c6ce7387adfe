"""Nothing the feature store or the data loaders read can run code: codebooks are
plain arrays (a planted pickle is never loaded), CIFAR-10's pickles are md5-checked
before they are read, every torch load is ``weights_only``; a corrupt codebook is
refitted, store files follow the umask, a full disk leaves no orphan sidecar."""

from __future__ import annotations

import ast
import errno
import hashlib
import io
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from featbench import load_dataset
from featbench.cache import fingerprint
from featbench.datasets import cifar10
from featbench.errors import DataError
from featbench.extraction import extract_features, plan
from featbench.features import cnn as cnn_mod
from featbench.features import get_extractor
from featbench.splits import tuning_split
from featbench.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]
BOVW = {"bovw": {"n_words": 8, "step": 8, "max_descriptors": 500}}
#: tiny settings of every learned extractor (fast fits)
SMALL = {
    "bovw": dict(n_words=6, step=8, max_descriptors=600, assignment="soft"),
    "vlad": dict(n_words=4, step=8, max_descriptors=600),
    "fisher": dict(n_components=3, pca_dim=8, step=8, max_descriptors=600),
    "fisher-no-pca": dict(n_components=2, pca_dim=None, step=8, max_descriptors=600),
    "kmeans-patches": dict(n_centroids=6, n_patches=1000, kmeans_iter=3),
}


@pytest.fixture
def ds():
    return load_dataset("digits").subset(200, 100, seed=0)


class _WritesAFile:
    """Unpickling this object creates the file ``path`` (as planted code would)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def _live_payload(tmp_path: Path, marker: Path) -> bytes:
    """A pickle that writes ``marker`` when loaded; checked to be live on a probe."""
    probe = tmp_path / "probe-marker"
    pickle.loads(pickle.dumps(_WritesAFile(probe))).close()  # noqa: S301 - the test's own
    assert probe.exists()
    return pickle.dumps(_WritesAFile(marker))


# -- codebooks as plain arrays -----------------------------------------------------------
@pytest.mark.parametrize("name", list(SMALL))
def test_codebook_store_round_trip_gives_the_same_features(tmp_path, natural_images, name):
    est_name = name.removesuffix("-no-pca")
    train, test = natural_images[:6], natural_images[6:]
    fitted = get_extractor(est_name, **SMALL[name]).fit(train)
    expected = fitted.transform(test)
    state, checksum = FeatureStore(tmp_path).save_codebook("k", fitted.fitted_state())
    # a new store object reads the file back: numeric arrays, JSON, no pickle
    loaded = FeatureStore(tmp_path).load_codebook("k")
    assert loaded is not None and loaded[1] == checksum
    files = sorted(p.name for p in (tmp_path / "codebooks").iterdir())
    assert files == sorted(["k.npz", f"k.{checksum}.sum"])
    with np.load(tmp_path / "codebooks" / "k.npz", allow_pickle=False) as npz:
        assert all(npz[f].dtype.kind in "biuf" for f in npz.files)
    fresh = get_extractor(est_name, **SMALL[name]).set_fitted_state(loaded[0])
    np.testing.assert_array_equal(fresh.transform(test), expected)
    assert fresh.image_shape_ == fitted.image_shape_


def test_extracted_features_equal_a_fresh_fit_and_no_pickle_is_written(tmp_path, ds,
                                                                      bovw_fits):
    # fitted on the training images outside the validation split, as featbench fits it
    ref = get_extractor("bovw", **BOVW["bovw"]).fit(ds.X_train[tuning_split(ds, 0).fit])
    bovw_fits.clear()
    first = extract_features("bovw", ds, BOVW, FeatureStore(tmp_path), shard_size=64)
    assert bovw_fits == [len(tuning_split(ds, 0).fit)]
    key = plan("bovw", ds, BOVW["bovw"]).fit_key
    assert [p.suffix for p in (tmp_path / "codebooks").glob(f"{key}.*")
            if p.suffix != ".sum"] == [".npz"]
    assert not list(tmp_path.rglob("*.pkl"))
    np.testing.assert_array_equal(first.test, ref.transform(ds.X_test))
    # a second process (a new store object) loads the codebook: no refit, same numbers
    for f in Path(first.parts[0]["shards"]["test"]["store"]).glob("shard-*"):
        f.unlink()
    again = extract_features("bovw", ds, BOVW, FeatureStore(tmp_path), shard_size=64)
    assert bovw_fits == [len(tuning_split(ds, 0).fit)]
    np.testing.assert_array_equal(again.test, first.test)


def test_old_pickled_codebook_is_never_loaded(store_warnings, tmp_path, ds, bovw_fits):
    """A store written by an older featbench (or planted): ``<key>.pkl`` with a matching
    checksum sidecar is not unpickled; the codebook is refitted, said in one line."""
    marker = tmp_path / "marker"
    root = tmp_path / "store"
    folder = root / "codebooks"
    folder.mkdir(parents=True)
    key = plan("bovw", ds, BOVW["bovw"]).fit_key
    data = _live_payload(tmp_path, marker)
    (folder / f"{key}.pkl").write_bytes(data)
    (folder / f"{key}.{fingerprint(np.frombuffer(data, np.uint8))}.sum").touch()
    with store_warnings() as said:
        got = extract_features("bovw", ds, BOVW, FeatureStore(root), shard_size=64)
    assert not marker.exists()
    assert said == [f"featbench store: codebook {folder / f'{key}.pkl'} is a pickle written "
                    f"by an older featbench; not loaded, refitting"]
    assert bovw_fits == [len(tuning_split(ds, 0).fit)]
    # fitted on the training images outside the validation split, as featbench fits it
    ref = get_extractor("bovw", **BOVW["bovw"]).fit(ds.X_train[tuning_split(ds, 0).fit])
    np.testing.assert_array_equal(got.test, ref.transform(ds.X_test))


def test_npz_with_an_object_array_is_refused(store_warnings, tmp_path, ds, bovw_fits):
    """A ``.npz`` codebook whose header is valid and whose array holds a pickled object
    (with a matching checksum sidecar): refused unread, refitted, said in one line."""
    marker = tmp_path / "marker"
    root = tmp_path / "store"
    folder = root / "codebooks"
    folder.mkdir(parents=True)
    key = plan("bovw", ds, BOVW["bovw"]).fit_key
    _live_payload(tmp_path, marker)
    header = {"format": "featbench codebook", "version": 1, "scalars": {"sigma_": 1.0},
              "arrays": ["codebook_", "image_shape_"]}
    evil = np.empty(1, dtype=object)
    evil[0] = _WritesAFile(marker)
    buf = io.BytesIO()
    np.savez(buf, codebook_=evil, image_shape_=np.array([32, 32, 3]),
             __header__=np.frombuffer(json.dumps(header).encode(), np.uint8))
    data = buf.getvalue()
    planted = folder / f"{key}.npz"
    planted.write_bytes(data)
    (folder / f"{key}.{fingerprint(np.frombuffer(data, np.uint8))}.sum").touch()
    with store_warnings() as said:
        got = extract_features("bovw", ds, BOVW, FeatureStore(root), shard_size=64)
    assert not marker.exists()
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith(f"featbench store: codebook {planted} holds something other "
                              f"than plain arrays (Object arrays cannot be loaded")
    assert bovw_fits == [len(tuning_split(ds, 0).fit)]
    # fitted on the training images outside the validation split, as featbench fits it
    ref = get_extractor("bovw", **BOVW["bovw"]).fit(ds.X_train[tuning_split(ds, 0).fit])
    np.testing.assert_array_equal(got.test, ref.transform(ds.X_test))
    # the refused file was replaced by the refitted codebook, read by the next process
    assert planted.read_bytes() != data
    bovw_fits.clear()
    with store_warnings() as said:
        extract_features("bovw", ds, BOVW, FeatureStore(root), shard_size=64)
    assert said == [] and bovw_fits == []


def test_corrupt_codebook_is_refitted_not_used(store_warnings, tmp_path, ds, bovw_fits):
    first = extract_features("bovw", ds, BOVW, FeatureStore(tmp_path), shard_size=64)
    path = tmp_path / "codebooks" / f"{plan('bovw', ds, BOVW['bovw']).fit_key}.npz"
    data = bytearray(path.read_bytes())
    fit_images = ds.X_train[tuning_split(ds, 0).fit]
    centers = get_extractor("bovw", **BOVW["bovw"]).fit(fit_images).codebook_
    at = bytes(data).find(centers.tobytes()[:64])
    assert at > 0  # flip bytes inside the codebook's numbers: still a valid .npz
    data[at + 8:at + 16] = bytes(b ^ 0xFF for b in data[at + 8:at + 16])
    path.write_bytes(bytes(data))
    bovw_fits.clear()
    with store_warnings() as said:
        again = extract_features("bovw", ds, BOVW, FeatureStore(tmp_path), shard_size=64)
    assert said == [f"featbench store: codebook {path} is corrupt; refitting it"]
    assert bovw_fits == [len(tuning_split(ds, 0).fit)]  # refitted
    np.testing.assert_array_equal(again.train, first.train)
    np.testing.assert_array_equal(again.test, first.test)
    assert again.parts[0]["codebook"] == first.parts[0]["codebook"]


# -- CIFAR-10's pickles ------------------------------------------------------------------
def _fake_batches(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in [*cifar10.TRAIN_BATCHES, "test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"labels": [i % 10 for i in range(10)],
                         b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8)}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in cifar10.CLASSES]}, f)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar10_meta_is_md5_checked_before_it_is_unpickled(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    _fake_batches(folder)
    official = {name: _md5(folder / name) for name in cifar10.BATCH_MD5}
    monkeypatch.setattr(cifar10, "BATCH_MD5", official)
    assert load_dataset("cifar10", data_dir=tmp_path).classes == cifar10.CLASSES
    # the same folder with a planted batches.meta: refused, nothing in it runs
    marker = tmp_path / "marker"
    meta = folder / "batches.meta"
    meta.write_bytes(_live_payload(tmp_path, marker))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()
    msg = str(err.value)
    assert "\n" not in msg and str(meta) in msg and "md5" in msg


def test_cifar10_meta_md5_is_the_official_one():
    """The md5 torchvision lists for the official ``batches.meta``."""
    assert cifar10.BATCH_MD5["batches.meta"] == "5ff9c542aee3614f3951f8cda6e48888"


# -- torch loads: weights only -----------------------------------------------------------
#: torch functions that unpickle a file, and where their ``weights_only`` argument is
TORCH_LOADS = {"load", "load_state_dict_from_url"}


def _torch_loads_without_weights_only(tree: ast.AST) -> list[int]:
    """Lines of calls ``torch.load`` / ``torch.hub.load`` / ``load_state_dict_from_url``
    (any spelling: attribute or bare name, ``functools.partial`` of one) that do not pass
    ``weights_only=True``."""
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, args = node.func, node.keywords
        if isinstance(func, ast.Attribute) and func.attr == "partial" and node.args:
            func = node.args[0]  # functools.partial(torch.load, ...)
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in TORCH_LOADS:
            continue
        if name == "load" and not (isinstance(func, ast.Attribute)
                                   and ast.unparse(func.value) in ("torch", "torch.hub")):
            continue  # np.load, json.load, pickle.load: not torch
        if not any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                   and k.value.value is True for k in args):
            bad.append(node.lineno)
    return bad


def test_every_torch_load_in_featbench_is_weights_only():
    # the scan itself finds the forms it looks for
    probe = ast.parse("import torch\ntorch.load(p)\ntorch.hub.load_state_dict_from_url(u)\n"
                      "load_state_dict_from_url(u, weights_only=False)\n"
                      "torch.hub.load('repo', 'm')\nfunctools.partial(torch.load, x)\n"
                      "torch.load(p, weights_only=True)\nnp.load(p)\n")
    assert _torch_loads_without_weights_only(probe) == [2, 3, 4, 5, 6]
    found = {}
    for path in sorted((REPO / "featbench").rglob("*.py")):
        bad = _torch_loads_without_weights_only(ast.parse(path.read_text()))
        if bad:
            found[str(path.relative_to(REPO))] = bad
    assert found == {}
    # and nothing patches torchvision's private modules any more
    cnn_source = (REPO / "featbench" / "features" / "cnn.py").read_text()
    assert "_api" not in cnn_source


def test_pickle_loads_only_where_md5_checked():
    """``pickle.load``/``loads`` in featbench: CIFAR-10's md5-checked batches, and the
    Ray engine's own exception object passed from its actor; never in the store."""
    found = set()
    for path in sorted((REPO / "featbench").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and ast.unparse(node.func) in ("pickle.load", "pickle.loads"):
                found.add(str(path.relative_to(REPO / "featbench")))
    assert found <= {"datasets/cifar10.py", "engines/ray_data.py"}
    # the store imports no pickle, and reads every array with allow_pickle=False
    tree = ast.parse((REPO / "featbench" / "store.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m and m.split(".")[0] in ("pickle", "joblib", "dill")}
    loads = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and ast.unparse(n.func) == "np.load"]
    assert len(loads) >= 3
    for call in loads:
        kw = {k.arg: k.value for k in call.keywords}
        assert isinstance(kw.get("allow_pickle"), ast.Constant), ast.unparse(call)
        assert kw["allow_pickle"].value is False, ast.unparse(call)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty ``$TORCH_HOME`` and no network for torch.hub downloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise OSError(f"no network in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch"


def test_hub_weights_are_loaded_weights_only(torch_home, natural_images, monkeypatch):
    """A resnet18 state dict put in the hub folder under torchvision's file name is the
    model's, read by ``torch.load(..., weights_only=True)`` and nothing else."""
    w = torchvision.models.ResNet18_Weights.DEFAULT
    target = torch_home / "hub" / "checkpoints" / Path(w.url).name
    target.parent.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        torch.save(torchvision.models.resnet18().state_dict(), target)
    saved = torch.load(target, weights_only=True)
    calls = []
    original = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    est = get_extractor("cnn:resnet18", size=32, precision="fp32").fit(natural_images[:2])
    loaded, _, _ = est._network()
    assert calls == [True]
    assert loaded.weights == str(w)
    state = loaded.model.state_dict()
    assert state.keys() == saved.keys()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name


def _meta_state(model: torch.nn.Module) -> dict:
    """The model's state dict with empty tensors, its versions (``_metadata``) kept."""
    state = model.state_dict()
    out = type(state)((k, torch.empty_like(v)) for k, v in state.items())
    out._metadata = state._metadata
    return out


def _structure(model: torch.nn.Module) -> tuple:
    """What a model is: its modules' repr, parameter names and shapes, and the plain
    settings of every module (``transform_input``, ``aux_logits``, image sizes ...)."""
    plain = (bool, int, float, str, tuple, type(None))
    settings = {name: {k: v for k, v in vars(m).items()
                       if not k.startswith("_") and isinstance(v, plain)}
                for name, m in model.named_modules()}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return repr(model), shapes, settings


@pytest.mark.parametrize("name", ["googlenet", "inception_v3", "densenet121", "vgg11",
                                  "vit_b_16", "maxvit_t", "resnet18", "swin_t"])
def test_pretrained_architecture_equals_torchvisions(name, monkeypatch):
    """Built with ``weights=None`` and torchvision's weight-derived arguments, every
    weights enum member gives the model torchvision's builder gives (on the meta
    device: no memory, no download; the builder's loader returns a matching state)."""
    from torchvision.models import WeightsEnum, get_model, get_model_weights

    for w in get_model_weights(name):
        with torch.device("meta"):
            ours = get_model(name, weights=None, **cnn_mod._pretrained_kwargs(name, w))
            state = _meta_state(ours)
            cnn_mod._load_pretrained(name, ours, state, "meta")
            with monkeypatch.context() as m:
                m.setattr(WeightsEnum, "get_state_dict", lambda self, *a, _s=state, **k: _s)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    theirs = get_model(name, weights=w)
        assert _structure(ours) == _structure(theirs), str(w)


def test_densenet_old_key_names_are_renamed():
    """torchvision's DenseNet files name ``norm.1``, not ``norm1``: loaded as its builder
    loads them."""
    import re

    model = torchvision.models.densenet121(weights=None)
    state = model.state_dict()
    # the old files predate num_batches_tracked
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
           for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1.weight" in k for k in old)
    fresh = torchvision.models.densenet121(weights=None)
    cnn_mod._load_pretrained("densenet121", fresh, old, "old names")
    for k, v in fresh.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, state[k]), k


# -- file modes, full disk ---------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_store_files_follow_the_umask(tmp_path, ds, umask, mode):
    old = os.umask(umask)
    try:
        extract_features("hog+bovw", ds, BOVW, FeatureStore(tmp_path), shard_size=64)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(mode)}
    assert {".npy", ".json", ".npz", ".sum"} <= {p.suffix for p in files}
    folders = [p for p in tmp_path.rglob("*") if p.is_dir()]
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(0o777 & ~umask)}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_run_records_follow_the_umask(tmp_path, umask, mode):
    from featbench.results import write_json_atomic

    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "runs" / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert oct((tmp_path / "runs" / "r.json").stat().st_mode & 0o777) == oct(mode)


def test_full_disk_leaves_no_orphan_sidecar(store_warnings, tmp_path, monkeypatch):
    entry = FeatureStore(tmp_path).entry("k", 6, shard_size=4, manifest={"dtype": "float32"})
    entry.create()
    original = np.save

    def full(file, arr, *args, **kwargs):
        file.write(b"\x93NUMPY")  # a few bytes, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", full)
    F = np.arange(8, dtype=np.float32).reshape(4, 2)
    with store_warnings() as said:
        assert entry.write(0, F) is True
    monkeypatch.setattr(np, "save", original)
    assert len(said) == 1 and "No space left on device" in said[0]
    left = sorted(p.name for p in entry.path.iterdir())
    assert left == ["manifest.json"]  # no shard, no sidecar, no temporary file
    done = entry.finished()
    assert list(done) == [0] and done[0].path is None
    np.testing.assert_array_equal(done[0].load(), F)
