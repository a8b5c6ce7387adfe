"""``featbench show``: figures from a tiny dataset, checked against brute force and the
fitted extractors' own arrays."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import cdist

from featbench.datasets import load_dataset
from featbench.end_to_end import fitted_extractor
from featbench.extraction import extract_features
from featbench.show import learned_filters, render_show, seeded_indices
from featbench.splits import tuning_split
from featbench.store import FeatureStore

PARAMS = {"kmeans-patches": {"n_centroids": 12, "n_patches": 2000},
          "convnet:convnetjs": {"size": 16, "widths": (6, 8), "epochs": 1, "device": "cpu"}}


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    ds = load_dataset("digits").subset(240, 60, seed=0)
    tmp = tmp_path_factory.mktemp("show")
    store = FeatureStore(tmp / "store")
    files = render_show(ds, ["hog", "filters", "neighbors"],
                        ["hog", "kmeans-patches", "convnet:convnetjs"], PARAMS, store,
                        tmp / "out", seed=4, echo=lambda m: None)
    return ds, store, tmp / "out", files


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_every_figure_is_an_image(shown):
    _, _, out, files = shown
    names = sorted(p.name for p in files)
    assert names == sorted(["hog.png", "filters-kmeans-patches.png",
                            "filters-kmeans-patches.csv", "filters-convnet-convnetjs.png",
                            "filters-convnet-convnetjs.csv", "neighbors.png", "neighbors.csv"])
    for p in files:
        if p.suffix == ".png":
            with Image.open(p) as im:
                assert im.size[0] > 100 and im.size[1] > 100


def test_neighbors_are_a_brute_force_search(shown):
    ds, store, out, _ = shown
    rows = _rows(out / "neighbors.csv")
    queries = seeded_indices(len(ds.test), 6, 4)
    for spec in ("hog", "kmeans-patches"):
        feats = extract_features(spec, ds, PARAMS, store, seed=4, split=tuning_split(ds, 4))
        d = cdist(feats.test[queries].astype(np.float64), feats.train.astype(np.float64))
        expected = np.argsort(d, axis=1, kind="stable")[:, :5]
        got = np.zeros((6, 5), int)
        for r in rows:
            if r["features"] == spec:
                got[list(queries).index(int(r["test_image"])), int(r["rank"])] = \
                    int(r["train_image"])
        np.testing.assert_array_equal(got, expected)


def test_filters_are_the_fitted_arrays(shown):
    ds, store, out, _ = shown
    split = tuning_split(ds, 4)
    km = fitted_extractor("kmeans-patches", ds, PARAMS, store, seed=4, split=split,
                          n_workers=None).estimator
    # by hand: x = z W^-1 + mean, per filter stretched to [0, 1], channel-major patches
    pix = np.linalg.solve(km.whiten_.T, km.centroids_.T).T + km.mean_
    pix = pix.reshape(12, 3, 6, 6).transpose(0, 2, 3, 1)
    lo, hi = pix.min(axis=(1, 2, 3), keepdims=True), pix.max(axis=(1, 2, 3), keepdims=True)
    csv_values = np.array([[float(v) for k, v in r.items() if k != "filter"]
                           for r in _rows(out / "filters-kmeans-patches.csv")])
    np.testing.assert_allclose(csv_values, ((pix - lo) / (hi - lo)).reshape(12, -1),
                               atol=2e-6)
    net = fitted_extractor("convnet:convnetjs", ds, PARAMS, store, seed=4,
                           split=split, n_workers=None).estimator
    w = np.asarray(net.weights_["body.0.weight"])  # (6, 3, 5, 5): the first convolution
    f = learned_filters(net)
    assert f.shape == (6, 5, 5, 3)
    for k in range(6):
        filt = w[k].transpose(1, 2, 0)
        np.testing.assert_allclose(f[k], (filt - filt.min()) / (filt.max() - filt.min()),
                                   atol=1e-6)


def test_hand_crafted_extractors_learn_no_filters():
    from featbench.features import build_extractor

    with pytest.raises(ValueError, match="learns no filters"):
        learned_filters(build_extractor("hog"))


def test_map_is_the_pca_of_the_standardized_features(tmp_path):
    """The 2-D coordinates equal the first two principal components computed here by
    NumPy's SVD (up to each component's sign)."""
    ds = load_dataset("digits").subset(200, 150, seed=0)
    store = FeatureStore(tmp_path / "store")
    render_show(ds, ["map"], ["hog"], {}, store, tmp_path / "out", seed=1,
                echo=lambda m: None)
    rows = _rows(tmp_path / "out" / "map.csv")
    sample = seeded_indices(len(ds.test), 2000, 1)
    assert [int(r["test_image"]) for r in rows] == sample.tolist()
    assert [int(r["label"]) for r in rows] == np.asarray(ds.test.labels)[sample].tolist()
    F = extract_features("hog", ds, {}, store, seed=1).test[sample].astype(np.float64)
    Z = (F - F.mean(0)) / np.where(F.std(0) > 0, F.std(0), 1.0)
    U, S, _ = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
    expected = U[:, :2] * S[:2]
    got = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    for k in range(2):
        sign = np.sign(expected[:, k] @ got[:, k])
        np.testing.assert_allclose(got[:, k], sign * expected[:, k], atol=2e-5)


def test_a_map_of_too_few_images_is_skipped_with_a_note(tmp_path):
    from dataclasses import replace

    ds = load_dataset("digits").subset(100, 20, seed=0)
    tiny = replace(ds, test=ds.test.take(np.arange(3)))
    notes = []
    files = render_show(tiny, ["map"], ["hog"], {}, FeatureStore(tmp_path / "s"),
                        tmp_path / "out", echo=notes.append)
    assert files == [] and "needs at least 4" in notes[0]


def test_color_histograms_are_the_extractors_numbers(tmp_path):
    """The CSV holds each shown image's histogram as np.histogram bins its hues (the
    default color-hist: 10 hue bins over [0, 1], fractions of the pixels)."""
    from skimage.color import rgb2hsv

    ds = load_dataset("digits").subset(100, 30, seed=0)
    render_show(ds, ["color-hist"], ["hog"], {}, FeatureStore(tmp_path / "s"),
                tmp_path / "out", seed=2, echo=lambda m: None)
    rows = _rows(tmp_path / "out" / "color-hist.csv")
    assert [int(r["test_image"]) for r in rows] == seeded_indices(30, 6, 2).tolist()
    for r in rows:
        im = ds.test.read(int(r["test_image"]))
        im = np.repeat(im[..., None], 3, axis=-1) if im.ndim == 2 else im
        hue = rgb2hsv(im)[..., 0].ravel()
        expected = np.histogram(hue, bins=10, range=(0, 1))[0] / hue.size
        got = [float(r[f"bin{i}"]) for i in range(10)]
        np.testing.assert_allclose(got, expected, atol=2e-6)
    with Image.open(tmp_path / "out" / "color-hist.png") as im:
        assert im.size[0] > 300


def test_confused_pairs_are_ranked_as_a_brute_force_sort():
    from featbench.show import confused_pairs

    rng = np.random.default_rng(3)
    m = rng.integers(0, 4, (6, 6))
    m[1, 4], m[4, 1], m[0, 5], m[5, 0] = 9, 0, 4, 5  # two pairs tied at 9
    brute = sorted(((a, b, m[a, b], m[b, a]) for a in range(6) for b in range(a + 1, 6)),
                   key=lambda t: (-(t[2] + t[3]), t[0], t[1]))
    assert confused_pairs(m, 4) == [tuple(int(v) for v in t) for t in brute[:4]]
    assert confused_pairs(np.diag([5, 5, 5])) == []  # nothing confused: no pair


def test_confusion_is_the_run_records_and_its_examples_are_mistakes(tmp_path):
    """The matrix equals the one `featbench run` records for the same pair; each example
    image listed is a test image of its true class; counts agree with the matrix."""
    from featbench.runner import run_benchmark

    ds = load_dataset("digits").subset(300, 120, seed=0)
    store = FeatureStore(tmp_path / "store")
    files = render_show(ds, ["confusion"], ["raw"], {}, store, tmp_path / "out", seed=2,
                        echo=lambda m: None, classifier="logreg")
    assert sorted(p.name for p in files) == ["confused-pairs-raw-logreg.csv",
                                             "confusion-raw-logreg.csv",
                                             "confusion-raw-logreg.png"]
    rec, = run_benchmark(ds, ["raw"], ["logreg"], seed=2, store=store,
                         results_dir=tmp_path / "runs")
    shown_m = [[int(v) for k, v in row.items() if k != "true"]
               for row in _rows(tmp_path / "out" / "confusion-raw-logreg.csv")]
    assert shown_m == rec["confusion"]
    names = [str(c) for c in ds.classes]
    y_test = np.asarray(ds.test.labels)
    pairs = _rows(tmp_path / "out" / "confused-pairs-raw-logreg.csv")
    assert pairs, "digits with raw pixels confuse some classes"
    for row in pairs:
        t, p = names.index(row["true"]), names.index(row["predicted"])
        assert int(row["count"]) == rec["confusion"][t][p]
        idx = [int(i) for i in row["test_images"].split()]
        assert len(idx) == min(4, rec["confusion"][t][p])
        assert all(y_test[i] == t for i in idx)


def test_word_patches_are_the_nearest_patches_by_brute_force(tmp_path):
    """Each shown word is the training patch whose descriptor is nearest to it: the crop
    described alone gives the recorded distance, and no patch of any image is nearer."""
    from featbench.features.bovw import BagOfVisualWords
    from featbench.features.local import dense_descriptors
    from featbench.show import word_patches

    ds = load_dataset("digits").subset(60, 10, seed=0)
    images = ds.X_train[:20]
    est = BagOfVisualWords(n_words=12, descriptor="patch", step=4, patch_sizes=(8, 12),
                           random_state=0).fit(images)
    rows, patches = word_patches(est, images, n_words=5)
    assert len(rows) == len(patches) == 5
    # the words most descriptors fall in, most used first (a slow count)
    C = est.codebook_.astype(np.float64)
    counts = np.zeros(len(C), int)
    for im in images:
        for d in dense_descriptors(im[None], "patch", 4, (8, 12))[0][0]:
            counts[np.argmin(((C - d) ** 2).sum(1))] += 1
    assert [int(r[0]) for r in rows] == list(np.argsort(-counts, kind="stable")[:5])
    for (word, i, x0, y0, size, d2), patch in zip(rows, patches, strict=True):
        assert patch.shape == (size, size, 3)
        assert np.array_equal(patch, images[i, y0:y0 + size, x0:x0 + size])
        alone = dense_descriptors(patch[None], "patch", 4, (size,))[0][0, 0]
        assert ((alone - C[word]) ** 2).sum() == pytest.approx(d2, rel=1e-4, abs=1e-4)
        best = min(((d - C[word]) ** 2).sum() for im in images
                   for d in dense_descriptors(im[None], "patch", 4, (8, 12))[0][0])
        assert d2 == pytest.approx(best, rel=1e-4, abs=1e-4)


def test_backbone_filters_are_its_stem_weights(tmp_path):
    """A state-dict file's first convolution, stretched per filter, is what the figure's
    CSV holds."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")

    torch.manual_seed(3)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "r18.pt"
    torch.save(sd, path)
    name = f"file:{path}"
    ds = load_dataset("digits").subset(30, 10, seed=0)
    files = render_show(ds, ["filters"], [name], {name: {"arch": "resnet18"}},
                        FeatureStore(tmp_path / "s"), tmp_path / "out", echo=lambda m: None)
    csv_file = next(p for p in files if p.suffix == ".csv")
    shown = np.array([[float(v) for v in r[1:]] for r in
                      list(csv.reader(open(csv_file)))[1:]])
    w = sd["conv1.weight"].numpy().transpose(0, 2, 3, 1)  # (64, 7, 7, 3)
    lo, hi = w.min(axis=(1, 2, 3), keepdims=True), w.max(axis=(1, 2, 3), keepdims=True)
    expect = ((w - lo) / (hi - lo)).reshape(64, -1)
    np.testing.assert_allclose(shown, expect, atol=1e-6)


