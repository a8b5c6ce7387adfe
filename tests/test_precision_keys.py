"""A number says what made it: the precision (TF32 included) and the device type are
explicit and in the store key, the classifier's solver is in the study key and the
tables, and shard workers that resolve ``auto`` differently do not fill two half
entries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import featbench.features.cnn as cnn
import featbench.features.kmeans_patches as kmeans_patches
import featbench.runtime as runtime
from featbench.datasets import load_dataset
from featbench.errors import ParameterError
from featbench.extraction import RuntimeMismatch, extract_features, plan
from featbench.plan import validate_plan
from featbench.reproduce import row_key
from featbench.results import format_table, make_table
from featbench.runner import run_benchmark
from featbench.store import FeatureStore
from featbench.studies import Row

#: a random-init ResNet-18 at 32 px: a torch extractor with a precision that runs in seconds
CNN = "cnn:resnet18"
#: the torch forward pass (these tests watch its TF32 flags and its precisions)
CNN_PARAMS = {"weights": None, "size": 32, "device": "cpu", "backend": "torch"}
KM = "kmeans-patches"
KM_PARAMS = {"n_centroids": 8, "n_patches": 500, "kmeans_iter": 5}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(40, 20, seed=0)


@pytest.fixture
def tf32_on():
    """TF32 allowed for matmul and cuDNN before the test (cuDNN's PyTorch default), the
    process's own settings restored after it."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


# -- TF32 ---------------------------------------------------------------------------
def test_fp32_turns_tf32_off_and_restores_it(tf32_on):
    with runtime.tf32_mode(False):
        assert _flags() == (False, False)
    assert _flags() == (True, True)
    for precision, inside in (("fp32", (False, False)), ("tf32", (True, True)),
                              ("bf16", (False, False))):
        with runtime.autocast(torch.device("cpu"), precision):
            assert _flags() == inside, precision
        assert _flags() == (True, True)
    # restored on an exception too
    with pytest.raises(KeyError), runtime.tf32_mode(False):
        raise KeyError("x")
    assert _flags() == (True, True)


def test_cnn_fp32_forward_pass_runs_without_tf32(tf32_on, digits):
    """What the network sees while it runs: a forward hook reads the flags."""
    p = plan(CNN, digits, {**CNN_PARAMS, "precision": "fp32"})
    p.estimator.fit(np.zeros((1, 8, 8, 3), np.uint8))
    net = p.estimator._network()[1]
    seen: list[tuple[bool, bool]] = []
    net.register_forward_hook(lambda *_: seen.append(_flags()))
    images = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    p.estimator.transform(images)
    assert seen and set(seen) == {(False, False)}
    assert _flags() == (True, True)  # the process's setting is back


def test_kmeans_encoding_runs_without_tf32(tf32_on, monkeypatch):
    seen: list[tuple[bool, bool]] = []
    real = kmeans_patches.triangle_encode

    def spy(*args):
        seen.append(_flags())
        return real(*args)

    monkeypatch.setattr(kmeans_patches, "triangle_encode", spy)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    kmeans_patches.encode_images(images, np.zeros(108, np.float32), np.eye(108, dtype=np.float32),
                                 rng.normal(size=(4, 108)).astype(np.float32), 6, 1, 10.0,
                                 torch.device("cpu"), 1)
    assert len(seen) == 2 and set(seen) == {(False, False)}


def test_tf32_is_a_declared_precision_resolved_per_device(monkeypatch):
    validate_plan([CNN], ["ridge"], {CNN: {"precision": "tf32", "weights": None}})
    with pytest.raises(ParameterError, match="precision"):
        validate_plan([CNN], ["ridge"], {CNN: {"precision": "tf16", "weights": None}})
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert runtime.resolve_precision("tf32", cpu) == "fp32"  # no TF32 off CUDA
    monkeypatch.setattr(runtime, "cuda_has_tf32", lambda device: True)
    assert runtime.resolve_precision("tf32", gpu) == "tf32"
    monkeypatch.setattr(runtime, "cuda_has_tf32", lambda device: False)  # before Ampere
    assert runtime.resolve_precision("tf32", gpu) == "fp32"
    assert runtime.resolve_precision("fp32", gpu) == "fp32"


# -- store keys ---------------------------------------------------------------------
def _keys(ds, name, params):
    p = plan(name, ds, params)
    if p.fit_key is not None:
        p.codebook = "same codebook"  # the entry key of a fitted extractor
    return p.entry_key(ds, "test"), p.fit_key


def test_resolved_precision_is_in_the_entry_key(digits, monkeypatch):
    params = {**CNN_PARAMS, "precision": "auto"}
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    fp32, _ = _keys(digits, CNN, params)
    assert fp32 == _keys(digits, CNN, {**CNN_PARAMS, "precision": "fp32"})[0]
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    bf16, _ = _keys(digits, CNN, params)
    assert bf16 != fp32
    assert bf16 == _keys(digits, CNN, {**CNN_PARAMS, "precision": "bf16"})[0]


def test_device_type_is_in_the_entry_key_not_the_codebook_key(digits, monkeypatch):
    cnn_cpu, _ = _keys(digits, CNN, {**CNN_PARAMS, "precision": "fp32"})
    km_cpu, km_fit_cpu = _keys(digits, KM, KM_PARAMS)
    # the same settings on a machine whose "auto" (or "cuda") device is a GPU
    monkeypatch.setattr(cnn, "check_device", lambda spec: torch.device("cuda"))
    monkeypatch.setattr(kmeans_patches, "check_device", lambda spec: torch.device("cuda"))
    cnn_gpu, _ = _keys(digits, CNN, {**CNN_PARAMS, "precision": "fp32"})
    km_gpu, km_fit_gpu = _keys(digits, KM, KM_PARAMS)
    assert cnn_gpu != cnn_cpu
    assert km_gpu != km_cpu
    # the codebook is fitted on the CPU whatever encodes with it: one for both
    assert km_fit_gpu == km_fit_cpu


# -- classifiers: solver in the study key and the table ---------------------------------
def test_study_key_holds_the_solver_this_machine_resolves(monkeypatch):
    ds = load_dataset("digits").subset(300, 100, seed=0)

    def key(clf):
        row = Row("hog", "hog", clf)
        return row_key(row, ds, row.params_for(False), 0, False)

    cpu_logreg, cpu_svm, cpu_ridge = key("logreg"), key("linear-svm"), key("ridge")
    # a machine with CUDA: solver "auto" fits large problems with torch there
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: True)
    assert key("logreg") != cpu_logreg
    assert key("linear-svm") != cpu_svm
    assert key("ridge") == cpu_ridge  # one solver everywhere


