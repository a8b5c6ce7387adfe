"""``hf:<repo id or folder>``: a transformers vision model the test writes with
``save_pretrained`` (no checkpoint can be downloaded here): the features are the
model's own pooled output on the input built here by hand from its image processor's
mean and std; random initialization is seeded; a folder without a processor is a
one-line error naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers",
                                   reason="transformers is not installed (.[hf])")

from featbench.datasets import load_dataset  # noqa: E402
from featbench.errors import DataError  # noqa: E402
from featbench.features import build_extractor  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    out = tmp_path_factory.mktemp("tinyvit")
    torch.manual_seed(3)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)
    ViTModel(config).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6],
                      image_std=[0.2, 0.25, 0.3]).save_pretrained(out)
    return out


def _images():
    X = load_dataset("digits").X_test[:5]
    return np.repeat(X[..., None], 3, axis=-1) if X.ndim == 3 else X


def test_features_are_the_models_pooled_output(folder):
    from transformers import ViTModel

    X = _images()
    est = build_extractor(f"hf:{folder}").set_params(device="cpu", precision="fp32",
                                                     backend="torch")
    got = est.fit(X).transform(X)
    model = ViTModel.from_pretrained(folder).eval()
    x = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = (x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / \
        torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model(pixel_values=x).pooler_output.numpy()
    assert got.shape == (5, 32)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_random_weights_are_seeded_and_differ_from_the_checkpoints(folder):
    X = _images()

    def feats(**params):
        est = build_extractor(f"hf:{folder}").set_params(device="cpu", precision="fp32",
                                                         backend="torch", **params)
        return est.fit(X).transform(X)

    a, b = feats(weights=None), feats(weights=None)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, feats())
    assert not np.allclose(a, feats(weights=None, random_state=1))


def test_a_folder_without_a_processor_is_named(tmp_path):
    est = build_extractor(f"hf:{tmp_path}").set_params(device="cpu")
    with pytest.raises(DataError, match=f"hf:{tmp_path}: cannot read its image processor"):
        est.fit(np.zeros((1, 32, 32, 3), np.uint8))
