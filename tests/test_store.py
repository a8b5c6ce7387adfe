"""The sharded feature store and the extraction layer: reuse, keys, corruption,
many writers, resuming after SIGKILL, bad files, features equal to the
in-memory path they replace, and runs that a read-only, full or damaged store
never fails."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featbench import load_dataset
from featbench import store as store_mod
from featbench.cache import make_key
from featbench.cli import main
from featbench.errors import DataError
from featbench.extraction import extract_features, plan
from featbench.features import get_extractor
from featbench.runner import run_benchmark
from featbench.splits import tuning_split
from featbench.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ds():
    return load_dataset("digits").subset(200, 100, seed=0)


def _photos(root, n=24, classes=("a", "b"), size=(40, 48), splits=("train", "test")):
    rng = np.random.default_rng(0)
    for split in splits:
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 90, (*size, 3)).astype(np.uint8)
                a[..., k] += 150
                Image.fromarray(a).save(d / f"{i:03d}.png")
    return root


def test_second_run_reuses_every_shard(tmp_path, ds, counted):
    st = FeatureStore(tmp_path)
    first = extract_features("hog", ds, {}, st, shard_size=64)
    assert not first.cached and sum(counted) >= 300
    assert first.parts[0]["shards"]["train"] == {**first.parts[0]["shards"]["train"],
                                                 "n": 4, "computed": 4, "reused": 0}
    counted.clear()
    second = extract_features("hog", ds, {}, st, shard_size=64)
    assert second.cached and counted == []
    np.testing.assert_array_equal(first.train, second.train)
    assert second.extract_s == pytest.approx(first.extract_s)  # the computing time is kept
    union = extract_features("hog+color-hist", ds, {}, st, shard_size=64)
    assert counted == [] and union.parts[0]["cached"] and not union.parts[1]["cached"]
    # read back memory-mapped, never loaded into one array first
    (stored,) = st.entries_of(plan("hog", ds, {}).entry_key(ds, "test"))
    shards = stored.shards()
    assert [len(a) for a in shards] == [64, 36]
    assert all(isinstance(a, np.memmap) and not a.flags.writeable for a in shards)
    np.testing.assert_array_equal(np.concatenate(shards), second.test)


def test_features_equal_the_in_memory_extractor(tmp_path, ds):
    st = FeatureStore(tmp_path)
    for name in ("hog", "color-hist", "raw"):
        got = extract_features(name, ds, {}, st, shard_size=37)  # uneven shards
        ref = get_extractor(name).fit(ds.X_train)
        np.testing.assert_allclose(got.train, ref.transform(ds.X_train), atol=1e-6, rtol=0)
        np.testing.assert_allclose(got.test, ref.transform(ds.X_test), atol=1e-6, rtol=0)


def test_cifar_subset_features_unchanged(tmp_path, shared_data):
    """hog, color-hist and raw through the store = the old path (decode each file with
    read_image at 32 px into one array, then transform)."""
    from featbench.datasets.imageio import read_image

    ds = load_dataset("cifar10", data_dir=shared_data, train_size=300, test_size=100)
    X_old = np.stack([read_image(ds.train.path(i), 32) for i in range(len(ds.train))])
    st = FeatureStore(tmp_path)
    for name in ("hog", "color-hist", "raw"):
        got = extract_features(name, ds, {}, st, shard_size=128)
        ref = get_extractor(name).fit(X_old).transform(X_old)
        np.testing.assert_allclose(got.train, ref, atol=1e-6, rtol=0)


def test_key_covers_parameters_data_and_resolved_precision(tmp_path, ds, counted, monkeypatch):
    st = FeatureStore(tmp_path)
    extract_features("hog", ds, {}, st)
    counted.clear()
    extract_features("hog", ds, {"hog": {"block_norm": None}}, st)
    assert sum(counted) >= 300
    counted.clear()
    extract_features("hog", ds.subset(150, 100, seed=0), {}, st)
    assert sum(counted) >= 150  # other training images: other entries
    # arrays are keyed by their whole content (repr abbreviates past 1,000 elements)
    a = np.zeros(5000)
    b = a.copy()
    b[2500] = 1
    assert repr(a) == repr(b) and make_key(x=a) != make_key(x=b)
    # precision="auto" is keyed as this machine resolves it
    from featbench import runtime

    keys = []
    for bf16 in (True, False):
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda bf16=bf16: bf16)
        p = plan("cnn:resnet18", ds, {"weights": None, "device": "cpu"})
        keys.append(p.entry_key(ds, "train"))
        assert p.base["runtime"]["precision"] == ("bf16" if bf16 else "fp32")
    assert keys[0] != keys[1]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_shard_is_recomputed_alone(tmp_path, ds, counted, damage):
    st = FeatureStore(tmp_path)
    good = extract_features("hog", ds, {}, st, shard_size=64)
    key = plan("hog", ds, {}).entry_key(ds, "train")
    npy = sorted((tmp_path / "features" / f"{key}-s64").glob("shard-000001.npy"))[0]
    raw = bytearray(npy.read_bytes())
    if damage == "truncate":
        del raw[-100:]
    else:
        raw[-5] ^= 0xFF
    npy.chmod(0o644)
    npy.write_bytes(bytes(raw))
    counted.clear()
    with pytest.warns(UserWarning, match="corrupt"):
        again = extract_features("hog", ds, {}, st, shard_size=64)
    assert sum(counted) == 1 + 64  # only that shard (and one image probing the shape in fit)
    np.testing.assert_array_equal(again.train, good.train)


def test_float16_store_is_its_own_entry(tmp_path, ds, counted):
    st = FeatureStore(tmp_path)
    got = extract_features("hog", ds, {}, st, dtype="float16")
    assert got.train.dtype == np.float16
    ref = get_extractor("hog").fit(ds.X_train).transform(ds.X_train)
    np.testing.assert_allclose(got.train.astype(np.float32), ref, atol=2e-3)
    counted.clear()
    full = extract_features("hog", ds, {}, st, dtype="float32")
    assert full.train.dtype == np.float32 and sum(counted) >= 300  # not the float16 shards
    np.testing.assert_allclose(full.train, ref, atol=1e-7)


def test_first_writer_wins_even_when_numbers_differ(tmp_path):
    """Two writers whose shard differs (e.g. GPU and CPU rounding): the first
    published one is kept and read by everyone; the later write loses."""
    entry = FeatureStore(tmp_path).entry("k", 6, shard_size=4, manifest={"dtype": "float32"})
    entry.create()
    first = np.arange(8, dtype=np.float32).reshape(4, 2)
    assert entry.write(0, first) is True
    assert entry.write(0, first + 1e-3) is False
    assert entry.write(1, np.ones((2, 2), np.float32)) is True
    again = FeatureStore(tmp_path).entry("k", 6, shard_size=4, manifest={"dtype": "float32"})
    F, bad = again.read()
    np.testing.assert_array_equal(F[:4], first)
    assert bad == [] and len(list(again.path.glob("shard-*.npy"))) == 2
    # codebooks likewise: one name per key, the first state published is everyone's
    st = FeatureStore(tmp_path)
    a, sum_a = st.save_codebook("cb", {"centers_": np.zeros(3)})
    b, sum_b = st.save_codebook("cb", {"centers_": np.ones(3)})
    assert sum_a == sum_b
    np.testing.assert_array_equal(b["centers_"], np.zeros(3))


def test_train_only_folder_is_refused(tmp_path):
    _photos(tmp_path / "d", n=3, splits=("train",))
    with pytest.raises(DataError, match="no held-out split"):
        load_dataset(f"folder:{tmp_path / 'd'}")


def test_codebook_fitted_once_and_shared(tmp_path, ds, bovw_fits):
    fits = bovw_fits
    params = {"bovw": {"n_words": 8, "step": 8, "max_descriptors": 500}}
    st = FeatureStore(tmp_path)
    first = extract_features("bovw", ds, params, st, shard_size=64)
    n_fit = len(tuning_split(ds, 0).fit)  # train minus the validation images
    assert fits == [n_fit] < [len(ds.train)]
    assert len(list((tmp_path / "codebooks").glob("*.npz"))) == 1
    # the test split's shards are gone: recomputed with the stored codebook, no refit
    for f in Path(first.parts[0]["shards"]["test"]["store"]).glob("shard-*"):
        f.unlink()
    again = extract_features("bovw", ds, params, st, shard_size=64)
    assert fits == [n_fit]
    np.testing.assert_array_equal(first.test, again.test)


def test_many_writers_first_rename_wins(tmp_path, ds, monkeypatch):
    """Two writers compute the same shards at once (a barrier lines up their
    publishes): each shard exists once, nothing valid is deleted, both get the
    same features."""
    barrier = threading.Barrier(2, timeout=30)
    published = []
    original = store_mod._publish

    def racing(tmp, final):
        if final.suffix == ".npy":
            barrier.wait()  # both writers reach the rename of the same shard together
        won = original(tmp, final)
        published.append((str(final), won))
        return won

    monkeypatch.setattr(store_mod, "_publish", racing)
    st = FeatureStore(tmp_path)
    out, errors = {}, []

    def writer(k):
        try:
            out[k] = extract_features("hog", ds, {}, st, shard_size=64, n_workers=1)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    npys = [(n, w) for n, w in published if n.endswith(".npy")]
    assert len(npys) == 2 * (4 + 2)  # 6 shards, each published by both writers
    by_name: dict[str, list[bool]] = {}
    for n, w in npys:
        by_name.setdefault(n, []).append(w)
    assert all(sorted(w) == [False, True] for w in by_name.values())  # one winner each
    np.testing.assert_array_equal(out[0].train, out[1].train)
    files = list((tmp_path / "features").rglob("shard-*.npy"))
    assert len(files) == 6 and not list((tmp_path / "features").rglob(".tmp-*"))


def test_shard_appearing_meanwhile_counts_as_done(tmp_path, ds, counted):
    st = FeatureStore(tmp_path)
    ref = extract_features("hog", ds, {}, FeatureStore(tmp_path / "other"), shard_size=64)
    key = plan("hog", ds, {}).entry_key(ds, "train")
    src = tmp_path / "other" / "features" / f"{key}-s64"
    dst = tmp_path / "features" / f"{key}-s64"
    dst.mkdir(parents=True)
    # another process publishes shards 0 and 2 before this one starts
    for f in src.glob("shard-00000[02].*"):
        (dst / f.name).write_bytes(f.read_bytes())
    counted.clear()
    got = extract_features("hog", ds, {}, st, shard_size=64)
    assert got.parts[0]["shards"]["train"]["computed"] == 2
    assert got.parts[0]["shards"]["train"]["reused"] == 2
    np.testing.assert_array_equal(got.train, ref.train)


SLOW = textwrap.dedent("""
    import sys, time
    from featbench import load_dataset
    from featbench.extraction import extract_features
    from featbench.features.hog import HOG
    from featbench.store import FeatureStore

    original = HOG._extract
    def slow(self, images):
        time.sleep(0.4)
        return original(self, images)
    HOG._extract = slow
    HOG._n_jobs = 1
    ds = load_dataset(f"folder:{sys.argv[1]}")
    extract_features("hog", ds, {}, FeatureStore(sys.argv[2]), shard_size=8)
    print("finished")
