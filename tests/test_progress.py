"""Progress in logs: plain lines per stage when stderr is not a terminal."""

from __future__ import annotations

import io

import numpy as np

from featbench import progress as progress_module
from featbench.progress import LineProgress


def test_line_progress_prints_start_updates_and_end():
    out = io.StringIO()
    bar = LineProgress(total=10, desc="hog train", unit="img", file=out, interval=0.0)
    bar.update(4)
    bar.set_postfix_str("shard 1/3")
    bar.update(6)
    bar.close()
    bar.close()  # once only
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("hog train: 0/10 img (0%)") and lines[0].endswith("started")
    assert lines[1].startswith("hog train: 4/10 img (40%)")
    assert "[shard 1/3]" in lines[2]
    assert lines[-1].startswith("hog train: 10/10 img (100%)") and lines[-1].endswith("done")
    assert sum(line.endswith("done") for line in lines) == 1


def test_runs_in_a_log_print_stage_lines(monkeypatch, capsys, tmp_path):
    from featbench.datasets import Dataset
    from featbench.runner import run_benchmark

    monkeypatch.setattr(progress_module, "_is_terminal", lambda: False)
    progress_module.set_progress(None)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (120, 8, 8, 3), dtype=np.uint8)
    y = np.arange(120) % 3
    ds = Dataset.from_arrays("toy", X[:90], y[:90], X[90:], y[90:], ["a", "b", "c"])
    run_benchmark(ds, ["raw"], ["ridge"], results_dir=None, n_jobs=1)
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("pairs: 0/1 pair") for line in err)
    assert any(line.startswith("raw train: ") and line.endswith("done") for line in err)
    assert any(line.startswith("fit ridge on raw: ") and line.endswith("done") for line in err)
    assert any(line.startswith("pairs: 1/1 pair") and line.endswith("done") for line in err)


def test_decompression_bomb_warning_names_the_file(tmp_path, monkeypatch):
    import warnings

    from PIL import Image

    from featbench.datasets.source import read_file
    from featbench.errors import ImageWarning

    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels: over, under 2x
    with warnings.catch_warnings(record=True) as caught:  # featbench's filters kept
        warnings.simplefilter("always", ImageWarning)
        img = read_file(path)
    assert img.shape == (30, 40, 3)
    ours = [w for w in caught if issubclass(w.category, ImageWarning)]
    assert len(ours) == 1 and str(path) in str(ours[0].message)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
