"""Ctrl-C (KeyboardInterrupt) cancels queued work at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import featbench.extraction as extraction
from featbench.datasets import Dataset
from featbench.store import FeatureStore


def test_interrupt_during_extraction_cancels_queued_decoding(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (400, 16, 16, 3), dtype=np.uint8)
    y = np.arange(400) % 2
    ds = Dataset.from_arrays("toy", X[:300], y[:300], X[300:], y[300:], ["a", "b"])
    decoded = []
    real = extraction._decode

    def slow_decode(source, view, i):
        time.sleep(0.01)
        decoded.append(i)
        return real(source, view, i)

    monkeypatch.setattr(extraction, "_decode", slow_decode)
    from featbench.features import RawPixels

    ctrl_c = KeyboardInterrupt("ctrl-c in transform")

    def interrupt(self, images):
        raise ctrl_c

    monkeypatch.setattr(RawPixels, "transform", interrupt)
    with pytest.raises(KeyboardInterrupt) as info:
        extraction.extract_features("raw", ds, {}, FeatureStore(tmp_path), shard_size=50,
                                    n_workers=1)
    n_at_interrupt = len(decoded)
    time.sleep(0.4)  # queued decodes of the next shard would go on meanwhile
    # at most the one decode in flight finishes after the interrupt
    assert len(decoded) - n_at_interrupt <= 1
    # the interrupt itself came through, not another exception raised while stopping,
    # and its traceback (whose frames are still alive here) ends where it was raised
    assert info.value is ctrl_c
    assert info.traceback[-1].name == "interrupt"
    busy = [t for t in threading.enumerate() if t.name.startswith("decode") and t.is_alive()]
    time.sleep(0.1)
    assert len(decoded) - n_at_interrupt <= 1 + len(busy)


def test_record_keeps_the_real_traceback_of_an_extraction_failure(monkeypatch):
    from featbench.features import RawPixels
    from featbench.runner import run_benchmark

    def innermost_failure(images):
        raise ValueError("boom in the extractor")

    def deep(images, depth):  # a failure deep in a library's stack
        return innermost_failure(images) if depth == 0 else deep(images, depth - 1)

    def extract(self, images):
        return deep(images, 10)

    monkeypatch.setattr(RawPixels, "_extract", extract)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    y = np.arange(60) % 2
    ds = Dataset.from_arrays("toy", X[:40], y[:40], X[40:], y[40:], ["a", "b"])
    recs = run_benchmark(ds, ["raw"], ["ridge", "logreg"], results_dir=None, n_jobs=1)
    for rec in recs:  # both pairs of the failed extraction
        assert rec["error"] == "ValueError: boom in the extractor"
        tb = rec["traceback"]
        assert "innermost_failure" in tb and tb.rstrip().endswith(
            "ValueError: boom in the extractor")
        assert "RuntimeError" not in tb  # not the traceback of a re-raise


#: an MLP fit that runs until it is interrupted (minutes), one grid value
ENDLESS_MLP = {"max_iter": 100_000, "tol": 0.0, "n_iter_no_change": 100_000, "alpha": 0.01}


def _digits_dataset():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = np.repeat((digits.images * 255 / 16).astype(np.uint8)[..., None], 3, axis=-1)
    y = digits.target
    return Dataset.from_arrays("digits-toy", X[:600], y[:600], X[600:800], y[600:800],
                               [str(c) for c in range(10)])


def test_sigint_during_an_mlp_fit_stops_the_run(tmp_path, monkeypatch):
    """scikit-learn's MLP (``mlp.solver=sklearn``) catches KeyboardInterrupt and returns
    half-trained; a real SIGINT during its fit must still stop the run with
    KeyboardInterrupt, keep the pair finished before it and record nothing of the
    interrupted pair."""
    from sklearn.neural_network import MLPClassifier

    from featbench.runner import run_benchmark

    started, returned, sent = threading.Event(), [], []
    original = MLPClassifier._fit_stochastic

    def spy(self, *args, **kwargs):
        if sent:  # the old behaviour: the grid went on after Ctrl-C
            raise AssertionError("an MLP fit started after Ctrl-C")
        started.set()
        out = original(self, *args, **kwargs)
        returned.append(True)  # the interrupt was swallowed by scikit-learn
        return out

    monkeypatch.setattr(MLPClassifier, "_fit_stochastic", spy)

    def ctrl_c():
        if started.wait(120):
            time.sleep(0.3)
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    records = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("Ctrl-C is not Python's KeyboardInterrupt in this test process")
    sender = threading.Thread(target=ctrl_c, daemon=True)
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(_digits_dataset(), ["raw"], ["ridge", "mlp"],
                      params={"mlp": {**ENDLESS_MLP, "solver": "sklearn"}},
                      results_dir=tmp_path, n_jobs=1,
                      on_record=records.append)
    sender.join(5)
    assert sent and returned == [True]  # a real SIGINT, swallowed inside the MLP's loop
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    saved = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert [r["classifier"]["name"] for r in saved] == ["ridge"]
    assert [r["classifier"]["name"] for r in records] == ["ridge"]
    assert not saved[0].get("error") and 0.5 < saved[0]["test_acc"] <= 1


def test_ctrl_c_during_an_mlp_fit_exits_130_from_the_command_line(tmp_path):
    """The same through ``featbench run`` in a child process: exit 130, the finished
    pair's record kept, none for the interrupted one."""
    params = [a for k, v in ENDLESS_MLP.items() for a in ("-p", f"mlp.{k}={v}")]
    cmd = [sys.executable, "-m", "featbench", "run", "-d", "digits", "-f", "raw", "-c",
           "ridge,mlp", *params, "--train-size", "600", "--test-size", "200", "-j", "1",
           "--results-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    err = []
    try:
        for line in proc.stderr:  # progress lines: stderr is not a terminal
            err.append(line)
            if line.startswith("fit mlp on raw:"):
                time.sleep(1.0)  # well inside the first MLP fit
                proc.send_signal(signal.SIGINT)
                break
        _, rest = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the run went on after Ctrl-C: " + "".join(err))
    err.append(rest)
    text = "".join(err)
    assert proc.returncode == 130, text
    assert "interrupted: 1 finished pair(s) kept" in text
    assert "Training interrupted by user" not in text
    saved = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert [r["classifier"]["name"] for r in saved] == ["ridge"]