""")


def test_sigkill_resumes_from_the_last_finished_shard(tmp_path, counted):
    root = _photos(tmp_path / "data", n=24)  # 48 train images = 6 shards, 48 test = 6
    store_dir = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW, str(root), str(store_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if len(list(store_dir.rglob("shard-*.npy"))) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(store_dir.rglob("shard-*.npy")))
    assert 3 <= done_before < 12, "the extraction was not killed part-way"
    ds = load_dataset(f"folder:{root}")
    counted.clear()
    resumed = extract_features("hog", ds, {}, FeatureStore(store_dir), shard_size=8)
    computed = sum(v["computed"] for v in resumed.parts[0]["shards"].values())
    assert computed == 12 - done_before
    assert sum(counted) == 1 + 8 * computed  # the unfinished shards (+ the shape probe)
    clean = extract_features("hog", ds, {}, FeatureStore(tmp_path / "clean"), shard_size=8)
    np.testing.assert_array_equal(resumed.train, clean.train)
    np.testing.assert_array_equal(resumed.test, clean.test)


def test_bad_file_stops_at_once_or_is_skipped(tmp_path, monkeypatch):
    root = _photos(tmp_path / "data", n=60)
    bad = root / "train" / "a" / "000.png"
    bad.write_bytes(b"not a png")
    from featbench.datasets import source

    calls = []
    original = source.read_file

    def slow_read(path):
        calls.append(path)
        if path != bad:
            time.sleep(0.005)
        return original(path)

    monkeypatch.setattr(source, "read_file", slow_read)
    ds = load_dataset(f"folder:{root}")
    with pytest.raises(DataError, match=r"cannot read image .*000\.png"):
        extract_features("color-hist", ds, {}, FeatureStore(tmp_path / "s"), shard_size=1024)
    assert len(calls) < 60  # stopped without decoding the whole queued shard
    monkeypatch.setattr(source, "read_file", original)

    res = CliRunner().invoke(main, ["run", "-q", "-d", f"folder:{root}", "-f", "color-hist",
                                    "-c", "ridge", "--results-dir", str(tmp_path / "r"),
                                    "--skip-bad-images"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "skipped 1 image(s)" in res.output and "000.png" in res.output
    rec = json.loads(next((tmp_path / "r" / "runs").glob("*.json")).read_text())
    assert len(rec["bad_images"]) == 1 and str(bad) in rec["bad_images"][0]
    assert rec["dataset"]["n_train_fit"] + rec["dataset"]["n_val"] == 119

    res = CliRunner().invoke(main, ["run", "-q", "-d", f"folder:{root}", "-f", "color-hist",
                                    "-c", "ridge", "--results-dir", str(tmp_path / "r2")],
                             catch_exceptions=False)
    assert res.exit_code == 1 and res.output.count("\n") == 2  # first line + one error line
    assert f"Error: cannot read image {bad}" in res.output


def test_extract_command_then_run_reuses(tmp_path):
    root = _photos(tmp_path / "data", n=10)
    cache = tmp_path / "cache"
    res = CliRunner().invoke(main, ["extract", "-q", "-d", f"folder:{root}", "-f", "hog",
                                    "--cache-dir", str(cache), "--shard-size", "8"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "hog: 6 of 6 shard(s) computed, 0 already stored; 40 images" in res.output
    assert "48x40 px" in res.output  # the images' own size, said in the first line
    res = CliRunner().invoke(main, ["extract", "-q", "-d", f"folder:{root}", "-f", "hog",
                                    "--cache-dir", str(cache), "--shard-size", "8"],
                             catch_exceptions=False)
    assert "hog: 0 of 6 shard(s) computed, 6 already stored" in res.output
    # a run's command line (with classifier parameters) works for extract too
    res = CliRunner().invoke(main, ["extract", "-q", "-d", f"folder:{root}", "-f", "hog",
                                    "-p", "ridge.alpha=1", "--cache-dir", str(cache),
                                    "--shard-size", "8"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["run", "-q", "-d", f"folder:{root}", "-f", "hog", "-c",
                                    "ridge", "--cache-dir", str(cache), "--shard-size", "8",
                                    "--results-dir", str(tmp_path / "r")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "r" / "runs").glob("*.json")).read_text())
    assert rec["features"]["cached"] is True
    assert rec["features"]["parts"][0]["view"] == {"transform": "native"}


def test_dataloader_workers_give_the_same_images(tmp_path, monkeypatch):
    """The CUDA decoding path (torch DataLoader worker processes, each shard gathered
    from chunks into one reused buffer) yields the same shards as the thread pool;
    run here on the CPU without pinning."""
    from featbench import extraction
    from featbench.extraction import Decoder, _torch_batches

    monkeypatch.setattr(extraction, "LOADER_CHUNK", 2)  # several chunks per shard
    root = _photos(tmp_path / "data", n=7)
    ds = load_dataset(f"folder:{root}")
    entry = FeatureStore(tmp_path / "s").entry("k", len(ds.train), shard_size=5)
    view = ds.working_view()
    # each shard is consumed before the next one reuses the buffer: copy to keep it
    got = {j: x.copy() for j, x, bad, _ in _torch_batches(ds.train, view, entry, [0, 2], 2,
                                                          False, pin=False)}
    dec = Decoder(ds.train, view, 2)
    for j in (0, 2):
        ref, bad, _ = dec.collect(dec.submit(range(*entry.bounds(j))))
        np.testing.assert_array_equal(got[j], ref)
    dec.close()
    assert got[2].shape == (4, 40, 48, 3)  # the last shard is short
    # an unreadable file: left out with its index, or the first one raises at once
    bad_file = root / "train" / "a" / "003.png"
    bad_file.write_bytes(b"broken")
    out = [(j, x.shape[0], bad) for j, x, bad, _ in _torch_batches(ds.train, view, entry, [0],
                                                                   2, True, pin=False)]
    assert out == [(0, 4, [3])]
    with pytest.raises(DataError, match="003.png"):
        list(_torch_batches(ds.train, view, entry, [0], 2, False, pin=False))


def test_other_shard_size_reuses_a_whole_entry(tmp_path, ds, counted):
    st = FeatureStore(tmp_path)
    first = extract_features("hog", ds, {}, st, shard_size=64)
    counted.clear()
    again = extract_features("hog", ds, {}, st, shard_size=50)
    assert counted == [] and again.cached
    np.testing.assert_array_equal(first.train, again.train)


# -- a cache never fails a run: read-only, full and damaged stores ----------------------
def _inside(path, root: Path) -> bool:
    if isinstance(path, int):
        return False
    path = os.path.abspath(os.fsdecode(path))
    return path == str(root) or path.startswith(str(root) + os.sep)


def _deny_writes(monkeypatch, root: Path, err: int) -> None:
    """Make every write under ``root`` fail with ``err`` as a read-only (EROFS) or
    foreign (EACCES) folder does: making folders, creating or opening files for
    writing, links, renames and removals. Reading still works."""
    import builtins
    import io

    root = Path(os.path.abspath(root))

    def refuse(path):
        raise OSError(err, os.strerror(err), os.fsdecode(path))

    def deny(name, positions=(0,), writes=lambda *a, **k: True):
        original = getattr(os, name)

        def patched(*args, **kwargs):
            hit = [args[i] for i in positions if i < len(args) and _inside(args[i], root)]
            if (hit or kwargs.get("dir_fd") is not None) and writes(*args, **kwargs):
                refuse(hit[-1] if hit else args[0])
            return original(*args, **kwargs)

        monkeypatch.setattr(os, name, patched)

    for name in ("mkdir", "unlink", "remove", "rmdir"):
        deny(name)
    for name in ("link", "replace", "rename"):
        deny(name, positions=(0, 1))
    deny("open", writes=lambda path, flags, *a, **k: flags & (os.O_WRONLY | os.O_RDWR
                                                                | os.O_CREAT))
    original_open = builtins.open

    def patched_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and _inside(file, root):
            refuse(file)
        return original_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", patched_open)
    monkeypatch.setattr(io, "open", patched_open)


def _fill_disk(monkeypatch, root: Path, how: str) -> None:
    """Make every feature array written under ``root`` stop half-way, as on a full disk:
    ``np.save`` raising ENOSPC, or numpy's short-write error that has no errno."""
    original = np.save

    def full(file, arr, *args, **kwargs):
        if not _inside(getattr(file, "name", file), root):
            return original(file, arr, *args, **kwargs)
        data = np.ascontiguousarray(arr).tobytes()
        file.write(data[: len(data) // 2])
        if how == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise OSError(f"{len(data)} requested and {len(data) // 2} written")

    monkeypatch.setattr(np, "save", full)


BOVW = {"bovw": {"n_words": 8, "step": 8, "max_descriptors": 500}}


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES], ids=["EROFS", "EACCES"])
def test_read_only_store_computes_in_memory_and_warns_once(store_warnings, tmp_path, ds,
                                                          monkeypatch, err):
    ref = extract_features("hog+bovw", ds, BOVW, FeatureStore(tmp_path / "ok"), shard_size=64)
    ref_records = run_benchmark(ds, ["hog", "color-hist"], ["ridge"],
                                store=FeatureStore(tmp_path / "ok"), results_dir=None)
    root = tmp_path / "ro" / "store"
    root.mkdir(parents=True)
    _deny_writes(monkeypatch, root, err)
    with store_warnings() as said:
        got = extract_features("hog+bovw", ds, BOVW, FeatureStore(root), shard_size=64)
    assert len(said) == 1 and said[0].startswith(f"feature store {root} is not writable "
                                                 f"({os.strerror(err)}: {root}")
    assert "\n" not in said[0] and said[0].endswith("features are computed but not stored")
    hog = get_extractor("hog").fit(ds.X_train)
    np.testing.assert_allclose(got.train[:, :hog.n_features_out_], hog.transform(ds.X_train),
                               atol=1e-6, rtol=0)
    for split in ("train", "test"):
        np.testing.assert_array_equal(got.splits[split], ref.splits[split])
    assert got.parts[1]["codebook"] == ref.parts[1]["codebook"]
    assert not got.cached and not any(root.iterdir())
    # a whole sweep: every pair succeeds, with one warning for the store
    with store_warnings() as said:
        records = run_benchmark(ds, ["hog", "color-hist"], ["ridge"], store=FeatureStore(root),
                                results_dir=None)
    assert len(said) == 1 and str(root) in said[0]
    assert [r.get("error") for r in records] == [None, None]
    assert [r["test_acc"] for r in records] == [r["test_acc"] for r in ref_records]


