"""timm's models (``timm:<architecture>``): ``timm.create_model(name, pretrained=...,
num_classes=0)`` (its output: the pooled pre-logits features), the evaluation transform
of the weights' ``pretrained_cfg`` (``timm.data.resolve_data_config``), pretrained
weights from the Hugging Face cache (``$HF_HOME/hub``). Layers: ``named_modules()``.
"""

from __future__ import annotations

from typing import Any

from ..errors import DataError, ParameterError
from ._common import first_line, import_source, load_into, seeded_init, state_dict_from_file
from .spec import EvalTransform, LoadedModel, ModelSpec

#: model names of the timm source: ``timm/<architecture>`` (``-f timm:<architecture>``)
PREFIX = "timm/"


def import_timm(arch: str):
    """timm, after checking that it knows ``arch``."""
    return import_source("timm", arch, "timm", "timm", "timm")


def hub_cache() -> str:
    """The Hugging Face hub cache folder (``$HF_HOME/hub``)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return "$HF_HOME/hub"
    return str(HF_HUB_CACHE)


def config(arch: str, weights: str | None = "DEFAULT") -> dict[str, Any]:
    """timm's evaluation transform of ``arch`` with ``weights`` (``DEFAULT``: the
    architecture's default tag; a tag such as ``a1_in1k``), read without building the
    model by ``timm.data.resolve_data_config``. Random weights take the default tag's
    (the evaluation transform the architecture is made for)."""
    timm = import_timm(arch)
    from timm.data import resolve_data_config

    tag = arch if weights is None or str(weights).upper() == "DEFAULT" else f"{arch}.{weights}"
    cfg = timm.models.get_pretrained_cfg(tag)
    if cfg is None:
        raise ParameterError(f"timm:{arch} has no pretrained weights {weights!r} (timm "
                             f"lists its tags: timm.list_pretrained('{arch}*'))")
    data = resolve_data_config(pretrained_cfg=cfg.to_dict())
    return {"tag": tag, "size": int(data["input_size"][-1]), "mean": tuple(data["mean"]),
            "std": tuple(data["std"]), "crop_pct": float(data["crop_pct"]),
            "interpolation": "bicubic" if data["interpolation"] == "bicubic" else "bilinear",
            "resize_mode": "squash" if data.get("crop_mode") == "squash" else "shortest",
            "hf_hub_id": cfg.hf_hub_id, "license": getattr(cfg, "license", None)}


def spec(arch: str, weights: str | None = "DEFAULT") -> ModelSpec:
    """The spec of ``timm:<arch>`` (its pretrained configuration)."""
    cfg = config(arch, weights)
    t = EvalTransform(cfg["size"], cfg["mean"], cfg["std"], cfg["crop_pct"],
                      cfg["interpolation"], cfg["resize_mode"], "floor")
    where = f"{hub_cache()} (Hugging Face repo {cfg['hf_hub_id'] or cfg['tag']})"
    return ModelSpec(PREFIX + arch, "timm", arch, weights, t, where, None, "output",
                     "modules", {"tag": cfg["tag"], "license": cfg["license"],
                                 "hf_hub_id": cfg["hf_hub_id"]})


def build(arch: str, random_state: int | None, pretrained: bool = False, tag: str = ""):
    """``timm.create_model(tag or arch, pretrained=..., num_classes=0)``; random weights
    are drawn (seeded) with the classifier in place, as ``timm.create_model(arch)`` draws
    them, and the classifier is then removed (``reset_classifier(0)``)."""
    timm = import_timm(arch)
    if pretrained:
        return timm.create_model(tag or arch, pretrained=True, num_classes=0)
    return seeded_init(lambda: timm.create_model(tag or arch), random_state)


def load_file(model, path: str) -> None:
    """A state dict saved from the model with its classifier or without one
    (``num_classes=0``); the classifier is removed afterwards."""
    state = state_dict_from_file(path)
    own = model.state_dict()
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    head_keys = [k for k in own if any(k.startswith(h + ".") for h in heads)]
    if head_keys and not any(k in state for k in head_keys):
        model.reset_classifier(0)  # saved without its classifier
    load_into(model, state, str(path))


def load(spec: ModelSpec, weights_path: str | None, random_state: int | None) -> LoadedModel:
    """A timm model without its classifier (features: its pooled pre-logits), pretrained
    weights from timm's Hugging Face cache, its evaluation transform."""
    arch, weights = spec.arch, spec.weights
    tag = spec.metadata.get("tag") or arch
    pretrained = weights is not None and not weights_path
    try:
        model = build(arch, random_state, pretrained, tag)
    except Exception as exc:  # noqa: BLE001 - download or file errors
        if not pretrained:
            raise
        repo = spec.metadata.get("hf_hub_id") or tag
        raise DataError(
            f"pretrained weights {tag} for timm:{arch} could not be loaded "
            f"({first_line(exc)}). timm reads them from the "
            f"Hugging Face cache ({hub_cache()}; $HF_HOME/hub), repo {repo}, "
            f"downloading them when there is a network (huggingface-cli download {repo} "
            f"on a machine that has one, then copy the cache folder); or pass "
            f"-p timm:{arch}.weights_path=FILE or -p timm:{arch}.weights=none") from None
    if weights_path:
        load_file(model, weights_path)
        label = f"file:{weights_path}"
    else:
        label = f"timm:{tag}" if pretrained else "random"
    model.reset_classifier(0)  # features: the pooled pre-logits
    return LoadedModel.of(spec, model.eval(), label)
