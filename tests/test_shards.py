"""Shards as the unit of work: ``extract --shard I/N`` and ``--fit-only``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featbench import load_dataset, provenance
from featbench.cli import main
from featbench.extraction import extract_features, shard_indices
from featbench.features import get_extractor
from featbench.params import parse_shard
from featbench.splits import tuning_split
from featbench.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]
BOVW = {"bovw": {"n_words": 8, "step": 8, "max_descriptors": 500}}


@pytest.fixture
def ds():
    return load_dataset("digits").subset(300, 100, seed=0)


@pytest.mark.parametrize("n_shards", [0, 1, 2, 7, 10, 23])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 8])
def test_shards_of_n_workers_are_disjoint_and_cover(n_shards, n):
    parts = [shard_indices(n_shards, (i, n)) for i in range(1, n + 1)]
    flat = [j for part in parts for j in part]
    assert sorted(flat) == list(range(n_shards))  # covered ...
    assert len(flat) == len(set(flat))  # ... exactly once
    for i, part in enumerate(parts, start=1):
        assert all(j % n == i - 1 for j in part)
    assert shard_indices(n_shards, None) is None


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "3", "1/2/3", ""])
def test_bad_shard_option_is_refused(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)
    res = CliRunner().invoke(main, ["extract", "-q", "--shard", text],
                             catch_exceptions=False)
    assert res.exit_code == 2 and "--shard" in res.output


def test_shard_runs_fill_the_store_once(tmp_path, ds, counted):
    st = FeatureStore(tmp_path / "a")
    n = len(ds.train) + len(ds.test)
    for i in (1, 2, 3):
        res = extract_features("hog", ds, {}, st, shard_size=64, shard=(i, 3))
        assert res.splits == {}  # a shard run never loads (the split is not complete yet)
        train = res.parts[0]["shards"]["train"]
        assert train["computed"] == len(shard_indices(5, (i, 3)))  # 300 images: 5 shards
    # every image computed by exactly one of the three runs (each run also sets up the
    # extractor on one probe image: see extraction.prepare)
    assert sum(counted) == n + 3 and counted.count(1) == 3
    counted.clear()
    whole = extract_features("hog", ds, {}, st, shard_size=64)
    assert counted == [] and whole.cached
    ref = get_extractor("hog").fit(ds.X_train)
    np.testing.assert_allclose(whole.train, ref.transform(ds.X_train), atol=1e-6, rtol=0)
    np.testing.assert_allclose(whole.test, ref.transform(ds.X_test), atol=1e-6, rtol=0)


def test_shard_run_with_other_parameters_or_code_reuses_nothing(tmp_path, ds, counted,
                                                                 monkeypatch):
    st = FeatureStore(tmp_path)
    extract_features("hog", ds, {}, st, shard_size=64, shard=(1, 2))
    first = sum(counted)
    # train shards 0, 2, 4 (the last one 44 images), test shard 0, and the probe image
    assert first == 64 + 64 + 44 + 64 + 1
    counted.clear()
    other = extract_features("hog", ds, {"hog": {"orientations": 6}}, st, shard_size=64,
                             shard=(1, 2))
    assert sum(counted) == first and other.parts[0]["shards"]["train"]["reused"] == 0
    counted.clear()
    monkeypatch.setattr(provenance, "__version__", "99.0")  # another featbench version
    again = extract_features("hog", ds, {}, st, shard_size=64, shard=(1, 2))
    assert sum(counted) == first and again.parts[0]["shards"]["train"]["reused"] == 0
    entries = list((tmp_path / "features").iterdir())
    assert len(entries) == 3 * 2  # three keys, two splits: nothing mixed into one folder


def test_codebook_fitted_once_and_shared_by_every_shard(tmp_path, ds, bovw_fits):
    fits = bovw_fits
    st = FeatureStore(tmp_path / "shared")
    fitted = extract_features("bovw", ds, BOVW, st, shard_size=64, fit_only=True)
    assert fits == [len(tuning_split(ds, 0).fit)] and fitted.parts[0]["codebook"]
    assert not list((tmp_path / "shared" / "features").glob("*"))  # no features yet
    out, errors = [], []

    def worker(i):
        try:
            out.append(extract_features("bovw", ds, BOVW, st, shard_size=64, shard=(i, 2)))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and fits == [len(tuning_split(ds, 0).fit)]  # no shard refitted
    assert {r.parts[0]["codebook"] for r in out} == {fitted.parts[0]["codebook"]}
    assert len(list((tmp_path / "shared" / "codebooks").glob("*.npz"))) == 1
    assert len(list((tmp_path / "shared" / "features").iterdir())) == 2  # train, test
    whole = extract_features("bovw", ds, BOVW, st, shard_size=64)
    assert whole.cached and fits == [len(tuning_split(ds, 0).fit)]
    fresh = extract_features("bovw", ds, BOVW, FeatureStore(tmp_path / "fresh"),
                             shard_size=64)
    np.testing.assert_array_equal(whole.train, fresh.train)
    np.testing.assert_array_equal(whole.test, fresh.test)


def test_two_shard_processes_together_equal_one_process(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "FEATBENCH_CACHE": str(tmp_path / "unused")}
    cmd = [sys.executable, "-m", "featbench", "extract", "-q", "-d", "digits", "-f",
           "hog+color-hist", "--shard-size", "100", "--cache-dir", str(cache), "-j", "1"]
    procs = [subprocess.Popen([*cmd, "--shard", f"{i}/2"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert any("still missing" in o for o in outputs) or all("all stored" in o
                                                              for o in outputs)
    # every shard is there (1347 train + 450 test images: 14 + 5 shards of 100): a plain
    # extract computes nothing
    res = CliRunner().invoke(main, ["extract", "-q", "-d", "digits", "-f", "hog+color-hist",
                                    "--shard-size", "100", "--cache-dir", str(cache)],
                             catch_exceptions=False)
    assert res.exit_code == 0
    assert "hog: 0 of 19 shard(s) computed, 19 already stored" in res.output
    assert "color-hist: 0 of 19 shard(s) computed, 19 already stored" in res.output
    ds = load_dataset("digits")
    got = extract_features("hog+color-hist", ds, {}, FeatureStore(cache / "store"),
                           shard_size=100)
    assert got.cached
    one = extract_features("hog+color-hist", ds, {}, FeatureStore(tmp_path / "one"),
                           shard_size=100, n_workers=1)
    np.testing.assert_array_equal(got.train, one.train)
    np.testing.assert_array_equal(got.test, one.test)


def test_extract_cli_shard_and_fit_only_lines(tmp_path):
    cache = str(tmp_path / "c")
    base = ["extract", "-q", "-d", "digits", "--shard-size", "200", "--cache-dir", cache]
    run = CliRunner().invoke
    res = run(main, [*base, "-f", "hog", "--shard", "1/3"], catch_exceptions=False)
    assert res.exit_code == 0
    # digits: 1347 train (7 shards: 0, 3, 6 are worker 1's), 450 test (3 shards: 0)
    assert "hog [shard 1/3]: 4 shard(s) computed of 10; 6 still missing" in res.output
    res = run(main, [*base, "-f", "hog", "--shard", "2/3"], catch_exceptions=False)
    assert "hog [shard 2/3]: 3 shard(s) computed of 10; 3 still missing" in res.output
    res = run(main, [*base, "-f", "hog", "--shard", "3/3"], catch_exceptions=False)
    assert "hog [shard 3/3]: 3 shard(s) computed of 10; all stored" in res.output
    res = run(main, [*base, "-f", "hog", "--fit-only"], catch_exceptions=False)
    assert res.exit_code == 0 and "hog: nothing to fit" in res.output
    res = run(main, [*base, "-f", "bovw", "-p", "bovw.n_words=8", "--fit-only"],
              catch_exceptions=False)
    assert res.exit_code == 0 and "bovw: codebook " in res.output
    assert len(list((tmp_path / "c" / "store" / "codebooks").glob("*.npz"))) == 1
    res = run(main, [*base, "-f", "bovw", "--fit-only", "--shard", "1/2"],
              catch_exceptions=False)
    assert res.exit_code == 2 and "--fit-only" in res.output
    res = run(main, [*base, "--ray-address", "auto"], catch_exceptions=False)
    assert res.exit_code == 2 and "--ray-address" in res.output and "--engine ray" in res.output