def test_figure_files_of_names_with_slashes_stay_in_the_folder(tmp_path):
    """A feature named by a path (file:/..., hf:org/model) draws its confusion and
    filters into the output folder itself."""
    torch = pytest.importorskip("torch")
    from featbench.show import caption, file_slug

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())
    path = tmp_path / "sub dir" / "m.ts"
    path.parent.mkdir()
    torch.jit.script(net).save(str(path))
    name = f"file:{path}"
    ds = load_dataset("digits").subset(60, 30, seed=0)
    out = tmp_path / "out"
    files = render_show(ds, ["confusion", "filters"], [name], {name: {"size": 16}},
                        FeatureStore(tmp_path / "s"), out, echo=lambda m: None,
                        classifier="ridge")
    assert len(files) == 5 and all(p.parent == out and p.is_file() for p in files)
    assert file_slug("hog+color-hist") == "hog_color-hist"
    assert "/" not in file_slug("hf:org/model") and " " not in file_slug(name)
    assert caption("filters-cnn-efficientnet-lite0.png").startswith("First-layer (stem)")
    assert caption("filters-convnet-airbench.png").startswith("First-layer filters of the "
                                                             "ConvNet trained")
    assert caption("words-bovw.png").startswith("Visual words")
    assert caption("neighbors.png").startswith("Six test images")