def test_read_only_store_with_entries_is_reused(store_warnings, tmp_path, ds, counted, monkeypatch):
    root = tmp_path / "store"
    first = extract_features("hog+bovw", ds, BOVW, FeatureStore(root), shard_size=64)
    files = sorted(p for p in root.rglob("*"))
    _deny_writes(monkeypatch, root, errno.EROFS)
    counted.clear()
    with store_warnings() as said:
        again = extract_features("hog+bovw", ds, BOVW, FeatureStore(root), shard_size=64)
    assert said == [] and counted == [] and again.cached
    np.testing.assert_array_equal(again.train, first.train)
    np.testing.assert_array_equal(again.test, first.test)
    assert sorted(p for p in root.rglob("*")) == files


def test_read_only_store_folder_for_real(store_warnings, tmp_path, ds, counted):
    """The same through the file system's own permissions (not as root: root writes
    anywhere)."""
    root = tmp_path / "store"
    first = extract_features("hog", ds, {}, FeatureStore(root), shard_size=64)
    empty = tmp_path / "empty"
    empty.mkdir()
    folders = [empty, *(p for p in root.rglob("*") if p.is_dir()), root]
    for p in folders:
        p.chmod(0o555)
    try:
        if os.access(empty, os.W_OK):
            pytest.skip("a read-only folder is writable here (root; run under `setpriv "
                    "--bounding-set=-dac_override,-dac_read_search,-fowner` to test it)")
        counted.clear()
        with store_warnings() as said:
            again = extract_features("hog", ds, {}, FeatureStore(root), shard_size=64)
        assert said == [] and counted == []
        np.testing.assert_array_equal(again.train, first.train)
        with store_warnings() as said:
            got = extract_features("hog", ds, {}, FeatureStore(empty), shard_size=64)
        assert len(said) == 1 and f"feature store {empty} is not writable" in said[0]
        np.testing.assert_array_equal(got.train, first.train)
    finally:
        for p in folders:
            p.chmod(0o755)


