"""Declared parameter constraints, checked for the whole plan before any work."""

from __future__ import annotations

import pytest

from featbench.errors import ParameterError
from featbench.params import parse_params
from featbench.plan import validate_plan

FEATURES = ["raw", "color-hist", "hog", "bovw", "vlad", "fisher", "kmeans-patches",
            "cnn:efficientnet-lite0"]
CLASSIFIERS = ["linear-svm", "logreg", "ridge", "mlp"]


@pytest.mark.parametrize(("option", "expected"), [
    ("hog.orientations=abc", "invalid value hog.orientations='abc': must be an int in the "
                             "range [1, inf)"),
    ("bovw.assignment=fuzzy", "invalid value bovw.assignment='fuzzy': must be a str among"),
    ("cnn:efficientnet-lite0.precision=fp8", "invalid value cnn:efficientnet-lite0.precision"),
    ("cnn:efficientnet-lite0.normalization=foo",
     "invalid value cnn:efficientnet-lite0.normalization='foo'"),
    ("hog.pixels_per_cell=4,4,4", "invalid value hog.pixels_per_cell=4,4,4: must be an int"),
    ("raw.grayscale=3", "invalid value raw.grayscale=3: must be true or false"),
    ("kmeans-patches.n_centroids=1", "invalid value kmeans-patches.n_centroids=1"),
    ("linear-svm.C=-1", "invalid value linear-svm.C=-1: must be a float in the range (0.0"),
    ("linear-svm.C=0.1,-1", "invalid value linear-svm.C=-1"),  # every grid value
    ("logreg.C=0", "invalid value logreg.C=0"),  # scikit-learn's own constraints
    ("mlp.alpha=-1", "invalid value mlp.alpha=-1"),
    ("ridge.alpha=abc", "invalid value ridge.alpha='abc'"),
])
def test_every_bad_value_fails_up_front_in_one_wording(option, expected):
    with pytest.raises(ParameterError) as info:  # no data: checked before any work
        validate_plan(FEATURES, CLASSIFIERS, parse_params([option]))
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize("option", [
    "hog.block_norm=none", "hog.pixels_per_cell=4,4", "hog.pixels_per_cell=4",
    "bovw.patch_sizes=8,12,16", "bovw.soft_sigma=none", "fisher.pca_dim=none",
    "cnn:efficientnet-lite0.precision=bf16", "cnn:efficientnet-lite0.size=64",
    "linear-svm.C=1e-6,1e-5", "logreg.C=10", "kmeans-patches.norm_eps=0",
    "raw.grayscale=true",
])
def test_valid_values_pass(option):
    validate_plan(FEATURES, CLASSIFIERS, parse_params([option]))


def test_the_cli_reports_a_bad_value_before_loading_data(tmp_path):
    from click.testing import CliRunner

    from featbench.cli import main

    res = CliRunner().invoke(main, ["run", "-d", f"folder:{tmp_path}/missing", "-f", "bovw",
                                    "-p", "bovw.assignment=fuzzy", "--results-dir",
                                    str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 1
    # the parameter is reported, not the missing folder: checked before any loading
    assert "invalid value bovw.assignment='fuzzy'" in res.output
