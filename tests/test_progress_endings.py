"""A stage's last progress line says how it ended: done, interrupted, failed."""

from __future__ import annotations

import io

import numpy as np
import pytest

from featbench import progress as progress_module
from featbench.progress import LineProgress


def _last(out: io.StringIO) -> str:
    return out.getvalue().splitlines()[-1]


@pytest.mark.parametrize("error, word", [(KeyboardInterrupt, "interrupted"),
                                         (ValueError, "failed")])
def test_a_stage_left_by_an_exception_does_not_say_done(error, word):
    out = io.StringIO()
    with pytest.raises(error):
        with LineProgress(total=4, desc="fit ridge on raw", unit="fit", file=out) as bar:
            bar.update(1)
            raise error
    assert _last(out).startswith("fit ridge on raw: 1/4 fit (25%)")
    assert _last(out).endswith(f" {word}") and "done" not in out.getvalue()
    # closed in a finally clause (how extraction closes its stage), the same
    out = io.StringIO()
    bar = LineProgress(total=4, desc="raw train", unit="img", file=out)
    with pytest.raises(error):
        try:
            raise error
        finally:
            bar.close()
    assert _last(out).endswith(f" {word}")
    bar.close()  # once only
    assert sum(line.endswith(word) for line in out.getvalue().splitlines()) == 1


def test_a_failed_extraction_ends_its_pairs_as_failed(monkeypatch, capsys):
    from featbench.datasets import Dataset
    from featbench.features import RawPixels
    from featbench.runner import run_benchmark

    def broken(self, images):
        raise ValueError("broken extractor")

    monkeypatch.setattr(RawPixels, "_extract", broken)
    monkeypatch.setattr(progress_module, "_is_terminal", lambda: False)
    progress_module.set_progress(None)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (120, 8, 8, 3), dtype=np.uint8)
    y = np.arange(120) % 3
    ds = Dataset.from_arrays("toy", X[:90], y[:90], X[90:], y[90:], ["a", "b", "c"])
    recs = run_benchmark(ds, ["raw", "color-hist"], ["ridge"], results_dir=None, n_jobs=1)
    assert [bool(r["error"]) for r in recs] == [True, False]
    err = capsys.readouterr().err.splitlines()
    assert not [line for line in err if line.startswith("fit ridge on raw")]  # never fitted
    assert any(line.startswith("pairs: ") and "[ridge on raw: extraction failed]" in line
               for line in err)
    assert any(line.startswith("fit ridge on color-hist: ") and line.endswith(" done")
               for line in err)
    pairs = [line for line in err if line.startswith("pairs: ")]
    assert pairs[-1].startswith("pairs: 2/2 pair (100%)")
    assert pairs[-1].endswith(" ended: 1 of 2 pair(s) failed")
    assert not [line for line in err if line.startswith("raw train") and
                line.endswith(" done")]
