"""`featbench run` fits only the pairs it has no finished record of (``--rerun`` all)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from featbench import load_dataset, runner
from featbench.cli import main


def _spy(monkeypatch) -> list[str]:
    fitted: list[str] = []
    real = runner.run_pair

    def spy(ds, feats, spec, clf_name, *args, **kwargs):
        fitted.append(f"{spec}/{clf_name}")
        return real(ds, feats, spec, clf_name, *args, **kwargs)

    monkeypatch.setattr(runner, "run_pair", spy)
    return fitted


def test_finished_pairs_are_reused_not_fitted_again(tmp_path, monkeypatch):
    ds = load_dataset("digits").subset(200, 60, seed=0)
    fitted = _spy(monkeypatch)
    first = runner.run_benchmark(ds, ["hog", "raw"], ["ridge"], results_dir=tmp_path)
    assert fitted == ["hog/ridge", "raw/ridge"]
    fitted.clear()
    reused: list[dict] = []
    again = runner.run_benchmark(ds, ["hog", "raw"], ["ridge", "logreg"], results_dir=tmp_path,
                                 on_reuse=reused.append)
    # only the new classifier is fitted; the finished pairs come back as they were
    assert fitted == ["hog/logreg", "raw/logreg"]
    assert [r["run_id"] for r in reused] == [r["run_id"] for r in first]
    assert [(r["features"]["spec"], r["classifier"]["name"]) for r in again] == [
        ("hog", "ridge"), ("hog", "logreg"), ("raw", "ridge"), ("raw", "logreg")]
    assert len(list((tmp_path / "runs").glob("*.json"))) == 4  # no duplicates
    # another parameter, seed or validation size is another pair
    fitted.clear()
    runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path,
                         params={"hog": {"orientations": 6}})
    runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path, seed=1)
    runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path, val_size=30)
    runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path, dtype="float16")
    runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path, skip_bad=True)
    assert fitted == ["hog/ridge"] * 5
    # --rerun fits again
    fitted.clear()
    runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path, rerun=True)
    assert fitted == ["hog/ridge"]


def test_a_stray_unreadable_json_file_is_named_and_the_others_reused(tmp_path, monkeypatch):
    import pytest

    ds = load_dataset("digits").subset(200, 60, seed=0)
    runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path)
    (tmp_path / "runs" / "notes.json").write_bytes(b"\xff not json")
    fitted = _spy(monkeypatch)
    with pytest.warns(UserWarning, match="notes.json: not UTF-8 text .*; skipped"):
        runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path)
    assert fitted == []


def test_a_failed_pair_is_fitted_again(tmp_path, monkeypatch):
    ds = load_dataset("digits").subset(200, 60, seed=0)
    rec, = runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path)
    path = next((tmp_path / "runs").glob("*.json"))
    rec["error"] = "RuntimeError: boom"
    path.write_text(json.dumps(rec))
    fitted = _spy(monkeypatch)
    runner.run_benchmark(ds, ["hog"], ["ridge"], results_dir=tmp_path)
    assert fitted == ["hog/ridge"]


def test_cli_says_what_it_reused(tmp_path):
    args = ["run", "-q", "-d", "digits", "--train-size", "200", "--test-size", "60", "-f", "hog",
            "-c", "ridge", "--results-dir", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0
    assert (f"1 pair(s) finished earlier with the same key: their records in "
            f"{tmp_path / 'runs'} are reused (--rerun fits them again)") in res.output
    assert len(list((tmp_path / "runs").glob("*.json"))) == 1
    res = CliRunner().invoke(main, [*args, "--rerun"])
    assert res.exit_code == 0 and "are reused" not in res.output
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
