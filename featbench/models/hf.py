"""Hugging Face transformers vision models (``hf:<repo id or local folder>``):
``AutoModel`` and ``AutoImageProcessor``, the features the model's pooled output
(``pooler_output``; the mean of its last hidden states where it has no pooler). A repo
id is read from the Hugging Face cache (``$HF_HOME/hub``); a folder is what
``save_pretrained`` wrote. Layers: ``named_modules()`` of the ``AutoModel``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import DataError, ParameterError
from ._common import first_line, load_into, seeded_init, state_dict_from_file
from .spec import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, LoadedModel, ModelSpec

#: model names of the Hugging Face source: ``hf/<repo id or local folder>``
PREFIX = "hf/"


def processor(source: str):
    """The checkpoint's image processor (its preprocessing configuration)."""
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


def config(source: str) -> dict[str, Any]:
    """Input size, mean, std, interpolation and crop fraction of a Hugging Face
    checkpoint's image processor."""
    proc = processor(source)

    def side(d) -> int | None:
        if d is None:
            return None
        get = d.get if isinstance(d, dict) else (lambda k: getattr(d, k, None))
        return get("height") or get("shortest_edge")

    sizes = getattr(proc, "size", None)
    resize = side(sizes) or 224
    # {"height", "width"}: the whole image resized (ViT); {"shortest_edge"}: the short side
    squash = bool(sizes is not None and side(sizes) is not None and not (
        sizes.get("shortest_edge") if isinstance(sizes, dict)
        else getattr(sizes, "shortest_edge", None)))
    crop = side(getattr(proc, "crop_size", None)) if getattr(proc, "do_center_crop", False) \
        else None
    size = int(crop or resize)
    resample = int(getattr(proc, "resample", 2) or 2)
    return {"size": size, "mean": tuple(getattr(proc, "image_mean", None) or IMAGENET_MEAN),
            "std": tuple(getattr(proc, "image_std", None) or IMAGENET_STD),
            "crop_pct": size / float(resize) if crop else 1.0,
            "interpolation": "bicubic" if resample == 3 else "bilinear",
            "resize_mode": "squash" if squash and not crop else "shortest"}


def spec(source: str, weights: str | None = "DEFAULT") -> ModelSpec:
    """The spec of ``hf:<source>`` (its image processor's transform)."""
    cfg = config(source)
    t = EvalTransform(cfg["size"], cfg["mean"], cfg["std"], cfg["crop_pct"],
                      cfg["interpolation"], cfg["resize_mode"])
    from .timm import hub_cache

    return ModelSpec(PREFIX + source, "hf", source, weights, t,
                     f"{source} (a folder, or a repo in {hub_cache()})", None, "output",
                     "modules", {})


class HFPooled(nn.Module):
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


def load(spec: ModelSpec, weights_path: str | None, random_state: int | None) -> LoadedModel:
    """``AutoModel`` of a repo id or a local folder: its own weights (``DEFAULT``) or a
    seeded random initialization from its configuration (``none``)."""
    from transformers import AutoConfig, AutoModel

    source, weights = spec.arch, spec.weights
    if weights is None or weights_path:
        config_ = AutoConfig.from_pretrained(source)
        model = seeded_init(lambda: AutoModel.from_config(config_), random_state)
        if weights_path:
            load_into(model, state_dict_from_file(weights_path), str(weights_path))
        label = f"file:{weights_path}" if weights_path else "random"
    else:
        if str(weights).upper() != "DEFAULT":
            raise ParameterError(f"hf:{source} has weights DEFAULT (the checkpoint's) only, "
                                 f"or none, or weights_path")
        try:
            model = AutoModel.from_pretrained(source)
        except Exception as exc:  # noqa: BLE001 - missing files, no network
            from .timm import hub_cache

            raise DataError(
                f"hf:{source}: cannot load its weights ({first_line(exc)}). A local folder "
                f"needs the files save_pretrained writes (config.json, model.safetensors); "
                f"a repo id is read from the Hugging Face cache ({hub_cache()}; "
                f"$HF_HOME/hub), downloaded when there is a network; or pass "
                f"-p hf:{source}.weights_path=FILE or weights=none") from None
        label = f"hf:{source}"
    model = model.eval()
    return LoadedModel.of(spec, HFPooled(model), label, tap_root=model)
