"""``timm:<architecture>``: any timm model, with random weights (no weights can be had
offline): the features are what timm's own model returns before its classifier
(``forward_head(..., pre_logits=True)``) on the input built here by hand from timm's
pretrained configuration; unknown names and missing weights are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

timm = pytest.importorskip("timm", reason="timm is not installed (pip install -e '.[timm]')")

from featbench.datasets import load_dataset  # noqa: E402
from featbench.errors import DataError, UnknownNameError  # noqa: E402
from featbench.features import build_extractor  # noqa: E402


@pytest.mark.parametrize("arch", ["resnet10t", "mobilenetv3_small_050"])
def test_features_are_timms_pre_logits(arch):
    X = load_dataset("digits").X_test[:6]
    X = np.repeat(X[..., None], 3, axis=-1) if X.ndim == 3 else X
    est = build_extractor(f"timm:{arch}").set_params(weights=None, size=64, device="cpu",
                                                     precision="fp32", backend="torch")
    got = est.fit(X).transform(X)
    cfg = timm.models.get_pretrained_cfg(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the extractor's random_state
        model = timm.create_model(arch).eval()
    x = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    mode = "bicubic" if cfg.interpolation == "bicubic" else "bilinear"
    x = F.interpolate(x, size=(64, 64), mode=mode, align_corners=False)
    if mode == "bicubic":
        x = x.clamp(0, 1)
    x = (x - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_the_view_is_timms_evaluation_transform():
    """On photos: timm's crop fraction and interpolation (resnet10t: 0.95, bicubic)."""
    est = build_extractor("timm:resnet10t").set_params(weights=None)
    cfg = timm.models.get_pretrained_cfg("resnet10t")
    size, resize, interpolation = est.eval_transform()
    assert size == cfg.input_size[-1]
    assert resize == round(size / cfg.crop_pct) and interpolation == cfg.interpolation


def test_unknown_names_and_missing_weights(monkeypatch):
    with pytest.raises(UnknownNameError, match="Did you mean timm:resnet18"):
        build_extractor("timm:resnet19")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    est = build_extractor("timm:resnet10t").set_params(device="cpu")
    with pytest.raises(DataError, match=r"Hugging Face cache .*\.weights_path=FILE"):
        est.fit(np.zeros((1, 32, 32, 3), np.uint8))