def test_show_help_lists_every_figure():
    from click.testing import CliRunner

    from featbench.cli import main
    from featbench.show import FIGURES

    out = CliRunner().invoke(main, ["show", "--help"]).output
    usage = out.split("\n\n")[0].replace("\n", "").replace(" ", "")
    assert usage.endswith("[" + "|".join(FIGURES) + "]...")
    text = " ".join(out.split())
    assert all(f"({name}" in text for name in FIGURES)  # each one described


def test_a_filters_figure_shows_and_lists_the_first_filters(tmp_path, monkeypatch):
    import featbench.show as show

    monkeypatch.setattr(show, "MAX_FILTERS", 5)
    ds = load_dataset("digits").subset(240, 60, seed=0)
    store = FeatureStore(tmp_path / "store")
    render_show(ds, ["filters"], ["kmeans-patches"], PARAMS, store, tmp_path / "out",
                seed=4, echo=lambda m: None)
    km = fitted_extractor("kmeans-patches", ds, PARAMS, store, seed=4,
                          split=tuning_split(ds, 4), n_workers=None).estimator
    rows = _rows(tmp_path / "out" / "filters-kmeans-patches.csv")
    assert [int(r["filter"]) for r in rows] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([[float(v) for k, v in r.items() if k != "filter"] for r in rows],
                               learned_filters(km)[:5].reshape(5, -1), atol=2e-6)
