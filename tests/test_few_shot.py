"""``--shots K``: K training images per class, outside the validation split, per seed.

References: counts and overlaps computed here from the record's own rows, and each
draw's test accuracy recomputed by refitting the chosen ridge classifier by hand on
exactly those rows (ridge is closed form: the same numbers to the last bit).
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from featbench.classifiers import get_classifier
from featbench.cli import main
from featbench.datasets import load_dataset
from featbench.errors import DataError, ParameterError
from featbench.extraction import extract_features
from featbench.few_shot import sample_shots
from featbench.runner import fit_data, run_benchmark
from featbench.splits import tuning_split
from featbench.store import FeatureStore


def test_sampling_counts_disjointness_and_seeds():
    y = np.repeat(np.arange(4), 30)
    val = np.zeros(120, bool)
    val[::7] = True
    pool = np.flatnonzero(~val)
    rows = sample_shots(y, pool, 5, seed=3)
    assert np.bincount(y[rows]).tolist() == [5, 5, 5, 5]
    assert not val[rows].any() and len(set(rows)) == 20
    np.testing.assert_array_equal(rows, sample_shots(y, pool, 5, seed=3))
    assert not np.array_equal(rows, sample_shots(y, pool, 5, seed=4))
    with pytest.raises(DataError, match="--shots 40: class 0 has 25"):
        sample_shots(y, pool, 40, seed=0)


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits").subset(400, 100, seed=0)


def test_each_draw_is_the_chosen_classifier_fitted_on_its_k_images(ds, tmp_path):
    recs = run_benchmark(ds, ["hog"], ["ridge"], seed=2, shots=[3, 7], n_shot_seeds=2,
                         store=FeatureStore(tmp_path / "s"), results_dir=tmp_path / "res")
    feats = extract_features("hog", ds, {}, FeatureStore(tmp_path / "s"), seed=2)
    X, y, val_mask, X_test, y_test, _ = fit_data(ds, feats, tuning_split(ds, 2))
    assert [r["few_shot"]["shots"] for r in recs] == [3, 7]
    for rec in recs:
        fs = rec["few_shot"]
        assert fs["seeds"] == [2, 3]
        accs = []
        for draw in fs["draws"]:
            rows = np.asarray(draw["rows"])
            assert np.bincount(y[rows], minlength=10).tolist() == [fs["shots"]] * 10
            assert not val_mask[rows].any()
            pipe = get_classifier("ridge", **draw["chosen"]).fit(X[rows], y[rows])
            acc = np.mean(pipe.predict(X_test) == y_test)
            assert draw["test_acc"] == pytest.approx(acc, abs=1e-12)
            accs.append(acc)
        assert rec["test_acc"] == pytest.approx(np.mean(accs), abs=1e-12)
        assert fs["test_acc_std"] == pytest.approx(np.std(accs), abs=1e-12)
        assert np.sum(rec["confusion"]) == 2 * len(y_test)
        assert rec["dataset"]["n_train_fit"] == 10 * fs["shots"]
    # the two draws of a K differ; a rerun reuses both records (K is in the key)
    assert recs[0]["few_shot"]["draws"][0]["rows"] != recs[0]["few_shot"]["draws"][1]["rows"]
    again = run_benchmark(ds, ["hog"], ["ridge"], seed=2, shots=[3, 7], n_shot_seeds=2,
                          store=FeatureStore(tmp_path / "s"), results_dir=tmp_path / "res")
    assert [r["run_id"] for r in again] == [r["run_id"] for r in recs]
    assert recs[0]["pair_key"] != recs[1]["pair_key"]


def test_bad_shots_fail_before_any_work(ds, tmp_path):
    with pytest.raises(DataError, match="--shots 100: class"):
        run_benchmark(ds, ["hog"], ["ridge"], shots=[100], results_dir=None)
    with pytest.raises(ParameterError, match="own-head"):
        run_benchmark(ds, ["convnet:convnetjs"], ["own-head"], shots=[1], results_dir=None)
    result = CliRunner().invoke(main, ["run", "-d", "digits", "-f", "hog", "--shots", "0",
                                       "--results-dir", str(tmp_path)])
    assert result.exit_code != 0 and "--shots" in result.output
    assert not (tmp_path / "runs").exists()


def test_records_name_each_draws_images_and_the_protocol_keys_the_pair(tmp_path):
    """Each draw names its images (paths in the dataset folder, of the drawn row's class,
    never of val/); the few-shot pair's key differs from the whole-split probe's, and the
    table's protocol column tells them apart."""
    from PIL import Image

    from featbench.results import make_table

    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        for c in ("ant", "bee", "cat"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                    root / split / c / f"{c}{i}.png")
    photos = load_dataset(f"folder:{root}")
    store = FeatureStore(tmp_path / "s")
    shot, = run_benchmark(photos, ["raw"], ["ridge"], shots=[2], n_shot_seeds=2, store=store,
                          results_dir=tmp_path / "res")
    probe, = run_benchmark(photos, ["raw"], ["ridge"], store=store,
                           results_dir=tmp_path / "res")
    assert shot["pair_key"] != probe["pair_key"]
    feats = extract_features("raw", photos, {}, store, seed=0)
    _, y, _, _, _, _ = fit_data(photos, feats, tuning_split(photos, 0))
    classes = list(photos.classes)
    for draw in shot["few_shot"]["draws"]:
        assert len(draw["images"]) == 6
        for row, name in zip(draw["rows"], draw["images"], strict=True):
            path = root / name  # relative to the dataset's folder
            assert path.is_file() and path.parent.name == classes[y[row]]
            assert path.parent.parent == root / "train"
    table = make_table([probe, shot])
    assert table["protocol"].fillna("").tolist() == ["", "few-shot K=2 (2 seeds)"]