@pytest.mark.parametrize("how", ["enospc", "short-write"])
def test_full_disk_run_succeeds_with_one_warning(store_warnings, tmp_path, monkeypatch, how):
    args = ["run", "-q", "-d", "digits", "-f", "hog", "-c", "ridge", "--train-size", "400",
            "--test-size", "200", "--shard-size", "128"]
    res = CliRunner().invoke(main, [*args, "--cache-dir", str(tmp_path / "ok"),
                                    "--results-dir", str(tmp_path / "r-ok")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    root = tmp_path / "full" / "store"
    _fill_disk(monkeypatch, root, how)
    with store_warnings() as said:
        res = CliRunner().invoke(main, [*args, "--cache-dir", str(tmp_path / "full"),
                                        "--results-dir", str(tmp_path / "r")],
                                 catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert len(said) == 1 and said[0].startswith(f"feature store {root} cannot write {root}")
    assert ("No space left on device" if how == "enospc" else "requested and") in said[0]
    assert not list(root.rglob(".tmp-*")) and not list(root.rglob("shard-*.npy"))
    ok, got = (json.loads(next((tmp_path / d / "runs").glob("*.json")).read_text())
               for d in ("r-ok", "r"))
    assert got.get("error") is None and not got["features"]["cached"]
    for key in ("val_acc", "test_acc"):
        assert got[key] == ok[key]


def _damage(root: Path, ds, how: str) -> Path:
    """Put a path of the wrong type (or content) where the store expects another."""
    entry = root / "features" / f"{plan('hog', ds, {}).entry_key(ds, 'train')}-s64"
    target = {"entry-is-a-file": entry, "manifest-is-a-folder": entry / "manifest.json",
              "manifest-is-junk": entry / "manifest.json",
              "shard-is-a-folder": entry / "shard-000001.npy",
              "features-is-a-file": root / "features"}[how]
    store_mod._remove(target)
    if how.endswith("folder"):
        (target / "inner").mkdir(parents=True)
    else:
        target.write_text("junk")
    return target


@pytest.mark.parametrize("how", ["entry-is-a-file", "manifest-is-a-folder", "manifest-is-junk",
                                 "shard-is-a-folder", "features-is-a-file"])
def test_wrong_type_path_is_replaced(store_warnings, tmp_path, ds, counted, how):
    root = tmp_path / "store"
    first = extract_features("hog", ds, {}, FeatureStore(root), shard_size=64)
    target = _damage(root, ds, how)
    # images computed again (+ one probing the shape in fit): nothing but what was damaged
    recomputed = {"entry-is-a-file": 1 + 200, "manifest-is-a-folder": 0, "manifest-is-junk": 0,
                  "shard-is-a-folder": 1 + 64, "features-is-a-file": 1 + 300}
    for run in range(2):
        counted.clear()
        with store_warnings() as said:
            got = extract_features("hog", ds, {}, FeatureStore(root), shard_size=64)
        np.testing.assert_array_equal(got.train, first.train)
        np.testing.assert_array_equal(got.test, first.test)
        if run == 0:  # replaced, with a warning naming it
            assert len(said) == 1 and str(target) in said[0], said
            assert sum(counted) == recomputed[how]
        else:  # stored again: reused
            assert said == [] and counted == []
    manifest = json.loads((target if "manifest" in how else
                           Path(got.parts[0]["shards"]["train"]["store"]) / "manifest.json"
                           ).read_text())
    assert manifest["split"] == "train"


def test_wrong_type_path_that_cannot_be_replaced_is_bypassed(store_warnings, tmp_path, ds, counted,
                                                             monkeypatch):
    root = tmp_path / "store"
    first = extract_features("hog", ds, {}, FeatureStore(root), shard_size=64)
    target = _damage(root, ds, "entry-is-a-file")
    _deny_writes(monkeypatch, root, errno.EACCES)
    for _ in range(2):
        counted.clear()
        with store_warnings() as said:
            got = extract_features("hog", ds, {}, FeatureStore(root), shard_size=64)
        assert said[0] == f"featbench store: {target} is not a folder; replacing it"
        assert len(said) == 2 and "is not writable (Permission denied" in said[1]
        assert sum(counted) >= 200  # the train split, in memory; test is still stored
        np.testing.assert_array_equal(got.train, first.train)
        np.testing.assert_array_equal(got.test, first.test)
        assert target.read_text() == "junk"


def test_unreadable_shard_is_computed_in_memory(store_warnings, tmp_path, ds, counted, monkeypatch):
    """A shard that cannot be read (EIO, a permission) is neither used nor removed."""
    root = tmp_path / "store"
    first = extract_features("hog", ds, {}, FeatureStore(root), shard_size=64)
    npy = next(root.rglob("shard-000002.npy"))
    original = np.load

    def load(file, *args, **kwargs):
        if Path(file) == npy:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(file))
        return original(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", load)
    counted.clear()
    with store_warnings() as said:
        got = extract_features("hog", ds, {}, FeatureStore(root), shard_size=64)
    assert said == [f"feature store {root} cannot read {npy} (Input/output error): features "
                    f"are computed but not stored"]
    assert npy.exists()
    np.testing.assert_array_equal(got.train, first.train)
    np.testing.assert_array_equal(got.test, first.test)
