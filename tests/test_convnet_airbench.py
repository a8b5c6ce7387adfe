"""``convnet:airbench``: airbench94's network and training recipe (Jordan 2024).

The references are computed here, independently of featbench's code: the whitening
filters from a NumPy eigendecomposition of patch covariances gathered by loops, the
test-time augmentation from views cut by hand, the lookahead and the optimizer step
from airbench's own formulas, the schedule from its piecewise-linear definition.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from featbench.errors import ParameterError
from featbench.features import convnet as convnet_module
from featbench.features.convnet import ConvNet, lookahead_decay, lookahead_update, lr_factor
from featbench.features.convnet_archs import AirbenchNet

#: small settings: 16 px, few channels, small batches
TINY = dict(size=16, widths=(8, 16, 16), batch_size=32, epochs=2, device="cpu")


def tiles(natural_images: np.ndarray, side: int = 16) -> np.ndarray:
    """Non-overlapping ``side`` x ``side`` tiles of the photographs (real image
    statistics: the patch covariance has well separated eigenvalues)."""
    n, h, w, _ = natural_images.shape
    return np.stack([im[r:r + side, c:c + side] for im in natural_images
                     for r in range(0, h - side + 1, side)
                     for c in range(0, w - side + 1, side)])


def stripe_images(n: int, side: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus a pattern with a random phase: horizontal stripes (class 0), vertical
    stripes (1), a checkerboard (2) or nothing (3). Mirror images and small shifts keep
    the class (what airbench's flips and translations assume)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    X = rng.integers(0, 120, (n, side, side, 3)).astype(np.int64)
    r, c = np.mgrid[:side, :side]
    for i, k in enumerate(y):
        pr, pc = rng.integers(0, 4, 2)
        rows, cols = ((r + pr) // 2) % 2, ((c + pc) // 2) % 2
        pattern = [rows, cols, rows ^ cols, np.zeros_like(r)][k]
        X[i] += 120 * pattern[:, :, None]
    return X.clip(0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def stripes():
    return stripe_images(400, seed=0), stripe_images(200, seed=1)


@pytest.fixture(scope="module")
def trained(stripes):
    (X, y), _ = stripes
    return ConvNet("airbench", **dict(TINY, epochs=4)).fit(X[:128], y[:128])


def test_whitening_filters_are_the_eigenvectors_of_the_patch_covariance(natural_images):
    X = tiles(natural_images)
    y = np.arange(len(X)) % 2
    est = ConvNet("airbench", **dict(TINY, epochs=1)).fit(X, y)
    # the normalized images, by NumPy (channel mean, ddof-1 std of the [0, 1] values)
    x = X.astype(np.float64) / 255.0
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2), ddof=1)
    # every 2x2 patch, flattened in (channel, row, column) order, by loops
    patches = [x[i, r:r + 2, c:c + 2, :].transpose(2, 0, 1).ravel()
               for i in range(len(x)) for r in range(15) for c in range(15)]
    P = np.asarray(patches)
    cov = P.T @ P / len(P)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    # the reference is well defined: distinct eigenvalues
    assert np.min(np.diff(values[::-1]) / values[::-1][1:]) > 1e-3
    expected = (vectors / np.sqrt(values + 5e-4)).T.reshape(12, 3, 2, 2)
    W = est.weights_["whiten.weight"].astype(np.float64)
    assert W.shape == (24, 3, 2, 2)
    for k in range(12):  # each eigenvector up to its sign, then its negative
        sign = np.sign(np.sum(W[k] * expected[k]))
        np.testing.assert_allclose(W[k], sign * expected[k], rtol=2e-4, atol=1e-5)
        np.testing.assert_array_equal(W[12 + k], -W[k])
    # frozen: the training left the filters as initialized (epochs=1 took steps)
    assert est.epochs_run_ == 1


def test_tta_is_airbench_weighted_mirror_and_one_pixel_translations(trained, stripes):
    _, (Xt, _) = stripes
    Xt = Xt[:20]
    net = trained.network()
    x = trained.preprocess(Xt).numpy()
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    views = {"plain": (x, 0.25), "up-left": (padded[:, :, :16, :16], 0.125),
             "down-right": (padded[:, :, 2:, 2:], 0.125)}

    def logits(v: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(np.ascontiguousarray(v))).numpy()

    expected = sum(w * (logits(v) + logits(v[..., ::-1])) for v, w in views.values())
    got = trained.logits(Xt, tta=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # not the plain test-time flip of the other architectures
    flip_only = 0.5 * (logits(x) + logits(x[..., ::-1]))
    assert not np.allclose(got, flip_only, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(trained.logits(Xt, tta=False), logits(x), rtol=1e-5,
                               atol=1e-6)
    # predict uses the recipe's test-time augmentation
    np.testing.assert_array_equal(trained.predict(Xt), trained.classes_[got.argmax(1)])


def test_same_seed_same_weights_another_seed_others(stripes):
    (X, y), (Xt, _) = stripes
    a = ConvNet("airbench", random_state=3, **TINY).fit(X[:96], y[:96])
    b = ConvNet("airbench", random_state=3, **TINY).fit(X[:96], y[:96])
    c = ConvNet("airbench", random_state=4, **TINY).fit(X[:96], y[:96])
    assert a.weights_.keys() == b.weights_.keys()
    for key in a.weights_:
        np.testing.assert_array_equal(a.weights_[key], b.weights_[key])
    np.testing.assert_array_equal(a.logits(Xt), b.logits(Xt))
    assert any(not np.array_equal(a.weights_[k], c.weights_[k]) for k in a.weights_)


def test_airbench_learns_a_simple_pattern(stripes):
    (X, y), (Xt, yt) = stripes
    est = ConvNet("airbench", **dict(TINY, epochs=8, batch_size=64)).fit(X, y)
    assert np.mean(est.predict(Xt) == yt) >= 0.95
    assert est.transform(Xt[:3]).shape == (3, 16)
    # the record's recipe: airbench94's settings, the given ones where given
    assert est.recipe() == {"widths": [8, 16, 16], "epochs": 8, "batch_size": 64,
                            "lr": 11.5, "weight_decay": 0.0153, "momentum": 0.85,
                            "schedule": "airbench", "warmup": 0.23,
                            "label_smoothing": 0.2, "flip": "alternate",
                            "lookahead": True, "tta": True}


def test_fitted_state_round_trip_gives_the_same_network(trained, stripes, tmp_path):
    from featbench.store import FeatureStore

    _, (Xt, _) = stripes
    state = trained.fitted_state()
    assert "net__whiten__weight" in state and "net__groups__0__norm1__running_var" in state
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        loaded = {k: z[k] for k in z.files}
    again = ConvNet("airbench", **TINY).set_fitted_state(loaded)
    np.testing.assert_array_equal(again.transform(Xt), trained.transform(Xt))
    np.testing.assert_array_equal(again.logits(Xt), trained.logits(Xt))
    stored, _ = FeatureStore(tmp_path).save_codebook("a" * 16, state)
    other = ConvNet("airbench", **TINY).set_fitted_state(stored)
    np.testing.assert_array_equal(other.transform(Xt), trained.transform(Xt))


def test_lookahead_update_by_hand():
    w = torch.tensor([1.0, 2.0, -4.0])
    count = torch.tensor(7)
    state = {"w": w, "count": count}
    average = {"w": torch.tensor([0.0, 4.0, 0.0]), "count": torch.tensor(0)}
    lookahead_update(average, state, 0.25)
    # 0.25 * average + 0.75 * value, and the network takes the average
    expected = [0.25 * 0 + 0.75 * 1, 0.25 * 4 + 0.75 * 2, 0.25 * 0 + 0.75 * -4]
    np.testing.assert_allclose(average["w"].numpy(), expected)
    np.testing.assert_allclose(w.numpy(), expected)
    assert int(count) == 7 and int(average["count"]) == 0  # integers left alone
    # decay 1: the network gets the average, the average stays
    w.copy_(torch.tensor([9.0, 9.0, 9.0]))
    lookahead_update(average, state, 1.0)
    np.testing.assert_allclose(w.numpy(), expected)
    # airbench's decay: 0.95**5 (step / total)**3
    assert lookahead_decay(10, 20) == pytest.approx(0.7737809375 * 0.125)
    assert lookahead_decay(20, 20) == pytest.approx(0.7737809375)


def test_training_loop_updates_the_lookahead_every_5_steps(stripes, monkeypatch):
    (X, y), _ = stripes
    decays = []
    real = convnet_module.lookahead_update

    def spy(average, state, decay):
        decays.append(decay)
        real(average, state, decay)

    monkeypatch.setattr(convnet_module, "lookahead_update", spy)
    # 100 images, batch 32, the last partial batch dropped: 3 steps an epoch; 4.5 epochs
    # -> ceil(13.5) = 14 steps
    est = ConvNet("airbench", **dict(TINY, epochs=4.5)).fit(X[:100], y[:100])
    total = 14
    assert decays == [pytest.approx(0.95 ** 5 * (s / total) ** 3) for s in (5, 10)] + [1.0]
    assert est.epochs_run_ == 5
    decays.clear()
    ConvNet("airbench", lookahead=False, **TINY).fit(X[:100], y[:100])
    assert decays == []


def test_airbench_schedule_by_hand():
    # 0.2 -> 1 over the warm-up, then linearly to 0.07
    assert lr_factor("airbench", 0.0, 0.25) == pytest.approx(0.2)
    assert lr_factor("airbench", 0.125, 0.25) == pytest.approx(0.6)
    assert lr_factor("airbench", 0.25, 0.25) == pytest.approx(1.0)
    assert lr_factor("airbench", 0.625, 0.25) == pytest.approx(0.535)
    assert lr_factor("airbench", 1.0, 0.25) == pytest.approx(0.07)


def test_mean_loss_groups_take_airbench_summed_loss_steps():
    """Two SGD steps with :meth:`AirbenchNet.param_groups` on the mean loss equal
    airbench94's own set-up (its main(): decoupled lr and wd, BN biases x64, summed
    loss) on a copy of the network (float64; a weight decay large enough to show)."""
    torch.manual_seed(0)
    ours = AirbenchNet(3, 16, (4, 8, 8)).double()
    theirs = AirbenchNet(3, 16, (4, 8, 8)).double()
    theirs.load_state_dict(ours.state_dict())
    start = ours.fc.weight.detach().clone()
    x, y = torch.randn(6, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    batch, momentum, hyp_lr, hyp_wd = 6, 0.85, 11.5, 3.0
    opt = torch.optim.SGD(ours.param_groups(hyp_lr, hyp_wd, momentum, batch), lr=1.0,
                          momentum=momentum, nesterov=True)
    # airbench94's main(), verbatim in substance
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = hyp_lr / kilostep_scale
    wd = hyp_wd * batch / kilostep_scale
    lr_biases = lr * 64.0
    named = list(theirs.named_parameters())
    norm_biases = [p for k, p in named if "norm" in k and p.requires_grad]
    other = [p for k, p in named if "norm" not in k and p.requires_grad]
    ref = torch.optim.SGD([dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                           dict(params=other, lr=lr, weight_decay=wd / lr)],
                          momentum=momentum, nesterov=True)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(ours(x), y, label_smoothing=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss = torch.nn.functional.cross_entropy(theirs(x), y, label_smoothing=0.2,
                                                 reduction="sum")
        ref.zero_grad()
        loss.backward()
        ref.step()
    for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(),
                           strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=key)
    assert not torch.equal(ours.fc.weight, start)  # the steps moved the weights


def test_alternating_flip_turns_every_image_each_epoch(stripes, monkeypatch):
    (X, y), _ = stripes
    X, y = X[:64], y[:64]
    seen = []
    real = convnet_module.augment

    def spy(x, generator, flip, shift):
        seen.append(x.clone())
        return real(x, generator, flip, shift)

    monkeypatch.setattr(convnet_module, "augment", spy)
    est = ConvNet("airbench", shift=0, **dict(TINY, epochs=3))
    est.fit(X, y)
    plain = est.preprocess(X)
    mirrored = plain.flip(3)
    # each epoch: 2 batches of 32; which image, and whether mirrored, by brute force
    states = []
    for epoch in range(3):
        rows = torch.cat(seen[2 * epoch:2 * epoch + 2])
        state = {}
        for row in rows:
            hit = [(i, False) for i in range(64) if torch.allclose(row, plain[i], atol=1e-5)]
            hit += [(i, True) for i in range(64) if torch.allclose(row, mirrored[i], atol=1e-5)]
            assert len(hit) == 1
            state[hit[0][0]] = hit[0][1]
        assert sorted(state) == list(range(64))
        states.append(state)
    assert 16 <= sum(states[0].values()) <= 48  # about half mirrored at first
    for i in range(64):
        assert states[1][i] != states[0][i] and states[2][i] == states[0][i]


def test_whitening_bias_trains_for_3_epochs_only(stripes, monkeypatch):
    (X, y), _ = stripes
    biases = []
    real = AirbenchNet.start_epoch

    def spy(self, epoch):
        real(self, epoch)
        biases.append((self.whiten.bias.detach().clone(), self.whiten.bias.requires_grad))

    monkeypatch.setattr(AirbenchNet, "start_epoch", spy)
    est = ConvNet("airbench", lookahead=False, **dict(TINY, epochs=5)).fit(X[:64], y[:64])
    assert [g for _, g in biases] == [True, True, True, False, False]
    assert not torch.equal(biases[0][0], biases[1][0])
    assert not torch.equal(biases[2][0], biases[3][0])  # epoch 3's start: after training
    np.testing.assert_array_equal(biases[3][0].numpy(), est.weights_["whiten.bias"])


def test_side_must_leave_a_pixel_per_pooling_after_the_whitening():
    est = ConvNet("airbench", size=8, widths=(4, 4, 4))
    with pytest.raises(ParameterError, match=r"size=8: 3 stages .* at least 9"):
        est.check_plan("convnet:airbench")
    ConvNet("airbench", size=9, widths=(4, 4, 4)).check_plan("convnet:airbench")
    with pytest.raises(ParameterError, match=r"flip=sideways"):
        ConvNet("airbench", flip="sideways").check_plan("convnet:airbench")


def test_command_line_values_of_the_recipe_parameters():
    from featbench.params import parse_params
    from featbench.plan import validate_plan

    good = parse_params(["convnet:airbench.flip=alternate", "convnet:airbench.epochs=9.9",
                         "convnet:airbench.lookahead=false"])
    assert good["convnet:airbench"] == {"flip": "alternate", "epochs": 9.9, "lookahead": False}
    validate_plan(["convnet:airbench"], ["own-head"], good)
    with pytest.raises(ParameterError, match=r"^invalid value convnet:airbench.flip='sideways'"):
        validate_plan(["convnet:airbench"], ["own-head"],
                      parse_params(["convnet:airbench.flip=sideways"]))
