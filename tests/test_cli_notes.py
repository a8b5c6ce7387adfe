"""What the CLI says about a pair: one line per note, no raw Python warnings."""

from __future__ import annotations

import json

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


def test_store_warning_is_one_line(tmp_path, monkeypatch):
    import errno
    import os

    real = os.link

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "link", refuse)
    res = CliRunner().invoke(main, ["run", "-f", "hog", "-c", "ridge", "--cache-dir",
                                    str(tmp_path / "c"), "--results-dir", str(tmp_path), "-q"],
                             catch_exceptions=False)
    monkeypatch.setattr(os, "link", real)
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if "feature store" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: feature store ")
