"""Thread pools sized to the cores a process may use; CPU time and load in records."""

from __future__ import annotations

import os

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from featbench import load_dataset, parallel
from featbench.parallel import available_cores, limit_threads
from featbench.results import format_table, make_table, under_load
from featbench.runner import run_benchmark


def test_available_cores_follow_affinity_and_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 5, 7})
    monkeypatch.setattr(parallel, "CGROUP_CPU_MAX", str(tmp_path / "none"))
    assert available_cores() == 6  # the cpuset, not os.cpu_count()
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(parallel, "CGROUP_CPU_MAX", str(quota))
    for text, expected in (("max 100000", 6), ("200000 100000", 2), ("250000 100000", 2),
                           ("50000 100000", 1), ("900000 100000", 6)):
        quota.write_text(text + "\n")
        assert available_cores() == expected, text
    monkeypatch.delenv("FEATBENCH_JOBS", raising=False)
    quota.write_text("300000 100000\n")
    assert parallel.get_n_jobs() == 3


def test_limit_threads_sizes_blas_and_torch_pools():
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS pools afterwards
        try:
            got = limit_threads(1)
            # (the wait policy's value: test_openmp_threads_sleep_unless_the_user_says_otherwise)
            assert got.pop("omp_wait_policy")
            assert got == {"threads": 1, "torch_threads": 1}
            assert torch.get_num_threads() == 1
            pools = threadpool_info()
            assert pools and all(p["num_threads"] == 1 for p in pools)
        finally:
            torch.set_num_threads(before)


@pytest.mark.parametrize("user, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_unless_the_user_says_otherwise(user, expected):
    """featbench sets OMP_WAIT_POLICY before torch (and its OpenMP runtime) loads."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user is not None:
        env["OMP_WAIT_POLICY"] = user
    code = ("import sys, os, featbench.cli; assert 'torch' not in sys.modules; "
            "print(os.environ['OMP_WAIT_POLICY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == expected


def test_records_hold_cpu_time_and_load(tmp_path):
    ds = load_dataset("digits").subset(300, 100, seed=0)
    rec, = run_benchmark(ds, ["hog"], ["logreg"], results_dir=None, n_jobs=1)
    t, load = rec["timings"], rec["load"]
    assert rec["error"] is None
    assert 0 < t["fit_cpu_s"] and 0 < t["extract_cpu_s"]
    # one thread: the process cannot burn much more CPU than wall time (+ its BLAS)
    assert t["fit_cpu_s"] <= 2 * t["fit_s"] + 0.5
    assert len(load["fit_start"]) == 3 and len(load["fit_end"]) == 3
    assert load["cores"] == available_cores() and load["threads"] == 1


@pytest.mark.parametrize("peak, cores, shown", [(5.3, 2, "5.3 on 2 cores"), (2.4, 2, ""),
                                                 (2.6, 2, "2.6 on 2 cores"), (7.0, 8, "")])
def test_table_marks_figures_measured_under_load(peak, cores, shown):
    rec = {"load": {"fit_start": [0.5, 0.4, 0.3], "fit_end": [peak, 1.0, 1.0],
                    "cores": cores}}
    assert under_load(rec) == shown
    quiet = {"features": {"spec": "hog"}, "classifier": {"name": "ridge"},
             "load": {"fit_start": [0.1, 0, 0], "fit_end": [0.2, 0, 0], "cores": 2}}
    assert "load" not in format_table(make_table([quiet])).splitlines()[0]
    busy = {**quiet, "load": rec["load"]}
    text = format_table(make_table([quiet, busy]))
    assert ("load" in text.splitlines()[0]) == bool(shown)
