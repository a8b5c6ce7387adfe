"""``open_clip:<architecture>[/<tag>]``: OpenCLIP's image tower, with random weights (no
weights can be had offline): the features are ``model.encode_image`` of the input built
here by hand (the whole small image resized bicubic, CLIP's normalization)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip("open_clip",
                                reason="open_clip_torch is not installed (.[clip])")

from featbench.datasets import load_dataset  # noqa: E402
from featbench.errors import DataError, ParameterError, UnknownNameError  # noqa: E402
from featbench.features import build_extractor  # noqa: E402
from featbench.features.cnn import CLIP_MEAN, CLIP_STD  # noqa: E402


def test_features_are_the_image_embedding():
    X = load_dataset("digits").X_test[:4]
    X = np.repeat(X[..., None], 3, axis=-1) if X.ndim == 3 else X
    est = build_extractor("open_clip:RN50").set_params(weights=None, device="cpu",
                                                       precision="fp32", backend="torch")
    got = est.fit(X).transform(X)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model("RN50", pretrained=None).eval()
    x = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model.encode_image(x).numpy()
    assert got.shape == (4, 1024)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_names_tags_and_errors(monkeypatch):
    assert build_extractor("open_clip:RN50/openai").weights == "openai"
    with pytest.raises(UnknownNameError, match="Did you mean open_clip:RN50"):
        build_extractor("open_clip:RN5O")
    est = build_extractor("open_clip:RN50").set_params(device="cpu")  # weights DEFAULT
    with pytest.raises(ParameterError, match="needs a pretrained tag: .*openai"):
        est.fit(np.zeros((1, 32, 32, 3), np.uint8))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    est = build_extractor("open_clip:RN50/openai").set_params(device="cpu")
    with pytest.raises(DataError, match="could not be loaded .*weights_path=FILE"):
        est.fit(np.zeros((1, 32, 32, 3), np.uint8))
