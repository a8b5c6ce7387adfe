"""The command line's error boundary, output checks, one table format, option checks
and ``describe``: exit codes and exact one-line messages, through click's CliRunner."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from featbench import cli
from featbench.cli import main

BASE = ["run", "-q", "-j", "1", "-c", "ridge"]
RUN = [*BASE, "-f", "hog"]
SMALL = ["--train-size", "200", "--test-size", "50"]


def invoke(*args):
    """Exceptions other than click's propagate: a traceback the CLI lets through fails
    the test with that exception."""
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def no_running(monkeypatch):
    """Load the dataset and stop before any extraction (for notes printed up front)."""
    import featbench.runner

    calls = []
    monkeypatch.setattr(featbench.runner, "run_benchmark",
                        lambda *args, **kwargs: calls.append(kwargs) or [])
    return calls


def _write_folder(root, n=4, classes=("a", "b"), size=16):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                    d / f"{i}.png")
    return root


# -- 1. the error boundary: only featbench's own errors become one line ---------------

@pytest.mark.parametrize("exc_type", [ValueError, TypeError, OSError])
def test_run_bug_keeps_its_traceback(tmp_path, monkeypatch, exc_type):
    import featbench.datasets

    def broken(*args, **kwargs):
        raise exc_type("a bug inside featbench")

    monkeypatch.setattr(featbench.datasets, "load_dataset", broken)
    with pytest.raises(exc_type, match="a bug inside featbench"):
        invoke(*RUN, "--results-dir", tmp_path)


def test_table_and_plot_bugs_keep_their_traceback(tmp_path, monkeypatch):
    import featbench.report
    import featbench.results

    record = tmp_path / "r.json"
    record.write_text(json.dumps({"features": {"spec": "hog"}, "classifier": {"name": "ridge"}}))

    def broken(*args, **kwargs):
        raise TypeError("a bug in make_table")

    monkeypatch.setattr(featbench.results, "make_table", broken)
    with pytest.raises(TypeError, match="a bug in make_table"):
        invoke("table", record)

    def broken_render(*args, **kwargs):
        raise ValueError("a bug in render")

    monkeypatch.setattr(featbench.report, "render", broken_render)
    with pytest.raises(ValueError, match="a bug in render"):
        invoke("plot", tmp_path)


def test_featbench_errors_stay_one_line(tmp_path):
    res = invoke(*BASE, "-f", "hogg", "--results-dir", tmp_path)
    assert res.exit_code == 1
    assert lines(res.output)[0].startswith("Error: unknown feature 'hogg'. Did you mean hog?")
    assert len(lines(res.output)) == 1


# -- 2. output paths are checked before any work ---------------------------------------

def test_output_under_proc_is_refused_up_front(tmp_path, no_loading):
    res = invoke(*RUN, "--results-dir", tmp_path, "-o", "/proc/x.csv")
    assert res.exit_code == 1
    assert lines(res.output) == [
        "Error: cannot write the table to /proc/x.csv: cannot create files in /proc "
        "(No such file or directory)"]


def test_output_under_a_file_is_refused_up_front(tmp_path, no_loading):
    (tmp_path / "somefile.txt").write_text("x")
    out = tmp_path / "somefile.txt" / "x.csv"
    res = invoke(*RUN, "--results-dir", tmp_path, "-o", out)
    assert res.exit_code == 1
    assert lines(res.output) == [
        f"Error: cannot write the table to {out}: {tmp_path / 'somefile.txt'} is a file, "
        f"not a folder"]


def test_unwritable_results_dir_is_refused_up_front(tmp_path, no_loading):
    res = invoke(*RUN, "--results-dir", "/proc/featbench-results")
    assert res.exit_code == 1
    assert lines(res.output) == [
        "Error: cannot write run records to /proc/featbench-results/runs: cannot create "
        "folder /proc/featbench-results/runs (No such file or directory)"]


def _can_create_a_file_in(folder) -> bool:
    """Whether this process can create a file in ``folder``: tried for real."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def _without_dac_override(*args) -> tuple[int, str]:
    """Exit code and stderr of ``featbench ARGS`` in a child process without the
    capabilities that let root write into read-only folders (util-linux's setpriv)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("this user can create files in read-only folders (root), and setpriv "
                    "is not there to run the command without that power")
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH",
                                                                             "")])}
    res = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner",
                          sys.executable, "-m", "featbench", *map(str, args)],
                         capture_output=True, text=True, env=env, timeout=120)
    if res.stderr.startswith("setpriv:"):
        pytest.skip(f"root can create files in read-only folders, and setpriv cannot drop "
                    f"that power here ({res.stderr.strip()})")
    return res.returncode, res.stderr


@pytest.mark.parametrize("how", ["chmod", "read-only location"])
def test_read_only_results_dir_is_refused_up_front(tmp_path, no_loading, how):
    """An existing runs/ folder that no file can be created in: chmod 555 (root, who
    ignores it, runs the command under setpriv without that power), or a link to a
    folder of /sys, where even root creates no file. Probed first, not assumed."""
    ro = tmp_path / "ro"
    ro.mkdir()
    runs = ro / "runs"
    if how == "chmod":
        runs.mkdir()
        runs.chmod(0o555)
    else:
        target = next((d for d in ("/sys/kernel", "/sys") if os.path.isdir(d)), None)
        if target is None:
            pytest.skip("no /sys folder on this system")
        runs.symlink_to(target, target_is_directory=True)
    try:
        if not _can_create_a_file_in(runs):
            res = invoke(*RUN, "--results-dir", ro)
            code, output = res.exit_code, res.output
        else:  # root: run the command without its power to ignore permissions
            code, output = _without_dac_override(*RUN, "--results-dir", ro)
    finally:
        if how == "chmod":
            runs.chmod(0o755)
    assert code == 1
    assert lines(output) == [
        f"Error: cannot write run records to {runs}: cannot create files in "
        f"{runs} (Permission denied)"]


def test_table_output_checked_before_reading_records(tmp_path):
    res = invoke("table", tmp_path / "no-records-here", "-o", "/proc/t.md")
    assert res.exit_code == 1
    assert lines(res.output) == [
        "Error: cannot write the table to /proc/t.md: cannot create files in /proc "
        "(No such file or directory)"]


def test_disk_full_at_the_end_still_prints_the_table(tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out = tmp_path / "t.csv"
    res = invoke(*RUN, *SMALL, "--results-dir", tmp_path / "r", "-o", out)
    assert res.exit_code == 1
    assert res.stdout.startswith("features")  # the table is printed first
    assert lines(res.stderr)[-1] == (
        f"Error: cannot write the table to {out}: No space left on device; the run records "
        f"are in {tmp_path / 'r' / 'runs'}")
    assert len(list((tmp_path / "r" / "runs").glob("*.json"))) == 1


def test_record_write_error_names_the_file(tmp_path):
    from featbench.errors import OutputError
    from featbench.results import write_json_atomic

    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "runs" / "a.json"
    with pytest.raises(OutputError, match=f"^cannot write {path}: "):
        write_json_atomic(path, {})


def test_table_of_a_record_that_is_not_utf8(tmp_path):
    bad = tmp_path / "runs" / "bad.json"
    bad.parent.mkdir()
    bad.write_bytes(b'{"features": "\xff\xfe"}')
    res = invoke("table", tmp_path / "runs")
    assert res.exit_code == 1
    assert lines(res.output) == [
        f"Error: cannot read run record {bad}: not UTF-8 text (byte 0xff at offset 14)"]


def test_an_unreadable_record_beside_good_ones_is_skipped_with_a_warning(tmp_path):
    """``table`` and ``plot`` go on without it, naming it in one line; ``plot`` also
    takes the records' folder itself (results/runs)."""
    runs = tmp_path / "res" / "runs"
    res = invoke("run", "-q", "-d", "digits", "-f", "color-hist", "-c", "ridge",
                 "--results-dir", tmp_path / "res", "--cache-dir", tmp_path / "cache")
    assert res.exit_code == 0, res.output
    assert f"1 record(s) in {runs}" in res.output
    bad = runs / "zz-bad.json"
    bad.write_text("{not json")
    with pytest.warns(UserWarning) as caught:
        res = invoke("table", runs)
    assert res.exit_code == 0, res.output
    warned = [str(w.message) for w in caught if str(bad) in str(w.message)]
    assert len(warned) == 1 and "not JSON" in warned[0] and "skipped" in warned[0]
    assert "color-hist" in res.output and "digits" in res.output
    with pytest.warns(UserWarning, match="zz-bad.json"):
        res = invoke("plot", runs)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "res" / "report.html").is_file()


