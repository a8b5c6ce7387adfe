"""``featbench list`` and ``describe`` import no torch (nor scikit-learn), and what they
show of an estimator is what the estimator itself says.

The registry reads a class's docstring and ``__init__`` defaults from its source
(:func:`featbench.registry.class_spec`); the references here are the classes
themselves, imported in the test process, built the way the registry's factories
built them before they became lazy.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest

from featbench.registry import class_spec

HEAVY = ("torch", "torchvision", "ray", "openvino", "timm", "sklearn")

PROBE = textwrap.dedent("""
    import sys
    from featbench.cli import main
    try:
        main(sys.argv[1:], prog_name="featbench")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
    print("HEAVY=" + repr(heavy))
    sys.exit(code)
""")


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A cache folder after a first ``featbench list features``, which imports torchvision
    once to list its models and keeps the list there."""
    folder = tmp_path_factory.mktemp("cache")
    run_cli(["list", "features"], folder)
    return folder


def run_cli(args: list[str], cache) -> tuple[int, str, list[str]]:
    env = {**os.environ, "FEATBENCH_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=set(HEAVY)), *args],
                          capture_output=True, text=True, env=env, timeout=120)
    out, _, heavy = proc.stdout.rpartition("HEAVY=")
    assert heavy, proc.stderr
    return proc.returncode, out, eval(heavy)  # noqa: S307 - a list repr we printed


@pytest.mark.parametrize("args", [["list"], ["list", "features"], ["describe", "hog"],
                                  ["describe", "logreg"], ["describe", "linear-svm"],
                                  ["describe", "cnn:efficientnet-lite0"],
                                  ["describe", "cnn:resnet18"], ["describe", "kmeans-patches"],
                                  ["describe", "convnet:resnet-small"]])
def test_list_and_describe_import_no_heavy_module(args, warm_cache):
    code, out, heavy = run_cli(args, warm_cache)
    assert code == 0, out
    assert out.strip()
    assert heavy == []


def test_list_features_names_torchvision_models_from_the_cache(warm_cache):
    import torchvision

    code, out, heavy = run_cli(["list", "features"], warm_cache)
    assert code == 0 and heavy == []
    listed = out.split("takes one of these models:", 1)[1].replace("\n", " ").split(",")
    expected = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2",
                *torchvision.models.list_models(module=torchvision.models)]
    assert [n.strip() for n in listed] == expected


def test_torchvision_list_is_saved_per_version_and_a_bad_file_is_ignored(tmp_path,
                                                                         monkeypatch):
    from importlib import metadata

    import torchvision

    from featbench.features import models

    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path))
    models.torchvision_models.cache_clear()
    expected = tuple(torchvision.models.list_models(module=torchvision.models))
    path = tmp_path / f"torchvision-models-{metadata.version('torchvision')}.json"
    try:
        assert models.torchvision_models() == expected
        assert json.loads(path.read_text()) == list(expected)
        models.torchvision_models.cache_clear()
        path.write_text('{"not": "a list"')
        assert models.torchvision_models() == expected  # rebuilt, and the file rewritten
        assert json.loads(path.read_text()) == list(expected)
    finally:
        models.torchvision_models.cache_clear()


def _references():
    """name -> the estimator as the factories built it before the registry became lazy."""
    from sklearn.linear_model import RidgeClassifier

    from featbench.classifiers.knn import KNN
    from featbench.classifiers.linear_svm import LinearSVM
    from featbench.classifiers.own_head import OwnHead
    from featbench.classifiers.torch_logreg import LogReg
    from featbench.classifiers.torch_mlp import MLP
    from featbench.features.bovw import BagOfVisualWords
    from featbench.features.cnn import CNNEmbedding
    from featbench.features.color import ColorHistogram
    from featbench.features.convnet import ConvNet
    from featbench.features.fisher import FisherVector
    from featbench.features.hog import HOG
    from featbench.features.kmeans_patches import KMeansPatches
    from featbench.features.raw import RawPixels
    from featbench.features.vlad import VLAD

    return {
        ("feature", "raw"): RawPixels(), ("feature", "color-hist"): ColorHistogram(),
        ("feature", "hog"): HOG(), ("feature", "bovw"): BagOfVisualWords(),
        ("feature", "vlad"): VLAD(), ("feature", "fisher"): FisherVector(),
        ("feature", "kmeans-patches"): KMeansPatches(),
        ("feature", "cnn:<model>"): CNNEmbedding(),
        ("feature", "cnn:efficientnet-lite0"): CNNEmbedding(model="efficientnet-lite0"),
        ("feature", "cnn:resnet18"): CNNEmbedding(model="resnet18"),
        ("feature", "convnet:<arch>"): ConvNet(),
        ("feature", "convnet:resnet-small"): ConvNet(arch="resnet-small"),
        ("classifier", "linear-svm"): LinearSVM(max_iter=5000, random_state=0),
        ("classifier", "logreg"): LogReg(max_iter=5000, random_state=0),
        ("classifier", "ridge"): RidgeClassifier(random_state=0),
        ("classifier", "mlp"): MLP(hidden_layer_sizes=(500,), early_stopping=True, max_iter=200,
                                   random_state=0),
        ("classifier", "own-head"): OwnHead(random_state=0),
        ("classifier", "knn"): KNN(random_state=0),
    }


