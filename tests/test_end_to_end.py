"""``-c own-head``: a ConvNet scored by its own trained head (the end-to-end protocol).

The reference is the network trained directly through :class:`ConvNet`'s own API on
the very images the runner's extraction fits it on (the training split less the
validation split: the same seed gives the same weights on the CPU), then asked for its
predictions; the runner's record must hold exactly those accuracies.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from featbench.classifiers.own_head import OwnHead
from featbench.cli import main as cli
from featbench.datasets import load_dataset
from featbench.errors import ParameterError
from featbench.extraction import plan
from featbench.features.convnet import ConvNet
from featbench.plan import validate_plan
from featbench.runner import run_benchmark
from featbench.splits import tuning_split
from featbench.store import FeatureStore

SEED = 3
PARAMS = {
    "convnet:convnetjs": dict(size=16, widths=(8, 16), epochs=15, batch_size=32, lr=0.1,
                              device="cpu"),
    "convnet:resnet-small": dict(size=16, widths=(8, 16), epochs=10, batch_size=32, lr=0.1,
                                 device="cpu"),
    "convnet:airbench": dict(size=16, widths=(8, 16), epochs=10, batch_size=32, device="cpu"),
}


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits").subset(200, 60, seed=0)


def _direct(ds, name: str):
    """The network trained by hand on the fit images of the runner's tuning split, and
    the decoded validation and test images with their labels."""
    split = tuning_split(ds, SEED)
    view = plan(name, ds, PARAMS[name], SEED, split).view

    def images(source, indices):
        return np.stack([view.apply(source.read(int(i))) for i in indices])

    arch = name.split(":")[1]
    net = ConvNet(arch, **PARAMS[name])  # random_state 0: the extractors' own default
    net.fit(images(ds.train, split.fit), np.asarray(ds.train.labels)[split.fit])
    X_val, y_val = images(ds.train, split.val), np.asarray(ds.train.labels)[split.val]
    X_test, y_test = images(ds.test, range(len(ds.test))), np.asarray(ds.test.labels)
    return net, X_val, y_val, X_test, y_test


@pytest.mark.parametrize("name", ["convnet:convnetjs", "convnet:resnet-small",
                                  "convnet:airbench"])
def test_own_head_scores_the_network_trained_on_the_fit_split(ds, name, tmp_path):
    """convnetjs reads the stored features with its head; resnet-small (test-time flip on)
    decodes the images again and averages each image's logits with its mirror's (airbench:
    with its 1-pixel translations too)."""
    records = run_benchmark(ds, [name], ["own-head", "logreg"], params={name: PARAMS[name]},
                            seed=SEED, store=FeatureStore(tmp_path / "store"),
                            results_dir=tmp_path / "res")
    own, lin = records
    assert not own.get("error"), own.get("traceback")
    net, X_val, y_val, X_test, y_test = _direct(ds, name)
    assert own["test_acc"] > 0.3  # it learned (chance: 0.1): the equality below is no coincidence
    assert own["test_acc"] == pytest.approx(np.mean(net.predict(X_test) == y_test), abs=1e-12)
    assert own["val_acc"] == pytest.approx(np.mean(net.predict(X_val) == y_val), abs=1e-12)
    assert own["classifier"]["params"]["tta"] is (name != "convnet:convnetjs")
    assert own["classifier"]["trained"]["epochs_run"] == PARAMS[name]["epochs"]
    assert own["dataset"]["n_val"] == len(y_val) and own["dataset"]["n_test_scored"] == 60
    # the features + logreg pair of the same network is an ordinary tuned pair
    assert lin["classifier"]["chosen"] and not lin.get("error")
    # the head on the stored features gives the network's logits without the flip
    assert np.sum(own["confusion"]) == len(y_test)


def test_own_head_without_the_flip_reads_the_features(ds, tmp_path):
    """``-p own-head.tta=false`` on resnet-small: the head on the stored features, equal
    to the network's predictions without the flip."""
    name = "convnet:resnet-small"
    rec, = run_benchmark(ds, [name], ["own-head"],
                         params={name: PARAMS[name], "own-head": {"tta": False}}, seed=SEED,
                         store=FeatureStore(tmp_path / "store"), results_dir=None)
    net, _, _, X_test, y_test = _direct(ds, name)
    plain = net.classes_[np.argmax(net.logits(X_test, tta=False), axis=1)]
    assert rec["test_acc"] == pytest.approx(np.mean(plain == y_test), abs=1e-12)
    assert rec["classifier"]["params"]["tta"] is False