def test_table_shows_the_newest_record_of_each_pair(tmp_path):
    args = ("run", "-q", "-d", "digits", "-f", "color-hist", "-c", "ridge", "--results-dir",
            tmp_path / "res", "--cache-dir", tmp_path / "cache")
    assert invoke(*args).exit_code == 0
    assert invoke(*args, "--rerun").exit_code == 0
    runs = tmp_path / "res" / "runs"
    assert len(list(runs.glob("*.json"))) == 2
    for extra, n in (((), 1), (("--all",), 2)):
        out = tmp_path / f"t{n}.csv"
        assert invoke("table", runs, "-o", out, *extra).exit_code == 0
        assert len(pd.read_csv(out)) == n


# -- 3. one table format ---------------------------------------------------------------

def test_format_table_integers_missing_accuracies_seconds():
    from featbench.results import format_table

    df = pd.DataFrame({"features": ["raw", "hog"], "feature_dim": [3072.0, np.nan],
                       "val_acc": [0.5, np.nan], "test_acc": [1.0, 0.98765],
                       "extract_s": [0.0811, 13.7658], "hyperparams": ["alpha=1.0", ""],
                       "error": ["", ""]})
    assert format_table(df, list(df.columns)).splitlines() == [
        "features      feature_dim    val_acc    test_acc    extract_s  hyperparams",
        "----------  -------------  ---------  ----------  -----------  -------------",
        "raw                  3072     0.5000      1.0000         0.08  alpha=1.0",
        "hog                     -          -      0.9877         13.8  -",
    ]


