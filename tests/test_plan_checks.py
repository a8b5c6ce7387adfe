"""Settings a learned extractor or a CNN cannot meet fail before any work, in one line
naming featbench's parameter (``-p NAME.PARAM=VALUE``), not a library's."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from featbench.cli import main
from featbench.errors import DataError, ParameterError

BASE = ["run", "-q", "-j", "1", "-c", "ridge"]


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def no_extraction(monkeypatch):
    import featbench.runner

    def extract(*args, **kwargs):
        raise AssertionError("extraction started before the check")

    monkeypatch.setattr(featbench.runner, "extract_features", extract)


@pytest.mark.parametrize("args, message", [
    (["-f", "fisher", "-p", "fisher.pca_dim=200"],
     "Error: -p fisher.pca_dim=200: must be at most 128, the dimension of sift descriptors"),
    (["-f", "fisher", "-p", "fisher.pca_dim=65", "-p", "fisher.descriptor=patch"],
     "Error: -p fisher.pca_dim=65: must be at most 64, the dimension of patch descriptors"),
    (["-f", "kmeans-patches", "-p", "kmeans-patches.n_centroids=2000", "-p",
      "kmeans-patches.n_patches=1000"],
     "Error: -p kmeans-patches.n_centroids=2000: must be at most n_patches=1000, the "
     "patches k-means is fitted on"),
])
def test_settings_checked_before_loading_the_data(tmp_path, no_loading, args, message):
    res = invoke(*BASE, *args, "--results-dir", tmp_path)
    assert res.exit_code == 1
    assert lines(res.output) == [message]


def test_a_missing_weights_file_is_named_before_loading_the_data(tmp_path, no_loading):
    missing = tmp_path / "resnet.pt"
    res = invoke(*BASE, "-f", "cnn:resnet18", "-p", f"cnn:resnet18.weights_path={missing}",
                 "--results-dir", tmp_path)
    assert res.exit_code == 1
    assert lines(res.output) == [f"Error: -p cnn:resnet18.weights_path={missing}: no such file"]
    res = invoke(*BASE, "-f", "cnn:resnet18", "-p", f"cnn:resnet18.weights_path={tmp_path}",
                 "--results-dir", tmp_path / "r")
    assert lines(res.output) == [
        f"Error: -p cnn:resnet18.weights_path={tmp_path}: is a folder, not a file"]


def test_an_unknown_layer_is_named_before_loading_the_data(tmp_path, no_loading):
    # the default (ImageNet) weights are never loaded for the check: no download here
    res = invoke(*BASE, "-f", "cnn:resnet18", "-p", "cnn:resnet18.layer=layer9",
                 "--results-dir", tmp_path)
    assert res.exit_code == 1
    out = lines(res.output)
    assert len(out) == 1
    assert out[0].startswith("Error: -p cnn:resnet18.layer=layer9: cnn:resnet18 has no layer "
                             "'layer9'. Did you mean layer4")
    # a real node of resnet18 (torchvision's graph names) passes the check
    from torchvision.models import resnet18
    from torchvision.models.feature_extraction import get_graph_node_names

    assert "layer3" in {n.split(".")[0] for n in get_graph_node_names(resnet18())[1]}
    from featbench.plan import validate_plan

    validate_plan(["cnn:resnet18"], ["ridge"], {"cnn:resnet18": {"layer": "layer3"}})


def test_codebook_larger_than_its_descriptors_is_refused_before_extraction(
        tmp_path, no_extraction):
    # 20 digits images of 32 x 32 px, 10 of them held out for validation: the codebook
    # fits on the other 10; dense grid step 2 with 8 px patches: centers at 4, 6, ..., 28
    # on each axis, 13 x 13 = 169 descriptors an image, 1,690 in all
    res = invoke(*BASE, "-f", "vlad", "-p", "vlad.n_words=5000", "--train-size", "20",
                 "--test-size", "20", "--val-size", "10", "--results-dir", tmp_path)
    assert res.exit_code == 1
    assert lines(res.output)[-1] == (
        "Error: -p vlad.n_words=5000: must be at most 1690, the number of descriptors the "
        "codebook is fitted on (10 training images of 32x32 px, 169 each; "
        "max_descriptors=100000)")
    # 1,690 words fit exactly: the check lets it through (to the extraction)
    from featbench.datasets import load_dataset
    from featbench.plan import check_plan_data

    ds = load_dataset("digits", train_size=20, test_size=20)
    check_plan_data(["vlad"], {"vlad": {"n_words": 1690}}, ds, val_size=10)
    with pytest.raises(ParameterError, match="at most 1690"):
        check_plan_data(["vlad"], {"vlad": {"n_words": 1691}}, ds, val_size=10)
    # the default validation split (2 of 20 images) leaves 18 to fit on: 3,042 descriptors
    with pytest.raises(ParameterError, match="at most 3042"):
        check_plan_data(["vlad"], {"vlad": {"n_words": 3043}}, ds)
    with pytest.raises(ParameterError, match=r"-p bovw.patch_sizes=40: a patch of 40 px"):
        check_plan_data(["bovw"], {"bovw": {"patch_sizes": 40}}, ds)


@pytest.mark.parametrize("cls, params, message", [
    ("VLAD", {"n_words": 2000}, "-p vlad.n_words=2000: must be at most 1690"),
    ("BagOfVisualWords", {"n_words": 1691}, "-p bovw.n_words=1691: must be at most 1690"),
    ("FisherVector", {"n_components": 1700, "pca_dim": 8},
     "-p fisher.n_components=1700: must be at most 1690"),
])
def test_fit_on_too_few_descriptors_names_the_parameter(cls, params, message):
    """Library use, where no plan is checked: the fit says it, not scikit-learn."""
    import featbench.features as features

    X = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(DataError, match=message.replace(".", r"\.")):
        getattr(features, cls)(**params).fit(X)  # 10 x 169 = 1,690 descriptors
