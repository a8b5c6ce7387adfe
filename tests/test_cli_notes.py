"""What the CLI says about a pair: one line per note, no raw Python warnings."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from featbench.cli import main


def test_iteration_limit_and_edge_are_one_line_notes(tmp_path):
    res = CliRunner().invoke(main, ["run", "-f", "raw", "-c", "logreg", "-p", "logreg.max_iter=2",
                                    "-p", "logreg.C=1e-3,1e-2", "--no-extend-grid",
                                    "--results-dir", str(tmp_path), "-q", "--train-size", "300",
                                    "--test-size", "100"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any(line.startswith("note: raw + logreg: the solver stopped at its iteration limit")
               for line in lines)
    # Python's warning format (file:line: Category: message + the source line) never shows
    assert not any(".py:" in line and "Warning" in line for line in lines)
    assert not any(line.strip().startswith("warnings.warn(") for line in lines)
    rec = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert rec["classifier"]["hit_iteration_limit"] is True
    assert any(w.startswith("ConvergenceWarning") for w in rec["warnings"])  # kept in the record
    assert "iter-limit" in res.output  # and in the table


def test_warnings_are_one_line_with_any_jobs(tmp_path):
    for jobs in ("1", "2"):
        out = tmp_path / jobs
        res = CliRunner().invoke(main, ["run", "-f", "raw", "-c", "logreg",
                                        "-p", "logreg.max_iter=2", "-j", jobs,
                                        "--results-dir", str(out), "-q", "--train-size", "300",
                                        "--test-size", "100"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        rec = json.loads(next((out / "runs").glob("*.json")).read_text())
        assert any(w.startswith("ConvergenceWarning") for w in rec["warnings"]), jobs


def test_unwritable_cache_is_one_warning_line_and_the_run_succeeds(tmp_path):
    import subprocess
    import sys

    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    out = subprocess.run(
        [sys.executable, "-m", "featbench", "run", "-f", "hog", "-c", "ridge", "--train-size",
         "300", "--test-size", "100", "--cache-dir", str(blocker / "cache"),
         "--results-dir", str(tmp_path / "r"), "-q"],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": ""})
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.splitlines() if "feature store" in line]
    assert len(warned) == 1 and warned[0].startswith(f"warning: feature store {blocker}")
    assert not [line for line in out.stderr.splitlines() if "warnings.warn" in line]
    assert "hog" in out.stdout and "ridge" in out.stdout  # the table


def test_list_file_that_is_not_utf8_is_one_line(tmp_path):
    bad = tmp_path / "photos.csv"
    bad.write_bytes(b"path,label\n\xff\xfe.jpg,a\n")
    res = CliRunner().invoke(main, ["run", "-d", f"list:{bad}", "--results-dir",
                                    str(tmp_path / "r")], catch_exceptions=False)
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].startswith(f"Error: cannot read list file {bad}")


def test_unlistable_folder_is_one_line(tmp_path, monkeypatch):
    import os

    (tmp_path / "data" / "train" / "a").mkdir(parents=True)
    (tmp_path / "data" / "test" / "a").mkdir(parents=True)
    real = os.scandir

    def refuse(top, *a, **k):
        if "data" in str(top):  # the dataset's folders only
            raise PermissionError(13, "Permission denied", str(top))
        return real(top, *a, **k)

    monkeypatch.setattr(os, "scandir", refuse)
    res = CliRunner().invoke(main, ["run", "-d", f"folder:{tmp_path / 'data'}",
                                    "--results-dir", str(tmp_path / "r")],
                             catch_exceptions=False)
    monkeypatch.setattr(os, "scandir", real)
    assert res.exit_code == 1
    assert "Error: cannot list image folder" in res.output and "Permission denied" in res.output