def test_markdown_table_has_the_same_cells(tmp_path):
    from featbench.results import write_table

    df = pd.DataFrame({"features": ["hog", "raw"], "feature_dim": [324.0, np.nan],
                       "test_acc": [0.5, np.nan], "fit_s": [12.345, 0.5]})
    assert write_table(df, tmp_path / "t.md").read_text().splitlines() == [
        "| features   |   feature_dim |   test_acc |   fit_s |",
        "|:-----------|--------------:|-----------:|--------:|",
        "| hog        |           324 |     0.5000 |    12.3 |",
        "| raw        |             - |          - |    0.50 |",
    ]


def test_run_and_table_print_the_same_table(tmp_path, monkeypatch):
    from featbench import runner

    # a quiet machine (a busy one adds the load column: test_threads_load.py)
    monkeypatch.setattr(runner, "load_average", lambda: [0.1, 0.1, 0.1])
    res = invoke(*RUN, *SMALL, "--results-dir", tmp_path)
    assert res.exit_code == 0, res.output
    shown = invoke("table", tmp_path / "runs")
    assert shown.exit_code == 0
    # the same table, with the dataset first (a folder of records may hold several)
    got = [ln.split() for ln in shown.stdout.splitlines()]
    assert [ln[1:] for ln in got] == [ln.split() for ln in res.stdout.splitlines()]
    assert [got[0][0], got[2][0]] == ["dataset", "digits"]
    header, _, row = res.stdout.splitlines()
    assert header.split() == ["features", "feature_params", "classifier", "feature_dim",
                              "val_acc", "test_acc", "test_mean_class_acc", "extract_s", "fit_s",
                              "hyperparams"]
    assert row.split()[:4] == ["hog", "-", "ridge", "324"]
    every = invoke("table", "--all-columns", tmp_path / "runs").stdout
    assert every.split()[:3] == ["dataset", "features", "feature_params"]
    assert "nan" not in every and "200.0" not in every


