"""torchvision's classification models (``torchvision:<model>``, alias ``cnn:<model>``).

Weights are torchvision's ``Weights`` enum members (``DEFAULT``, ``IMAGENET1K_V1``,
...), read from ``$TORCH_HOME/hub/checkpoints/<file>`` (downloaded there when there is a
network) with ``weights_only=True``; their ``transforms()`` give the evaluation
transform. Layers are torchvision's FX graph nodes.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import DataError, ParameterError, UnknownNameError
from ..features.models import list_models, torchvision_models
from ._common import load_into, seeded_init, state_dict_from_file
from .spec import EvalTransform, LoadedModel, ModelSpec

if TYPE_CHECKING:
    from torch import nn


def check(arch: str) -> None:
    """An unknown model name is an error listing the closest ``cnn:`` names."""
    if arch not in torchvision_models():
        close = difflib.get_close_matches(arch, list_models(), n=3)
        hint = f" Did you mean {', '.join('cnn:' + c for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown CNN model {arch!r}.{hint} "
                               f"See `featbench list features` for every model.")


def weights_enum(name: str, weights: str | None):
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


def weights_file(weights) -> Path:
    """Where torchvision looks for ``weights`` (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def spec(arch: str, weights: str | None = "DEFAULT") -> ModelSpec:
    """The spec of torchvision model ``arch`` with ``weights``: the weights' own
    ``transforms()`` (crop size, resize, mean, std, interpolation); random weights:
    224 px, crop fraction 0.875, ImageNet mean/std, bilinear."""
    check(arch)
    w = weights_enum(arch, weights)
    transform, location, meta = EvalTransform(), "", {}
    if w is not None:
        t = w.transforms()
        size = int(t.crop_size[0])
        mode = getattr(getattr(t, "interpolation", None), "value", "bilinear")
        transform = EvalTransform(size, tuple(t.mean), tuple(t.std),
                                  size / float(t.resize_size[0]),
                                  "bicubic" if mode == "bicubic" else "bilinear")
        location = str(weights_file(w))
        meta = {"weights": str(w), "url": w.url,
                **{k: w.meta[k] for k in ("num_params", "recipe", "license") if k in w.meta}}
    return ModelSpec(arch, "torchvision", arch, None if w is None else str(w), transform,
                     location, None, "penultimate", "fx", meta)


def pretrained_kwargs(name: str, weights) -> dict[str, Any]:
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


def load_pretrained(name: str, model: nn.Module, state: dict, source: str) -> None:
    """Load torchvision's ``state`` into ``model`` as its builder does: DenseNet's old
    key names renamed, GoogLeNet's untrained auxiliary heads dropped afterwards."""
    if name.startswith("densenet"):
        old = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|"
                         r"running_mean|running_var))$")
        for key in list(state):  # in place: the dict's _metadata (versions) stays
            if m := old.match(key):
                state[m.group(1) + m.group(2)] = state.pop(key)
    load_into(model, state, source)
    if name == "googlenet":  # the builder's default aux_logits=False
        model.aux_logits = False
        model.aux1 = model.aux2 = None


def build(arch: str, random_state: int | None) -> nn.Module:
    """Model ``arch`` randomly initialized (seeded)."""
    from torchvision.models import get_model

    return seeded_init(lambda: get_model(arch, weights=None), random_state)


def load(spec: ModelSpec, weights_path: str | None, random_state: int | None) -> LoadedModel:
    """Build ``spec``'s model: random (seeded), from ``weights_path``, or with
    torchvision's weights read from ``$TORCH_HOME/hub/checkpoints``."""
    import torch
    from torchvision.models import get_model

    name = spec.arch
    w = weights_enum(name, spec.weights)
    if weights_path:
        model = build(name, random_state)
        load_into(model, state_dict_from_file(weights_path), str(weights_path))
        label = f"file:{weights_path}"
    elif w is None:
        model = build(name, random_state)
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
        model = get_model(name, weights=None, **pretrained_kwargs(name, w))
        load_pretrained(name, model, state, str(target))
        label = str(w)
    return LoadedModel.of(spec, model.eval(), label)