def test_every_registered_name_has_a_reference():
    from featbench.classifiers import CLASSIFIERS
    from featbench.features import EXTRACTORS

    names = {("feature", n) for n in EXTRACTORS.names()}
    names |= {("classifier", n) for n in CLASSIFIERS.names()}
    assert names <= set(_references())


@pytest.mark.parametrize("key", sorted(_references(), key=str))
def test_describe_shows_the_estimators_own_defaults_doc_and_class(key):
    from featbench import cli
    from featbench.classifiers import get_classifier
    from featbench.features import EXTRACTORS, build_extractor

    kind, name = key
    ref = _references()[key]
    if name in ("cnn:<model>", "convnet:<arch>"):
        spec = EXTRACTORS.get(name).spec()  # what `list --params` shows
    else:
        got_kind, spec, _ = cli._component(name)
        assert got_kind == kind
    assert spec.params == ref.get_params(deep=False)
    assert spec.doc == inspect.getdoc(type(ref))
    assert spec.path == f"{type(ref).__module__}.{type(ref).__qualname__}"
    # and the registry builds that same estimator
    built = (get_classifier(name).named_steps["clf"] if kind == "classifier"
             else build_extractor(name) if name not in ("cnn:<model>", "convnet:<arch>")
             else EXTRACTORS.build(name))
    assert type(built) is type(ref)
    assert built.get_params(deep=False) == ref.get_params(deep=False)


def test_featbench_classes_are_read_from_source_not_imported():
    from featbench.classifiers import CLASSIFIERS
    from featbench.features import EXTRACTORS

    entries = [*EXTRACTORS, *CLASSIFIERS]
    ours = [e for e in entries if e.target.startswith("featbench.")]
    # all extractors, linear-svm, logreg, mlp, own-head, knn
    assert len(ours) == len(EXTRACTORS.names()) + 5
    for entry in ours:
        assert class_spec(entry.target) is not None, entry.name


def test_class_spec_reads_literals_and_gives_up_on_anything_else(tmp_path, monkeypatch):
    (tmp_path / "lazy_probe_mod.py").write_text(textwrap.dedent('''
        X = 3

        class Plain:
            """Plain.

            Parameters
            ----------
            a : int
                A.
            """

            def __init__(self, a=1, b=(2, 3), *, c=None, d="x", e=-1.5):
                pass

        class NotLiteral:
            """Doc."""

            def __init__(self, a=X):
                pass

        class NoDefault:
            """Doc."""

            def __init__(self, a, b=1):
                pass

        class KwNoDefault:
            """Doc."""

            def __init__(self, *, a):
                pass

        class Kwargs:
            """Doc."""

            def __init__(self, a=1, **kw):
                pass

        class NoDoc:
            def __init__(self, a=1):
                pass

        class NoInit:
            """Doc."""
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = class_spec("lazy_probe_mod:Plain")
    assert spec is not None
    assert spec.params == {"a": 1, "b": (2, 3), "c": None, "d": "x", "e": -1.5}
    assert spec.path == "lazy_probe_mod.Plain"
    assert "lazy_probe_mod" not in sys.modules  # read, not imported
    import lazy_probe_mod

    assert spec.doc == inspect.getdoc(lazy_probe_mod.Plain)
    for name in ("NotLiteral", "NoDefault", "KwNoDefault", "Kwargs", "NoDoc", "NoInit",
                 "Missing"):
        assert class_spec(f"lazy_probe_mod:{name}") is None, name
    assert class_spec("no_such_module_xyz:Plain") is None