def test_reproduce_table_has_the_same_format(tmp_path, capsys):
    from featbench.report import STUDY_COLUMNS

    rows = [dict.fromkeys(STUDY_COLUMNS) for _ in range(2)]
    rows[0].update(row="HOG", classifier="linear-svm", feature_dim=324, val_acc=0.5,
                   test_acc=0.51234, reference="0.52", ref_metric="test", difference=-0.0077,
                   extract_s=1.234, fit_s=20.0)
    rows[1].update(row="CNN", classifier="logreg", feature_dim=512, test_acc=0.8)
    pd.DataFrame(rows, columns=STUDY_COLUMNS).to_csv(tmp_path / "table.csv", index=False)
    cli._echo_study_table(tmp_path / "table.csv")
    assert capsys.readouterr().out.splitlines() == [
        "row    classifier      val_acc    test_acc    reference  ref_metric      difference"
        "    extract_s    fit_s",
        "-----  ------------  ---------  ----------  -----------  ------------  ------------"
        "  -----------  -------",
        "HOG    linear-svm       0.5000      0.5123         0.52  test               -0.0077"
        "         1.23     20.0",
        "CNN    logreg                -      0.8000            -  -                        -"
        "            -        -",
    ]


# -- 4. option checks up front, each in its own words ----------------------------------

def test_negative_seed_is_a_usage_error(tmp_path, no_loading):
    res = invoke(*RUN, "--seed", "-1", "--results-dir", tmp_path)
    assert res.exit_code == 2
    assert lines(res.output)[-1] == (
        "Error: Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295.")


def test_train_size_below_the_number_of_classes(tmp_path):
    res = invoke(*RUN, "--train-size", "5", "--results-dir", tmp_path)
    assert res.exit_code == 1
    assert lines(res.output) == [
        "Error: --train-size 5: a stratified subset needs at least one image per class "
        "(10 classes)"]


@pytest.mark.parametrize("value", ["0", "-0.5", "2.5", "x", "1.0", "20.0", "1e3"])
def test_val_size_checked_when_parsing(tmp_path, no_loading, value):
    res = invoke(*RUN, "--val-size", value, "--results-dir", tmp_path)
    assert res.exit_code == 2
    assert lines(res.output)[-1] == (
        f"Error: Invalid value for '--val-size': must be a count (integer >= 1) or a "
        f"fraction in (0, 1); got {value}")


def test_val_size_count_and_fraction(tmp_path, no_running):
    assert invoke(*RUN, "--val-size", "20", "--results-dir", tmp_path).exit_code == 0
    assert invoke(*RUN, "--val-size", "0.2", "--results-dir", tmp_path).exit_code == 0
    assert [c["val_size"] for c in no_running] == [20, 0.2]
    assert isinstance(no_running[0]["val_size"], int)


def test_device_without_a_device_extractor_is_a_note(tmp_path, no_running):
    res = invoke(*RUN, "--device", "cuda", "--results-dir", tmp_path)
    assert res.exit_code == 0, res.output
    assert "--device: no extractor of this run uses a device; ignored" in lines(res.stderr)
    assert "device" not in no_running[0]["params"].get("hog", {})


def test_device_of_a_device_extractor_is_still_checked(tmp_path, no_loading):
    res = invoke(*BASE, "-f", "kmeans-patches", "--device", "bogus", "--results-dir", tmp_path)
    assert res.exit_code == 1
    assert lines(res.output)[0].startswith("Error: invalid device 'bogus'")


def test_image_size_ignored_when_every_extractor_is_a_cnn(tmp_path, no_running):
    cnn = ["-f", "cnn:resnet18", "-p", "cnn:resnet18.weights=none"]
    res = invoke(*BASE, *cnn, "--image-size", "16", "--results-dir", tmp_path)
    assert res.exit_code == 0, res.output
    assert lines(res.stderr)[-1] == (
        "--image-size: ignored; every extractor of this run (cnn:resnet18) sees its own "
        "input resolution")
    res = invoke(*RUN, *cnn, "--image-size", "16", "--results-dir", tmp_path)
    assert "--image-size" not in res.stderr


