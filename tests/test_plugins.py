"""Plugins: an installed package adds an extractor or a classifier through an entry point.

The package is faked: a module written here, and ``importlib.metadata.entry_points``
answering for the two groups. The references are hand-computed: the plugin
extractor's features are each image's mean color, computed here with NumPy.
"""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from featbench.classifiers import CLASSIFIERS
from featbench.cli import main
from featbench.features import EXTRACTORS

MODULE = textwrap.dedent('''
    """A featbench plugin (test)."""
    import numpy as np
    from sklearn.neighbors import NearestCentroid

    from featbench.features.base import ImageExtractor


    class MeanColor(ImageExtractor):
        """Each image's mean red, green and blue."""

        def __init__(self, scale: float = 1.0) -> None:
            self.scale = scale

        def _fit(self, X, y=None) -> None:
            pass

        def _extract(self, images):
            return images.reshape(len(images), -1, 3).mean(1).astype(np.float32) * self.scale


    class Centroid(NearestCentroid):
        """Nearest class mean (scikit-learn's NearestCentroid), as a plugin."""

        def __init__(self, shrink_threshold: float = 0.0, random_state: int = 0) -> None:
            super().__init__(shrink_threshold=shrink_threshold or None)
            self.random_state = random_state
''')


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    (tmp_path / "fbplugin_demo.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = {"featbench.extractors": [importlib.metadata.EntryPoint(
               "mean-color", "fbplugin_demo:MeanColor", "featbench.extractors"),
               importlib.metadata.EntryPoint("hog", "fbplugin_demo:MeanColor",
                                             "featbench.extractors")],
           "featbench.classifiers": [importlib.metadata.EntryPoint(
               "centroid", "fbplugin_demo:Centroid", "featbench.classifiers")]}
    original = importlib.metadata.entry_points

    def entry_points(group=None, **kw):
        return eps[group] if group in eps else original(
            **({"group": group} if group else {}), **kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    for registry in (EXTRACTORS, CLASSIFIERS):  # a fresh reading, undone afterwards
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_plugins_loaded", False)
    yield
    sys.modules.pop("fbplugin_demo", None)


def test_plugins_are_listed_described_and_run(plugin, tmp_path):
    with pytest.warns(UserWarning, match="'hog' from .* featbench has one of that name"):
        assert "mean-color" in EXTRACTORS.names()
    assert "centroid" in CLASSIFIERS.names()
    assert "fbplugin_demo" not in sys.modules  # listing imports nothing
    runner = CliRunner()
    listed = runner.invoke(main, ["list"])
    assert listed.exit_code == 0
    assert "mean-color" in listed.output and "plugin" in listed.output
    assert "centroid" in listed.output
    described = runner.invoke(main, ["describe", "mean-color"])
    assert "scale" in described.output and "mean red, green and blue" in described.output
    result = runner.invoke(main, ["run", "-q", "-d", "digits", "-f", "mean-color", "-c",
                                  "centroid", "-p", "mean-color.scale=2",
                                  "--results-dir", str(tmp_path / "res"), "--cache-dir",
                                  str(tmp_path / "cache"), "-o", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    import pandas as pd

    row = pd.read_csv(tmp_path / "t.csv").iloc[0]
    assert row["features"] == "mean-color" and row["classifier"] == "centroid"
    assert row["feature_dim"] == 3


def test_a_plugin_extractor_is_the_class_it_names(plugin):
    from featbench.datasets import load_dataset
    from featbench.features import get_extractor

    X = load_dataset("digits").X_test[:20]
    F = get_extractor("mean-color", scale=2.0).fit_transform(X)
    rgb = np.repeat(X[..., None], 3, axis=-1) if X.ndim == 3 else X
    np.testing.assert_allclose(F, 2.0 * rgb.reshape(20, -1, 3).mean(1), rtol=1e-6)


def test_a_plugin_in_a_package_is_listed_without_importing_the_package(tmp_path,
                                                                           monkeypatch):
    pkg = tmp_path / "fbpkg_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('the package was imported')\n")
    (pkg / "ext.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from featbench.registry import class_spec

    spec = class_spec("fbpkg_demo.ext:MeanColor")
    assert spec is not None and spec.params == {"scale": 1.0}
    assert "fbpkg_demo" not in sys.modules


def test_a_plugin_leaves_the_keys_of_builtin_pairs_alone(plugin):
    from featbench.datasets import load_dataset
    from featbench.keys import pair_key

    ds = load_dataset("digits").subset(100, 30, seed=0)
    CLASSIFIERS._plugins_loaded = True  # as before any plugin
    before = pair_key(ds, "hog", "ridge", {}, 0)
    CLASSIFIERS._plugins_loaded = False
    assert "centroid" in CLASSIFIERS.names()
    assert pair_key(ds, "hog", "ridge", {}, 0) == before
    assert pair_key(ds, "hog", "centroid", {}, 0) != before


def test_plugins_extract_and_run_in_a_study(plugin, tmp_path):
    """`extract` stores a plugin extractor's features (the mean colors, by hand) and a
    study row names the plugin extractor and classifier."""
    import pandas as pd

    from featbench.datasets import load_dataset
    from featbench.extraction import extract_features
    from featbench.report import render
    from featbench.reproduce import run_study
    from featbench.store import FeatureStore
    from featbench.studies import Row, Study, validate_study

    with pytest.warns(UserWarning):
        EXTRACTORS.names()
    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, ["extract", "-q", "-d", "digits", "-f", "mean-color",
                                       "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    ds = load_dataset("digits")
    import fbplugin_demo

    original = fbplugin_demo.MeanColor._extract

    def spied(*args, **kwargs):
        raise AssertionError("extracted again")

    fbplugin_demo.MeanColor._extract = spied  # read from the store `extract` filled
    try:
        feats = extract_features("mean-color", ds, {}, FeatureStore(cache / "store"), seed=0)
    finally:
        fbplugin_demo.MeanColor._extract = original
    X = ds.X_test
    rgb = np.repeat(X[..., None], 3, axis=-1) if X.ndim == 3 else X
    np.testing.assert_allclose(feats.test, rgb.reshape(len(X), -1, 3).mean(1), rtol=1e-6)

    study = Study("p", "digits", "p", (Row("mean color", "mean-color", "centroid"),))
    validate_study(study)
    run_study(study, ds.subset(200, 60, seed=0), tmp_path / "study",
              store=FeatureStore(cache / "store"), echo=lambda m: None)
    row = pd.read_csv(render(tmp_path / "study")["table.csv"]).iloc[0]
    assert (row["features"], row["classifier"], row["feature_dim"]) == ("mean-color",
                                                                          "centroid", 3)
