"""The command line, through click's CliRunner: run, list, table and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from featbench.cli import main
from featbench.results import COLUMNS


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def _write_folder(root, n=12, classes=("a", "b"), size=16):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
                img[..., k] += 150  # class a is red, class b green
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def test_run_digits_writes_records_and_csv(tmp_path):
    out = tmp_path / "t.csv"
    res = invoke("run", "-f", "hog", "-f", "color-hist", "-c", "ridge", "--results-dir",
                 tmp_path / "results", "-o", out, "-q", "--train-size", "600",
                 "--test-size", "200", "--seed", "3")
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS
    assert list(df["features"]) == ["hog", "color-hist"]
    hog_row = df.iloc[0]
    assert hog_row["feature_dim"] == 324 and hog_row["n_test"] == 200
    assert hog_row["n_train"] + hog_row["n_val"] == 600
    assert hog_row["test_acc"] > 0.8  # HOG separates digits well
    assert hog_row["seed"] == 3
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    assert len(records) == 2
    rec = next(r for r in records if r["features"]["spec"] == "hog")
    assert rec["seed"] == 3 and rec["dataset"]["fingerprint"]
    assert rec["features"]["params"]["hog"]["block_norm"] == "L2-Hys"
    assert rec["classifier"]["grid"]["alpha"] and "featbench" in rec["versions"]
    # the table command rebuilds the same table from the records
    out2 = tmp_path / "t2.csv"
    assert invoke("table", tmp_path / "results" / "runs", "-o", out2).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(out2), df)


def test_run_params_and_folder_dataset(tmp_path):
    root = _write_folder(tmp_path / "data")
    out = tmp_path / "t.md"
    res = invoke("run", "-d", f"folder:{root}", "-f", "hog+color-hist", "-c", "linear-svm",
                 "-p", "hog.block_norm=none", "-p", "linear-svm.C=0.1", "-q", "--image-size", 16,
                 "--results-dir", tmp_path / "r", "-o", out)
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "r" / "runs").glob("*.json")).read_text())
    assert rec["feature_dim"] == 2 * 2 * 9 + 10
    assert rec["classifier"]["chosen"] == {"C": 0.1}
    assert rec["test_acc"] == 1.0  # red vs green: the hue histogram separates them
    assert "| hog+color-hist | hog.block_norm=None" in out.read_text()


def test_list():
    res = invoke("list")
    assert res.exit_code == 0
    for name in ("digits", "cifar10", "folder", "hog", "color-hist", "raw", "linear-svm",
                 "logreg", "ridge", "mlp"):
        assert f"  {name} " in res.output
    assert "hog" not in invoke("list", "classifiers").output
    assert "cnn:<model>" in res.output and "efficientnet-lite0" in res.output
    assert "resnet50" in res.output  # torchvision's models are listed
    studies = invoke("list", "studies").output
    assert studies.startswith("studies:") and "  cifar10 " in studies


def assert_one_line_error(res, message, code=1):
    """A click error, not a crash (``invoke`` does not catch exceptions, so an uncaught
    one fails the test before this): exit ``code`` and ``Error: <message>`` as the last
    line, the only line for exit 1 (2 is click's usage error, after the usage lines)."""
    assert isinstance(res.exception, SystemExit) and res.exit_code == code, res.output
    lines = res.output.splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], res.output
    if code == 1:
        assert len(lines) == 1, res.output


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["-f", "hogg"], "unknown feature 'hogg'. Did you mean hog?", 1),
        (["-c", "svm"], "Did you mean linear-svm? Valid classifiers: knn, linear-svm, logreg, "
                        "mlp, own-head, ridge.", 1),
        (["-p", "hog.nope=1"], "feature 'hog' has no parameter 'nope'", 1),
        (["-p", "hog"], "expected NAME.PARAM=VALUE", 1),
        (["-p", "raw.size=8"], "which this run does not use", 1),
        (["-d", "cifar10", "--data-dir", "/nonexistent/x"], "CIFAR-10 not found; looked in", 1),
        (["-d", "folder:/nonexistent/x"], "data folder /nonexistent/x does not exist", 1),
        (["-d", "mnist"], "unknown dataset 'mnist'", 1),
        (["-o", "t.xlsx"], "Invalid value for --output: use a .csv, .md or .json file name", 2),
    ],
)
def test_bad_input_one_line_errors(tmp_path, args, message, code):
    res = invoke("run", "-q", "--results-dir", tmp_path, *args)
    assert_one_line_error(res, message, code)


def test_bad_image_folders(tmp_path):
    root = _write_folder(tmp_path / "corrupt")
    (root / "train" / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    res = invoke("run", "-q", "-d", f"folder:{root}", "--results-dir", tmp_path)
    assert res.exit_code == 1 and "cannot read image" in res.output and "bad.jpg" in res.output

    root = _write_folder(tmp_path / "empty")
    (root / "train" / "c").mkdir()
    res = invoke("run", "-q", "-d", f"folder:{root}", "--results-dir", tmp_path)
    assert res.exit_code == 1
    assert f"class folder {root / 'train' / 'c'} has no image files" in res.output

    root = _write_folder(tmp_path / "missing", classes=("a", "b"))
    extra = root / "test" / "z"
    extra.mkdir()
    Image.new("RGB", (16, 16)).save(extra / "0.png")
    res = invoke("run", "-q", "-d", f"folder:{root}", "--results-dir", tmp_path)
    assert res.exit_code == 1 and "test classes missing from train: z" in res.output


def test_table_errors(tmp_path):
    res = invoke("table", tmp_path / "nothing")
    assert res.exit_code == 1 and "no run records at" in res.output


def test_python_m_featbench():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "featbench", "--version"], capture_output=True,
                         text=True, check=True)
    from featbench import __version__

    assert out.stdout.strip() == f"featbench, version {__version__}"


def test_interrupt_keeps_finished_pairs(tmp_path, monkeypatch):
    from featbench import runner

    original = runner.run_pair
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "run_pair", interrupted)
    res = invoke("run", "-q", "-c", "ridge,logreg", "--train-size", "300", "--test-size", "100",
                 "--results-dir", tmp_path)
    assert res.exit_code == 130
    assert "interrupted: 1 finished pair(s) kept" in res.output
    records = list((tmp_path / "runs").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["classifier"]["name"] == "ridge"
    assert not list((tmp_path / "runs").glob(".*"))  # no partial file left behind


def test_parameter_values_that_are_not_grids(tmp_path):
    res = invoke("run", "-q", "-f", "hog", "-c", "mlp", "--train-size", "300", "--test-size",
                 "100", "-p", "hog.pixels_per_cell=16", "-p", "mlp.hidden_layer_sizes=20,10",
                 "-p", "mlp.random_state=5", "-p", "mlp.alpha=0.01", "-p", "mlp.max_iter=50",
                 "--results-dir", tmp_path)
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert rec["classifier"]["params"]["hidden_layer_sizes"] == [20, 10]
    assert rec["classifier"]["params"]["random_state"] == 5
    assert rec["classifier"]["grid"] == {"alpha": [0.01]}
    assert rec["feature_dim"] == 36  # 2 x 2 cells of 16 px: one block of 4 cells x 9 bins
    res = invoke("run", "-q", "--val-size", "1.5", "--results-dir", tmp_path)
    assert res.exit_code == 2 and "--val-size" in res.output