def test_own_head_estimator_is_the_networks_last_layer(ds):
    net, _, _, X_test, _ = _direct(ds, "convnet:convnetjs")
    F = net.transform(X_test)
    head = OwnHead().fit(F, net.classes_[:2], extractor=net)
    np.testing.assert_array_equal(head.predict(F), net.predict(X_test))
    with pytest.raises(ValueError, match="not among the network's classes"):
        OwnHead().fit(F[:2], np.array([0, 99]), extractor=net)
    with pytest.raises(ValueError, match="pass it"):
        OwnHead().fit(F, net.classes_[:2])


@pytest.mark.parametrize("features", [["hog"], ["convnet:convnetjs+hog"],
                                      ["convnet:convnetjs", "raw"]])
def test_own_head_needs_convnet_features_before_any_work(features):
    with pytest.raises(ParameterError, match="own-head .* needs the features of one convnet"):
        validate_plan(features, ["own-head"], {})


def test_cli_names_the_option(tmp_path):
    result = CliRunner().invoke(cli, ["run", "-d", "digits", "-f", "hog", "-c", "own-head",
                                      "--results-dir", str(tmp_path)])
    assert result.exit_code != 0, result.output
    assert "-c own-head" in result.output and "got -f hog" in result.output
    assert not (tmp_path / "runs").exists()


def test_headline_names_the_best_row_of_each_kind():
    """The report's headline: the best row of each family by test accuracy, named with
    its kind (a hand-worked example; an errored row never counts)."""
    from featbench.report import headline

    def rec(label, spec, clf, family, acc, error=None):
        return {"run_id": f"{label}-{clf}", "created": "2026-12-04T00:00:00",
                "study": {"label": label, "row": f"{label}/{clf}", "family": family},
                "features": {"spec": spec}, "classifier": {"name": clf}, "test_acc": acc,
                "confusion": [[1]], **({"error": error} if error else {})}

    records = [rec("HOG", "hog", "logreg", "hand-crafted", 0.50),
               rec("k-means", "kmeans-patches", "linear-svm", "hand-crafted", 0.73),
               rec("ConvNetJS", "convnet:convnetjs", "own-head", "end-to-end", 0.75),
               rec("ConvNetJS", "convnet:convnetjs", "logreg", "end-to-end", 0.74),
               rec("Lite2", "cnn:efficientnet-lite2", "logreg", "cnn", 0.83),
               rec("Lite0", "cnn:efficientnet-lite0", "logreg", "cnn", 0.99, error="boom")]
    assert headline(records) == (
        "best hand-crafted features: k-means + linear-svm 0.730; "
        "best pretrained ConvNet features + linear classifier: Lite2 + logreg 0.830; "
        "best ConvNet trained end to end: ConvNetJS + own-head 0.750")


def test_a_convnets_batch_size_is_in_its_pair_key(ds):
    """A ConvNet's batch size is its training mini-batch (other weights): a finished
    pair is not reused for another; a k-means encoder's batch size only places the work."""
    from featbench.keys import pair_key

    def key(name, clf, batch):
        return pair_key(ds, name, clf, {name: {**PARAMS.get(name, {}), "batch_size": batch}},
                        SEED)

    assert key("convnet:convnetjs", "own-head", 16) != key("convnet:convnetjs", "own-head", 32)
    assert key("kmeans-patches", "logreg", 16) == key("kmeans-patches", "logreg", 32)


def test_the_table_shows_whether_the_flip_was_used(ds, tmp_path):
    from featbench.results import hyperparams

    name = "convnet:resnet-small"
    recs = [run_benchmark(ds, [name], ["own-head"],
                          params={name: PARAMS[name], "own-head": {"tta": tta}}, seed=SEED,
                          store=FeatureStore(tmp_path / "store"), results_dir=None)[0]
            for tta in (None, False)]
    assert [hyperparams(r["classifier"]) for r in recs] == ["tta=True", "tta=False"]
