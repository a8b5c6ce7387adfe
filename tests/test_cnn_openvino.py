"""The OpenVINO backend of ``cnn:*``: the same features as eager PyTorch, keyed apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featbench.errors import ParameterError
from featbench.features import openvino_backend
from featbench.features.cnn import CNNEmbedding
from featbench.features.openvino_backend import resolve_backend

pytest.importorskip("openvino", reason="the openvino extra is not installed")

CPU = torch.device("cpu")


def _features(model, images, backend, **kw):
    est = CNNEmbedding(model, device="cpu", precision="fp32", backend=backend,
                       batch_size=16, **kw).fit(images[:1])
    return est.transform(images), est


@pytest.mark.parametrize("model, kw", [
    ("efficientnet-lite0", {"size": 64}),
    ("resnet18", {"weights": None, "size": 64}),
    ("resnet18", {"weights": None, "size": 64, "layer": "layer3"}),
])
def test_openvino_features_equal_eager_torch(cifar_sample, model, kw):
    if model.startswith("efficientnet"):
        pytest.importorskip("efficientnet_lite_pytorch", reason="the lite extra is missing")
    images = cifar_sample[0][:40]
    ref, est_torch = _features(model, images, "torch", **kw)
    got, est_ov = _features(model, images, "openvino", **kw)
    assert est_torch.runtime_["backend"] == "torch"
    assert est_ov.runtime_["backend"] == "openvino"
    assert got.shape == ref.shape and np.abs(ref).max() > 0
    # float32 sums in another order: equal to 1e-4 of the features' scale
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    # batches of other sizes give the same rows (a dynamic batch dimension)
    np.testing.assert_allclose(est_ov.transform(images[:7]), got[:7], rtol=0,
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


def test_missing_openvino_falls_back_or_says_how_to_install(monkeypatch):
    monkeypatch.setattr(openvino_backend, "openvino_available", lambda: False)
    assert resolve_backend("auto", CPU, "fp32") == "torch"
    with pytest.raises(ParameterError, match=r"pip install 'featbench\[openvino\]'"):
        resolve_backend("openvino", CPU, "fp32")
