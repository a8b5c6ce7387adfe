"""``convnet:<arch>``: a ConvNet trained end to end on the training split.

Tiny synthetic images (a bright square in one of four quadrants, on noise) and small
networks keep every fit under a few seconds on two CPU cores. References are computed
here independently: the network's forward pass by hand from the stored arrays, the
label-smoothed loss from its formula, the augmentation by brute force.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featbench.errors import ParameterError
from featbench.features import check_extractor
from featbench.features import convnet as convnet_module
from featbench.features.convnet import ConvNet, augment, lr_factor
from featbench.features.convnet_archs import build_network
from featbench.progress import set_progress

#: small settings of each architecture (16 px inputs, few channels)
TINY = {"convnetjs": dict(size=16, epochs=5, batch_size=16, device="cpu"),
        "resnet-small": dict(size=16, epochs=2, batch_size=32, widths=(8, 16, 16),
                             device="cpu")}


def quadrant_images(n: int, side: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise images with a bright square somewhere inside one quadrant; the quadrant is
    the class (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    X = rng.integers(0, 100, (n, side, side, 3)).astype(np.uint8)
    half, q = side // 2, side // 4
    for i, c in enumerate(y):
        r0 = (c // 2) * half + rng.integers(0, half - q + 1)
        c0 = (c % 2) * half + rng.integers(0, half - q + 1)
        X[i, r0:r0 + q, c0:c0 + q] = 230
    return X, y


@pytest.fixture(scope="module")
def data():
    return quadrant_images(200, seed=0), quadrant_images(100, seed=1)


@pytest.fixture(scope="module")
def convnetjs(data):
    """convnetjs trained on the quadrant images (flips off: a mirror image changes the
    quadrant, so it would teach the network wrong labels)."""
    (X, y), _ = data
    return ConvNet("convnetjs", flip=False, **TINY["convnetjs"]).fit(X, y)


def test_lr_schedules_by_hand():
    # one-cycle: 0.1 -> 1 over the warm-up (20 %), then linearly to 0
    assert lr_factor("onecycle", 0.0, 0.2) == pytest.approx(0.1)
    assert lr_factor("onecycle", 0.1, 0.2) == pytest.approx(0.55)
    assert lr_factor("onecycle", 0.2, 0.2) == pytest.approx(1.0)
    assert lr_factor("onecycle", 0.6, 0.2) == pytest.approx(0.5)
    assert lr_factor("onecycle", 1.0, 0.2) == pytest.approx(0.0)
    # cosine: half way through the decay, cos(pi / 2) -> 0.5
    assert lr_factor("cosine", 0.6, 0.2) == pytest.approx(0.5)
    assert lr_factor("cosine", 0.2 + 0.8 / 3, 0.2) == pytest.approx(0.75)
    assert lr_factor("constant", 0.7, 0.2) == 1.0


def test_augmentation_is_a_flip_and_a_shift_within_the_padding():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((12, 3, 8, 8)).astype(np.float32))
    g = torch.Generator().manual_seed(0)
    out = augment(x, g, flip=True, shift=2)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    flipped_any, shifted_any = False, False
    for i in range(len(x)):
        # some flip and some offset in [-2, 2]^2 of the reflection-padded image gives it
        matches = [(f, dy, dx) for f in (False, True) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], (padded[i].flip(2) if f else padded[i])
                                  [:, dy:dy + 8, dx:dx + 8])]
        assert matches, i
        flipped_any |= all(f for f, _, _ in matches)
        shifted_any |= all((dy, dx) != (2, 2) for _, dy, dx in matches)
    assert flipped_any and shifted_any
    # no augmentation asked: the batch as it is
    assert torch.equal(augment(x, g, flip=False, shift=0), x)


def test_convnetjs_learns_a_simple_pattern(data, capsys):
    (X, y), (Xt, yt) = data
    set_progress(None)  # progress as lines (stderr is not a terminal here)
    est = ConvNet("convnetjs", flip=False, **TINY["convnetjs"]).fit(X, y)
    err = capsys.readouterr().err
    # one progress line per epoch, with the loss and the throughput
    epochs = re.findall(r"epoch (\d)/5: loss [0-9.]+, \d+ img/s\]\n", err)
    assert epochs == ["1", "2", "3", "4", "5"]
    assert est.epochs_run_ == 5 and not est.stopped_by_budget_
    # what the record gets: the recipe as trained (the demo's widths, the given epochs)
    est.transform(X[:2])
    assert est.runtime_["recipe"] == {"widths": [16, 20, 20], "epochs": 5, "batch_size": 16,
                                      "lr": 0.02, "weight_decay": 1e-4,
                                      "label_smoothing": 0.0, "tta": False}
    assert est.runtime_["epochs_run"] == 5 and est.runtime_["train_seconds"] > 0
    # the network's own predictions
    assert np.mean(est.predict(Xt) == yt) >= 0.95
    # and a logistic regression on its features
    F_train, F_test = est.transform(X), est.transform(Xt)
    assert F_train.shape == (200, 20 * 2 * 2) and F_train.dtype == np.float32
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(F_train, y)
    assert clf.score(F_test, yt) >= 0.9


def test_same_seed_same_weights_another_seed_others(data):
    (X, y), (Xt, _) = data
    params = dict(TINY["convnetjs"], epochs=2)
    a = ConvNet("convnetjs", random_state=3, **params).fit(X[:64], y[:64])
    b = ConvNet("convnetjs", random_state=3, **params).fit(X[:64], y[:64])
    c = ConvNet("convnetjs", random_state=4, **params).fit(X[:64], y[:64])
    assert a.weights_.keys() == b.weights_.keys()
    for key in a.weights_:
        np.testing.assert_array_equal(a.weights_[key], b.weights_[key])
    np.testing.assert_array_equal(a.transform(Xt), b.transform(Xt))
    assert any(not np.array_equal(a.weights_[k], c.weights_[k]) for k in a.weights_)
    assert not np.allclose(a.transform(Xt), c.transform(Xt))


def test_convnetjs_features_are_the_input_of_its_last_layer(convnetjs, data):
    """The forward pass written out here from the stored arrays: normalization, three
    conv(5x5, pad 2) + ReLU + maxpool(2) stages, flatten, linear."""
    (X, _), (Xt, _) = data
    est = convnetjs
    # the normalization is the training images' per-channel mean and std
    np.testing.assert_allclose(est.input_mean_, (X / 255.0).mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(est.input_std_, (X / 255.0).std(axis=(0, 1, 2), ddof=1),
                               rtol=1e-5)
    state = est.fitted_state()
    w = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items() if k.startswith("net__")}
    x = torch.from_numpy(((Xt / 255.0 - est.input_mean_) / est.input_std_)
                         .astype(np.float32)).permute(0, 3, 1, 2)
    for i in (0, 3, 6):  # body.<i> are the convolutions
        x = F.max_pool2d(F.relu(F.conv2d(x, w[f"net__body__{i}__weight"],
                                         w[f"net__body__{i}__bias"], padding=2)), 2)
    pooled = x.flatten(1)
    logits = F.linear(pooled, w["net__fc__weight"], w["net__fc__bias"])
    feats = est.transform(Xt)
    np.testing.assert_allclose(feats, pooled.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(est.head_logits(feats), logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(est.logits(Xt), logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(est.predict(Xt), est.classes_[logits.argmax(1).numpy()])


def test_resnet_features_are_what_its_head_reads(data, tmp_path):
    (X, y), (Xt, _) = data
    est = ConvNet("resnet-small", **TINY["resnet-small"]).fit(X, y)
    net = est.network()
    captured = []
    hook = net.fc.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        with torch.inference_mode():
            logits = net(est.preprocess(Xt))
    finally:
        hook.remove()
    feats = est.transform(Xt)
    assert feats.shape == (100, 16)
    np.testing.assert_allclose(feats, captured[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(est.head_logits(feats), logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(est.logits(Xt, tta=False), logits.numpy(), rtol=1e-5,
                               atol=1e-5)
    # batch-norm statistics and counters survive the pickle-free store too
    from featbench.store import FeatureStore

    stored, _ = FeatureStore(tmp_path).save_codebook("r" * 16, est.fitted_state())
    assert any(k.endswith("running_var") for k in stored)
    again = ConvNet("resnet-small", **TINY["resnet-small"]).set_fitted_state(stored)
    np.testing.assert_array_equal(again.transform(Xt), feats)
    np.testing.assert_array_equal(again.predict(Xt), est.predict(Xt))


def test_state_round_trip_through_npz_gives_the_same_network(convnetjs, data, tmp_path):
    from featbench.store import FeatureStore

    _, (Xt, _) = data
    state = convnetjs.fitted_state()
    for name, value in state.items():
        assert isinstance(value, (np.ndarray, bool, int, float)), name
        if isinstance(value, np.ndarray):
            assert value.dtype.kind in "biuf", name
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        loaded = {k: z[k] for k in z.files}
    again = ConvNet("convnetjs", flip=False, **TINY["convnetjs"]).set_fitted_state(loaded)
    np.testing.assert_array_equal(again.transform(Xt), convnetjs.transform(Xt))
    np.testing.assert_array_equal(again.predict(Xt), convnetjs.predict(Xt))
    # the feature store keeps it (pickle-free) and gives it back the same
    store = FeatureStore(tmp_path)
    stored, _ = store.save_codebook("k" * 16, state)
    other = ConvNet("convnetjs", flip=False, **TINY["convnetjs"]).set_fitted_state(stored)
    np.testing.assert_array_equal(other.transform(Xt), convnetjs.transform(Xt))
    # a state from another network does not load
    wrong = ConvNet("convnetjs", flip=False, **dict(TINY["convnetjs"], widths=(4, 4, 4)))
    with pytest.raises(ValueError, match="do not fit the network"):
        wrong.set_fitted_state(loaded)


def _digest(im: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest()


def test_pipeline_trains_on_the_fit_split_only_and_reuses_the_weights(monkeypatch, tmp_path):
    """Spy on what the training loop receives when featbench's extraction fits the
    extractor: exactly the training images outside the validation split, with their
    labels; no validation or test image. A second run loads the stored weights."""
    from featbench.datasets import load_dataset
    from featbench.extraction import extract_features, plan
    from featbench.splits import tuning_split
    from featbench.store import FeatureStore

    seen = []
    original = ConvNet._train

    def spy(self, net, x, y, *args, **kwargs):
        seen.append((x.permute(0, 2, 3, 1).numpy().copy(), y.numpy().copy(), self.classes_
                     if hasattr(self, "classes_") else None))
        return original(self, net, x, y, *args, **kwargs)

    monkeypatch.setattr(ConvNet, "_train", spy)
    ds = load_dataset("digits").subset(150, 50, seed=0)
    split = tuning_split(ds, seed=3, val_size=30)
    params = {"convnet:convnetjs": dict(size=8, widths=(4, 4, 4), epochs=1, batch_size=32,
                                        device="cpu")}
    store = FeatureStore(tmp_path)
    res = extract_features("convnet:convnetjs", ds, params, store, seed=3, split=split)
    (x_fit, y_fit, _), = seen
    view = plan("convnet:convnetjs", ds, params["convnet:convnetjs"], 3, split).view

    def decoded(name, indices):
        src = ds.split(name)
        return [view.apply(src.read(int(i))) for i in indices]

    expected = decoded("train", split.fit)
    assert Counter(map(_digest, x_fit)) == Counter(map(_digest, expected))
    held_out = decoded("train", split.val) + decoded("test", range(len(ds.test)))
    overlap = ({_digest(im) for im in x_fit} & {_digest(im) for im in held_out}
               - {_digest(im) for im in expected})
    assert not overlap
    # the labels travel with their images (class indices into the sorted labels)
    labels = np.asarray(ds.train.labels)[split.fit]
    by_image = {_digest(im): lab for im, lab in zip(expected, labels, strict=True)}
    classes = np.unique(labels)
    assert all(by_image[_digest(im)] == classes[k] for im, k in zip(x_fit, y_fit, strict=True))
    assert res.splits["test"].shape == (50, 4)
    # a rerun loads the stored weights: no second training, the same features
    again = extract_features("convnet:convnetjs", ds, params, FeatureStore(tmp_path), seed=3,
                             split=split)
    assert len(seen) == 1
    np.testing.assert_array_equal(again.splits["test"], res.splits["test"])


@pytest.mark.parametrize(("option", "expected"), [
    ("convnet:convnetjs.epochs=0", "invalid value convnet:convnetjs.epochs=0: must be an int"),
    ("convnet:convnetjs.lr=-1", "invalid value convnet:convnetjs.lr=-1"),
    ("convnet:convnetjs.schedule=step", "invalid value convnet:convnetjs.schedule='step'"),
    ("convnet:convnetjs.precision=fp16", "invalid value convnet:convnetjs.precision='fp16'"),
    ("convnet:convnetjs.size=4", "invalid value convnet:convnetjs.size=4"),
    ("convnet:resnet-small.widths=8,0", "invalid value convnet:resnet-small.widths=8,0"),
    ("convnet:resnet-small.label_smoothing=1.5",
     "invalid value convnet:resnet-small.label_smoothing=1.5"),
    ("convnet:foo.epochs=1", "unknown convnet architecture 'foo' in 'convnet:foo'; "
                             "architectures: convnet:convnetjs, convnet:resnet-small"),
])
def test_bad_parameters_fail_before_any_work(option, expected, monkeypatch):
    from featbench.params import parse_params
    from featbench.plan import validate_plan

    monkeypatch.setattr(ConvNet, "_train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ParameterError) as info:
        validate_plan([option.partition(".")[0]], ["logreg"], parse_params([option]))
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_plan_checks_the_side_against_the_stages(tmp_path):
    from click.testing import CliRunner

    from featbench.cli import main
    from featbench.plan import validate_plan

    est = check_extractor("convnet:convnetjs", {"size": 8, "widths": (4, 4, 4, 4)})
    with pytest.raises(ParameterError, match=r"size=8: 4 stages .* at least 16"):
        est.check_plan("convnet:convnetjs")
    # the run's plan check calls it, before any data is read
    with pytest.raises(ParameterError, match=r"^-p convnet:resnet-small.shift=16: must be less"):
        validate_plan(["convnet:resnet-small"], ["logreg"],
                      {"convnet:resnet-small": {"size": 16, "shift": 16}})
    # an unknown architecture is one line from the CLI, before the data is looked at
    res = CliRunner().invoke(main, ["run", "-d", f"folder:{tmp_path}/missing", "-f",
                                    "convnet:lenet", "--results-dir", str(tmp_path)],
                             catch_exceptions=False)
    assert res.exit_code == 1
    assert "unknown convnet architecture 'lenet'" in res.output
    assert "missing" not in res.output


def test_time_budget_stops_the_training(data):
    (X, y), _ = data
    est = ConvNet("convnetjs", time_budget_s=1e-9, **dict(TINY["convnetjs"], epochs=50))
    est.fit(X[:64], y[:64])
    assert est.stopped_by_budget_ and est.epochs_run_ == 1
    assert est.train_seconds_ > 0


def test_resnet_small_network_shapes():
    net = build_network("resnet-small", 10, 32, (8, 16, 24))
    x = torch.zeros(3, 3, 32, 32)
    assert net(x).shape == (3, 10)
    assert net.features(x).shape == (3, 24)
    assert net.stages[0].conv.in_channels == 4  # the stem has widths[0] // 2 channels
    # every stage has its residual block and halves the side
    assert [s.res[1][0].out_channels for s in net.stages] == [8, 16, 24]
    assert net.stages(net.stem(x)).shape == (3, 24, 4, 4)
    js = build_network("convnetjs", 10, 32, (16, 20, 20))
    assert js.features(x).shape == (3, 320)  # the demo's 4 x 4 x 20 map


def test_resnet_small_smooths_labels_and_averages_the_flip(data, monkeypatch):
    (X, y), (Xt, _) = data
    calls = []
    original = F.cross_entropy

    def spy(logits, target, *args, **kwargs):
        loss = original(logits, target, *args, **kwargs)
        calls.append((logits.detach().clone(), target.clone(), kwargs.get("label_smoothing"),
                      loss.detach().clone()))
        return loss

    monkeypatch.setattr(convnet_module.F, "cross_entropy", spy)
    est = ConvNet("resnet-small", **TINY["resnet-small"]).fit(X, y)
    assert calls and {c[2] for c in calls} == {0.2}
    # the loss is the label-smoothed cross-entropy, by its formula
    logits, target, eps, loss = calls[0]
    logp = torch.log_softmax(logits, dim=1)
    k = logits.shape[1]
    q = torch.full_like(logp, eps / k)
    q[torch.arange(len(target)), target] += 1 - eps
    assert loss.item() == pytest.approx(-(q * logp).sum(1).mean().item(), rel=1e-5)
    # test-time augmentation: the mean of the logits of x and of its mirror image
    net = est.network()
    with torch.inference_mode():
        x = est.preprocess(Xt)
        plain, mirrored = net(x), net(x.flip(3))
    tta = est.logits(Xt)
    np.testing.assert_allclose(tta, (0.5 * (plain + mirrored)).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(tta, plain.numpy(), atol=1e-4)
    np.testing.assert_array_equal(est.predict(Xt), est.classes_[tta.argmax(1)])
    # convnetjs trains without smoothing and predicts without the flip
    calls.clear()
    js = ConvNet("convnetjs", **dict(TINY["convnetjs"], epochs=1)).fit(X[:32], y[:32])
    assert {c[2] for c in calls} == {0.0}
    np.testing.assert_array_equal(js.logits(Xt), js.logits(Xt, tta=False))


def test_resnet_small_trains_on_8_px_with_a_batch_left_over():
    # 8 px: the last stage is 1 x 1, where batch norm needs two images; 9 = 4 + 4 + 1
    X, y = quadrant_images(9, side=8, seed=2)
    est = ConvNet("resnet-small", size=8, epochs=1, batch_size=4, widths=(2, 2, 2),
                  device="cpu").fit(X, y)
    assert est.transform(X).shape == (9, 2)


def test_labels_are_required(data):
    (X, y), _ = data
    with pytest.raises(ValueError, match=r"trains on labels"):
        ConvNet("convnetjs", **TINY["convnetjs"]).fit(X)
    with pytest.raises(ValueError, match=r"at least 2 classes"):
        ConvNet("convnetjs", **TINY["convnetjs"]).fit(X[:10], np.zeros(10))


def test_images_of_another_size_are_resized_to_size(data):
    (X, y), _ = data  # 16 px images, a 32 px network
    est = ConvNet("convnetjs", epochs=1, batch_size=32, widths=(4, 4, 4), device="cpu")
    est.fit(X[:64], y[:64])
    assert est.transform(X[:5]).shape == (5, 4 * 4 * 4)  # 32 px halved three times
    # the network reads the bilinear upscaling (torch's), rounded to uint8, normalized
    up = F.interpolate(torch.from_numpy(X[:5]).permute(0, 3, 1, 2).float(), size=(32, 32),
                       mode="bilinear", align_corners=False).round().clamp(0, 255)
    mean = torch.from_numpy(est.input_mean_).view(1, 3, 1, 1)
    std = torch.from_numpy(est.input_std_).view(1, 3, 1, 1)
    torch.testing.assert_close(est.preprocess(X[:5]), (up / 255.0 - mean) / std)
