"""Ctrl-C (KeyboardInterrupt) cancels queued work at once."""

from __future__ import annotations

import threading
import time

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

    def interrupt(self, images):
        raise KeyboardInterrupt

    monkeypatch.setattr(RawPixels, "transform", interrupt)
    with pytest.raises(KeyboardInterrupt) as info:
        extraction.extract_features("raw", ds, {}, FeatureStore(tmp_path), shard_size=50,
                                    n_workers=1)
    n_at_interrupt = len(decoded)
    time.sleep(0.4)  # queued decodes of the next shard would go on meanwhile
    # at most the one decode in flight finishes after the interrupt
    assert len(decoded) - n_at_interrupt <= 1
    assert info.value is not None  # the traceback (and its frames) are still alive here
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
