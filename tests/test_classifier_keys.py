"""What a classifier's pair key holds: parameters that change its numbers, and its code."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from featbench import load_dataset
from featbench.classifiers import large_fit_placement
from featbench.classifiers.torch_logreg import LogReg
from featbench.classifiers.torch_mlp import MLP
from featbench.keys import classifier_modules, pair_key


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(100, 50, seed=0)


def test_mlp_batch_size_is_in_the_key_and_device_is_not(digits):
    base = pair_key(digits, "raw", "mlp", {}, 0)
    # the MLP's batch_size is Adam's mini-batch: another batch, other numbers
    assert pair_key(digits, "raw", "mlp", {"mlp": {"batch_size": 16}}, 0) != base
    assert pair_key(digits, "raw", "mlp", {"mlp": {"alpha": 0.5}}, 0) != base
    # where it runs is not what it computes
    assert pair_key(digits, "raw", "mlp", {"mlp": {"device": "cpu"}}, 0) == base
    # an extractor's batch_size is placement
    assert pair_key(digits, "raw", "mlp", {"raw": {"batch_size": 7}}, 0) == base


def test_every_classifier_module_is_in_the_code_hash():
    hashed = set(classifier_modules())
    assert {"featbench.classifiers.torch_mlp", "featbench.classifiers.torch_logreg",
            "featbench.classifiers.linear_svm", "featbench.classifiers.tuning",
            "featbench.classifiers.path", "featbench.runtime"} <= hashed


@pytest.mark.parametrize("cls", [LogReg, MLP])
def test_sklearn_solver_stays_on_the_cpu_where_cuda_exists(cls, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cpu = torch.device("cpu")
    assert cls(solver="sklearn")._placement(100_000, 10_000) == ("sklearn", cpu)
    assert large_fit_placement(cls(solver="sklearn")) == {"solver": "sklearn", "device": "cpu"}
    assert cls()._placement(100_000, 10_000)[1].type == "cuda"  # auto: the GPU
    with pytest.raises(Exception, match="CPU only"):
        cls(solver="sklearn", device="cuda")._placement(10, 10)


@pytest.mark.parametrize("torch_first, expected", [(False, "PASSIVE"), (True, "unknown")])
def test_records_say_whether_the_wait_policy_reached_openmp(torch_first, expected):
    code = ("import os; os.environ.pop('OMP_WAIT_POLICY', None)\n"
            + ("import torch\n" if torch_first else "")
            + "import featbench\nfrom featbench.runner import _threads\n"
            "print(_threads(1)['omp_wait_policy'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().startswith(expected)