def test_test_fraction_ignored_with_a_test_split(tmp_path, no_running):
    root = _write_folder(tmp_path / "data")
    res = invoke(*RUN, "-d", f"folder:{root}", "--test-fraction", "0.5",
                 "--results-dir", tmp_path)
    assert res.exit_code == 0, res.output
    assert lines(res.stderr)[-1] == (
        f"--test-fraction: ignored; folder:{root} [train/ + test/] has its own test split")
    res = invoke(*RUN, "-d", f"folder:{root}", "--results-dir", tmp_path)
    assert "--test-fraction" not in res.stderr  # the default is not a choice of the user
    res = invoke(*RUN, "--test-fraction", "0.5", "--results-dir", tmp_path)
    assert "--test-fraction" not in res.stderr  # digits is split by it


# -- 5. describe and list --params -----------------------------------------------------

def test_describe_extractor_parameters_and_docs():
    from featbench.features import build_extractor

    res = invoke("describe", "hog")
    assert res.exit_code == 0
    out = lines(res.output)
    assert out[0] == "hog (feature, featbench.features.hog.HOG)"
    for key, value in build_extractor("hog").get_params().items():
        line = next(x for x in out if x.startswith(f"  {key}={cli._show(value)} "))
        assert len(line.split()) > 1  # the parameter's line of the docstring
    assert "  pixels_per_cell=8,8 " in res.output


def test_describe_classifier_with_grid():
    from featbench.classifiers import default_grid

    res = invoke("describe", "linear-svm")
    assert res.exit_code == 0
    assert lines(res.output)[0] == "linear-svm (classifier, featbench.classifiers.linear_svm." \
                                   "LinearSVM)"
    assert lines(res.output)[-1] == "  C: " + ", ".join(map(str, default_grid("linear-svm")["C"]))
    assert "  C: 1e-05, 0.0001," in res.output
    from featbench.classifiers import MAX_ITER

    assert f"  max_iter={MAX_ITER}" in res.output and "  random_state=0 " in res.output
    res = invoke("describe", "cnn:resnet18")
    assert res.exit_code == 0 and "  model=resnet18 " in res.output


def test_param_docs_numpydoc():
    class Thing:
        """A thing.

        Parameters
        ----------
        a, b : int, default=1
            Sides of the thing, e.g. 2. Second sentence.
        c : str
            The ``c`` (see :class:`~x.Y`).

            More about c.

        Attributes
        ----------
        d_ : int
            Not a parameter.
        """

    assert cli._param_docs(Thing) == {"a": "Sides of the thing, e.g. 2.",
                                      "b": "Sides of the thing, e.g. 2.",
                                      "c": "The c (see Y)."}


def test_describe_unknown_name():
    res = invoke("describe", "svm")
    assert res.exit_code == 1
    assert len(lines(res.output)) == 1
    assert res.output.startswith("Error: unknown feature or classifier 'svm'. Did you mean "
                                 "linear-svm? Valid features: ")
    res = invoke("describe", "cnn:resnet1")
    assert res.exit_code == 1 and "Did you mean cnn:resnet18" in res.output


def test_list_of_one_name_points_to_describe():
    res = invoke("list", "hog")
    assert res.exit_code == 2
    assert lines(res.output)[-1] == (
        "Error: Invalid value for '[datasets|features|classifiers|studies]': 'hog' is not "
        "one of 'datasets', 'features', 'classifiers', 'studies'. For its parameters: "
        "featbench describe hog")
    res = invoke("list", "hogx")
    assert res.exit_code == 2 and "describe" not in res.output


def test_list_features_params():
    from featbench.features import build_extractor

    res = invoke("list", "features", "--params")
    assert res.exit_code == 0
    out = res.output.splitlines()
    hog = out.index(next(x for x in out if x.startswith("  hog ")))
    params = sorted(build_extractor("hog").get_params().items())
    assert out[hog + 1].strip() == ", ".join(f"{k}={cli._show(v)}" for k, v in params)
    assert "block_norm=L2-Hys" in out[hog + 1] and "pixels_per_cell=8,8" in out[hog + 1]
    assert "block_norm" not in invoke("list", "features").output


# -- 6. Ctrl-C is quiet ------------------------------------------------------------------

