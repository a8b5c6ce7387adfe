"""The OpenVINO backend of ``cnn:*``: the same features as eager PyTorch, keyed apart.

The forward passes run in a child process: OpenVINO's thread pool stays out of the
test process (whose Ctrl-C tests send it real signals).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from featbench.errors import ParameterError
from featbench.features import openvino_backend
from featbench.features.openvino_backend import resolve_backend

pytest.importorskip("openvino", reason="the openvino extra is not installed")

CPU = torch.device("cpu")

COMPARE = r"""
import json, sys
import numpy as np
from featbench.features.cnn import CNNEmbedding
model, kw, path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
images = np.load(path)
out = {}
for backend in ("torch", "openvino"):
    est = CNNEmbedding(model, device="cpu", precision="fp32", backend=backend,
                       batch_size=16, **kw).fit(images[:1])
    F = est.transform(images)
    out[backend] = {"backend": est.runtime_["backend"], "shape": list(F.shape)}
    np.save(path + "." + backend + ".npy", F)
    if backend == "openvino":
        np.save(path + ".small.npy", est.transform(images[:7]))
print(json.dumps(out))
"""


@pytest.mark.parametrize("model, kw", [
    ("efficientnet-lite0", {"size": 64}),
    ("resnet18", {"weights": None, "size": 64}),
    ("resnet18", {"weights": None, "size": 64, "layer": "layer3"}),
])
def test_openvino_features_equal_eager_torch(cifar_sample, tmp_path, model, kw):
    import numpy as np

    if model.startswith("efficientnet"):
        pytest.importorskip("efficientnet_lite_pytorch", reason="the lite extra is missing")
    path = tmp_path / "images.npy"
    np.save(path, cifar_sample[0][:40])
    run = subprocess.run([sys.executable, "-c", COMPARE, model, json.dumps(kw), str(path)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    assert info["torch"]["backend"] == "torch" and info["openvino"]["backend"] == "openvino"
    ref = np.load(f"{path}.torch.npy")
    got = np.load(f"{path}.openvino.npy")
    assert got.shape == ref.shape and np.abs(ref).max() > 0
    # float32 sums in another order: equal to 1e-4 of the features' scale
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    # batches of other sizes give the same rows (a dynamic batch dimension)
    np.testing.assert_allclose(np.load(f"{path}.small.npy"), got[:7], rtol=0,
                               atol=1e-6 * np.abs(ref).max())


def test_backend_is_resolved_and_keyed():
    from featbench import load_dataset
    from featbench.extraction import plan

    assert resolve_backend("auto", CPU, "fp32") == "openvino"
    assert resolve_backend("auto", CPU, "bf16") == "torch"  # OpenVINO runs fp32 only
    assert resolve_backend("torch", CPU, "fp32") == "torch"
    with pytest.raises(ParameterError, match="backend 'openvino' runs fp32 on the CPU"):
        resolve_backend("openvino", CPU, "bf16")
    with pytest.raises(ParameterError, match="backend must be one of"):
        resolve_backend("onnx", CPU, "fp32")
    ds = load_dataset("digits").subset(40, 20, seed=0)
    params = {"weights": None, "device": "cpu", "precision": "fp32", "size": 32}
    keys = {b: plan("cnn:resnet18", ds, {**params, "backend": b}).entry_key(ds, "train")
            for b in ("auto", "torch", "openvino")}
    assert keys["auto"] == keys["openvino"] != keys["torch"]
    assert plan("cnn:resnet18", ds, params).entry_key(ds, "train") == keys["torch"]


def test_missing_openvino_falls_back_or_says_how_to_install(monkeypatch):
    monkeypatch.setattr(openvino_backend, "openvino_available", lambda: False)
    assert resolve_backend("auto", CPU, "fp32") == "torch"
    with pytest.raises(ParameterError, match=r"pip install 'featbench\[openvino\]'"):
        resolve_backend("openvino", CPU, "fp32")