def test_table_shows_precision_and_a_solver_that_is_not_the_default(digits, tmp_path):
    recs = run_benchmark(digits, [KM, "hog"], ["logreg"], params={KM: KM_PARAMS},
                         store=FeatureStore(tmp_path / "s"), results_dir=None, val_size=10)
    assert not any(r.get("error") for r in recs)
    df = make_table(recs)
    assert "precision" in df.columns
    # kmeans-patches encodes in float32 on the CPU; HOG is no torch extractor
    assert list(df["precision"]) == ["fp32", ""]
    assert all(r["classifier"]["params"]["solver"] == "auto" for r in recs)  # as asked
    assert all(r["classifier"]["placement"]["solver"] == "torch" for r in recs)
    assert not any("solver=" in h for h in df["hyperparams"])
    header, _, km_row, hog_row = format_table(df).splitlines()
    assert header.split()[:4] == ["features", "feature_params", "precision", "classifier"]
    # (the k-means row's feature_params are its len(KM_PARAMS) changed parameters)
    assert km_row.split()[1 + len(KM_PARAMS)] == "fp32"
    assert hog_row.split()[:3] == ["hog", "-", "-"]
    assert "precision" not in format_table(df.iloc[1:])  # no torch extractor: no column
    # a record of a fit that took another solver than the default says so
    rec = recs[0]
    rec["classifier"]["placement"].update(solver="sklearn")
    rec["features"]["parts"][0].update(precision="bf16", device_type="cuda")
    row = make_table([rec]).iloc[0]
    assert row["precision"] == "bf16 (cuda)" and "solver=sklearn" in row["hyperparams"]


# -- shard workers that resolve "auto" differently ------------------------------------
def _extract(ds, store, params, bf16: bool, monkeypatch, **kw):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: bf16)
    return extract_features(CNN, ds, {CNN: params}, store, shard_size=8, **kw)


def test_workers_resolving_auto_differently_do_not_fill_two_entries(digits, tmp_path,
                                                                     monkeypatch):
    store = FeatureStore(tmp_path / "s")
    params = {**CNN_PARAMS, "precision": "auto"}
    n_train = -(-len(digits.train) // 8)  # shards of 8 images
    # worker 1 of 2 on a machine without bf16 instructions: fp32, half the shards
    first = _extract(digits, store, params, False, monkeypatch, shard=(1, 2))
    assert first.parts[0]["precision"] == "fp32"
    stored = first.parts[0]["shards"]["train"]
    assert stored["computed"] == len(range(0, n_train, 2))
    # worker 2 on a machine with them resolves bf16: refused, naming the fp32 entry
    with pytest.raises(RuntimeMismatch) as info:
        _extract(digits, store, params, True, monkeypatch, shard=(2, 2))
    text = str(info.value)
    assert "\n" not in text
    assert f"{stored['computed']} of {n_train} shard(s) computed in fp32 on cpu" in text
    assert stored["store"] in text and "resolves bf16 on cpu" in text
    assert f"{CNN}.precision=fp32" in text
    # nothing was computed in bf16
    p = plan(CNN, digits, {**CNN_PARAMS, "precision": "bf16"})
    assert not store.entries_of(p.entry_key(digits, "train"))
    # `run` on that machine stops too (not a pair error), before any fit
    with pytest.raises(RuntimeMismatch):
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
        run_benchmark(digits, [CNN], ["ridge"], params={CNN: params}, store=store,
                      results_dir=None, shard_size=8, val_size=10)
    # worker 2 pinned to the first one's precision completes the fp32 entry
    second = _extract(digits, store, {**params, "precision": "fp32"}, True, monkeypatch,
                      shard=(2, 2))
    assert second.parts[0]["shards"]["train"]["missing"] == 0
    # a complete entry in another precision: computing a bf16 one beside it is said in
    # one line, not refused
    with pytest.warns(UserWarning, match=r"holds \d+ of \d+ shard\(s\) computed in fp32"):
        third = _extract(digits, store, params, True, monkeypatch)
    assert third.parts[0]["precision"] == "bf16" and not third.cached
    bf16 = third.train
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    fp32 = extract_features(CNN, digits, {CNN: params}, store, shard_size=8).train
    assert bf16.shape == fp32.shape and not np.array_equal(bf16, fp32)


def test_a_precision_set_explicitly_computes_beside_a_partial_entry(digits, tmp_path,
                                                                    monkeypatch):
    store = FeatureStore(tmp_path / "s")
    _extract(digits, store, {**CNN_PARAMS, "precision": "auto"}, False, monkeypatch,
             shard=(1, 2))
    with pytest.warns(UserWarning, match="computed in fp32 on cpu"):
        res = _extract(digits, store, {**CNN_PARAMS, "precision": "bf16"}, False, monkeypatch,
                       shard=(2, 2))
    assert res.parts[0]["precision"] == "bf16"