def test_interrupted_extract_is_one_line(monkeypatch):
    import featbench.extraction

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(featbench.extraction, "extract_features", interrupted)
    res = invoke("extract", "-q", "-j", "1", "-f", "hog")
    assert res.exit_code == 130
    assert lines(res.stderr)[-1] == (
        "interrupted: finished shards are kept; run the same command to resume")


@pytest.fixture
def no_extraction(monkeypatch):
    """Fail the test if any extraction starts (the check must come before)."""
    import featbench.runner

    def extract(*args, **kwargs):
        raise AssertionError("extraction started before the check")

    monkeypatch.setattr(featbench.runner, "extract_features", extract)


@pytest.mark.parametrize("value, message", [
    ("5", "Error: --val-size 5 gives 5 validation image(s) for 10 classes: the validation "
          "split needs at least one image per class; pass --val-size 10 or more"),
    ("2000", "Error: --val-size 2000 (2000) leaves no training or no validation images (the "
             "training set has 1347); pass --val-size or a larger --train-size"),
    ("0.005", "Error: --val-size 0.005 gives 7 validation image(s) for 10 classes: the "
              "validation split needs at least one image per class; pass --val-size 10 or "
              "more"),
])
def test_val_size_refused_before_extraction(tmp_path, no_extraction, value, message):
    # digits: 1,347 training images of 10 classes
    res = invoke(*BASE, "-f", "raw", "--val-size", value, "--results-dir", tmp_path)
    assert res.exit_code == 1
    assert lines(res.output)[-1] == message
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_small_val_size_warns_before_extraction(tmp_path, monkeypatch):
    import featbench.runner

    def extract(*args, **kwargs):
        raise KeyboardInterrupt  # stop at the first extraction

    monkeypatch.setattr(featbench.runner, "extract_features", extract)
    with pytest.warns(UserWarning) as caught:
        res = CliRunner().invoke(main, [*BASE, "-f", "raw", "--val-size", "20",
                                        "--results-dir", str(tmp_path)])
    assert res.exit_code == 130  # the warning came before the first extraction
    assert [str(w.message) for w in caught] == [
        "--val-size 20 gives 20 validation images for 10 classes, fewer than 5 per class: "
        "the tuning choice rests on few images"]


@pytest.mark.parametrize("option", [["-f", ""], ["-f", " , "], ["-c", ""]])
def test_empty_feature_or_classifier_list_is_a_usage_error(tmp_path, no_loading, option):
    res = invoke("run", "-q", *option, "--results-dir", tmp_path)
    assert res.exit_code == 2
    flag = "'-f' / '--features'" if option[0] == "-f" else "'-c' / '--clf'"
    example = "-f hog" if option[0] == "-f" else "-c linear-svm"
    assert lines(res.output)[-1] == (
        f"Error: Invalid value for {flag}: names nothing; give at least one, e.g. {example}")


def test_empty_feature_list_in_extract_is_a_usage_error(tmp_path, no_loading):
    res = invoke("extract", "-q", "-f", "", "--cache-dir", tmp_path)
    assert res.exit_code == 2
    assert "Invalid value for '-f' / '--features': names nothing" in lines(res.output)[-1]


def test_a_parameter_given_twice_is_refused(tmp_path, no_loading):
    res = invoke(*RUN, "-p", "hog.orientations=9", "-p", "ridge.alpha=1",
                 "-p", "hog.orientations=12", "--results-dir", tmp_path)
    assert res.exit_code == 2
    assert lines(res.output)[-1] == (
        "Error: Invalid value for '-p' / '--param': hog.orientations is given twice, "
        "'hog.orientations=9' and 'hog.orientations=12'; give it once (a comma list is a "
        "grid: hog.orientations=a,b)")


def test_a_parameter_repeated_with_the_same_value_is_accepted(tmp_path, no_running):
    res = invoke(*RUN, "-p", "hog.orientations=12", "-p", "hog.orientations=12",
                 "--results-dir", tmp_path)
    assert res.exit_code == 0, res.output
    assert no_running[0]["params"]["hog"] == {"orientations": 12}
