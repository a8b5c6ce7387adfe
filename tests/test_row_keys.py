"""A study row's key covers everything that determines its number, and nothing else."""

from __future__ import annotations

import pytest

from featbench.datasets import load_dataset
from featbench.reproduce import row_key, run_study
from featbench.studies import Row, Study


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(300, 100, seed=0)


def _key(ds, row, **kw):
    return row_key(row, ds, row.params_for(False), 0, False, **kw)


def test_key_changes_with_version_code_grid_and_tuning(digits, monkeypatch):
    row = Row("hog", "hog", "ridge")
    base = _key(digits, row)
    assert _key(digits, row) == base  # stable
    # the grid, resolved
    assert _key(digits, Row("hog", "hog", "ridge", params={"ridge": {"alpha": (1.0, 10.0)}})) \
        != base
    # the tuning rule
    assert _key(digits, row, extend_grid=False) != base
    # an extractor parameter left at its default gives the same key as leaving it out
    assert _key(digits, Row("hog", "hog", "ridge", params={"hog": {"orientations": 9}})) == base
    # placement does not count
    km = Row("km", "kmeans-patches", "ridge", params={"kmeans-patches": {"n_centroids": 8}})
    km_cpu = Row("km", "kmeans-patches", "ridge",
                 params={"kmeans-patches": {"n_centroids": 8, "device": "cpu",
                                            "batch_size": 2}})
    assert _key(digits, km) == _key(digits, km_cpu)
    # featbench's version
    import featbench.provenance as provenance

    monkeypatch.setattr(provenance, "__version__", "99.0")
    assert _key(digits, row) != base
    monkeypatch.undo()
    assert _key(digits, row) == base
    # the extractor's code
    real = provenance.code_hash
    monkeypatch.setattr(provenance, "code_hash",
                        lambda cls: "edited" if cls.__name__ == "HOG" else real(cls))
    assert _key(digits, row) != base
    monkeypatch.undo()
    # the classifiers' code
    import featbench.keys as keys

    monkeypatch.setattr(keys, "classifier_code_hash", lambda: "edited")
    assert _key(digits, row) != base


def test_resumed_study_reruns_a_row_after_a_code_change(digits, tmp_path, monkeypatch):
    study = Study("t", "digits", "test", (Row("raw", "raw", "ridge"),))
    lines: list[str] = []
    run_study(study, digits, tmp_path, echo=lines.append, n_jobs=1)
    run_study(study, digits, tmp_path, echo=lines.append, n_jobs=1)
    assert lines[-1].endswith("done earlier, skipped")
    import featbench.keys as keys

    monkeypatch.setattr(keys, "classifier_code_hash", lambda: "edited")
    lines.clear()
    recs, _ = run_study(study, digits, tmp_path, echo=lines.append, n_jobs=1)
    assert len(recs) == 1 and "running" in lines[0]


def test_plot_keeps_one_plan_or_says_it_mixes(digits, tmp_path):
    import pandas as pd

    from featbench.report import render

    study = Study("t", "digits", "test", (Row("raw", "raw", "ridge"),
                                           Row("raw", "raw", "logreg")))
    run_study(study, digits, tmp_path, echo=lambda m: None, n_jobs=1, seed=0)
    other = digits.subset(200, 80, seed=1)
    run_study(study, other, tmp_path, echo=lambda m: None, n_jobs=1, seed=1,
              rows=[study.rows[0]])
    notes: list[str] = []
    render(tmp_path, echo=notes.append)
    table = pd.read_csv(tmp_path / "table.csv")
    assert len(table) == 1 and table["n_train"].iloc[0] < 250  # the newest plan only
    assert "holds 2 plans" in notes[0] and "2 record(s) of the others left out" in notes[0]
    notes.clear()
    render(tmp_path, echo=notes.append, all_plans=True)
    assert len(pd.read_csv(tmp_path / "table.csv")) == 3
    assert "MIXED" in (tmp_path / "report.html").read_text()
