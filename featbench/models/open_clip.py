"""OpenCLIP's image towers (``open_clip:<architecture>/<pretrained tag>``): the output of
``model.visual`` (the image embedding CLIP's linear probes read), preprocessed as
OpenCLIP's own ``preprocess_cfg`` says (resize the short side, center crop, bicubic,
CLIP's mean and std). Pretrained weights from the Hugging Face cache
(``$HF_HOME/hub``) or ``~/.cache/clip``. Layers: ``named_modules()`` of the tower.
"""

from __future__ import annotations

from typing import Any

from ..errors import DataError, ParameterError
from ._common import first_line, import_source, load_into, seeded_init, state_dict_from_file
from .spec import EvalTransform, LoadedModel, ModelSpec

#: model names of the OpenCLIP source: ``open_clip/<architecture>`` (the image tower)
PREFIX = "open_clip/"
#: CLIP's normalization (OpenCLIP's default preprocessing)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def import_open_clip(arch: str):
    """open_clip, after checking that it knows ``arch``."""
    return import_source("open_clip", arch, "open_clip", "open_clip_torch", "clip")


def config(arch: str, tag: str | None = None) -> dict[str, Any]:
    """Input size and preprocessing of OpenCLIP's image tower ``arch`` with pretrained
    ``tag``: the image size of its model configuration, the mean, std and interpolation
    of the tag's pretrained configuration (CLIP's without a tag), as
    ``open_clip.create_model_and_transforms`` sets them; short side resized, center crop."""
    open_clip = import_open_clip(arch)
    cfg = open_clip.get_model_config(arch)
    image_size = cfg["vision_cfg"].get("image_size", 224)
    size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
    pre = (open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    mode = pre.get("interpolation") or "bicubic"
    return {"size": size, "mean": tuple(pre.get("mean") or CLIP_MEAN),
            "std": tuple(pre.get("std") or CLIP_STD), "crop_pct": 1.0,
            "interpolation": "bicubic" if mode == "bicubic" else "bilinear",
            "embed_dim": cfg.get("embed_dim"), "hf_hub": pre.get("hf_hub"),
            "resize_mode": "squash" if pre.get("resize_mode") == "squash" else "shortest"}


def spec(arch: str, weights: str | None = "DEFAULT") -> ModelSpec:
    """The spec of ``open_clip:<arch>/<weights>`` (``weights``: a pretrained tag)."""
    tag = None if weights is None or str(weights).upper() == "DEFAULT" else str(weights)
    cfg = config(arch, tag)
    t = EvalTransform(cfg["size"], cfg["mean"], cfg["std"], cfg["crop_pct"],
                      cfg["interpolation"], cfg["resize_mode"])
    from .timm import hub_cache

    return ModelSpec(PREFIX + arch, "open_clip", arch, weights, t,
                     f"{hub_cache()} or ~/.cache/clip", cfg["embed_dim"], "output", "modules",
                     {"tag": tag, "hf_hub": cfg["hf_hub"]})


def load(spec: ModelSpec, weights_path: str | None, random_state: int | None) -> LoadedModel:
    """OpenCLIP's image tower with the pretrained tag ``weights`` (e.g. ``openai``,
    ``laion2b_s34b_b79k``), ``weights_path`` (a state dict of the whole CLIP model) or
    random weights."""
    arch = spec.arch
    open_clip = import_open_clip(arch)
    tag = None if spec.weights is None or weights_path else str(spec.weights)
    if tag is not None and tag.upper() == "DEFAULT":
        tags = ", ".join(t for a, t in open_clip.list_pretrained() if a == arch) or "none"
        raise ParameterError(f"open_clip:{arch} needs a pretrained tag: "
                             f"open_clip:{arch}/<tag> (tags: {tags}), or weights=none")
    try:
        model = seeded_init(lambda: open_clip.create_model(arch, pretrained=tag),
                            random_state)
    except Exception as exc:  # noqa: BLE001 - download or file errors
        if tag is None:
            raise
        from .timm import hub_cache

        repo = (spec.metadata.get("hf_hub") or "").rstrip("/")
        where = f", repo {repo}" if repo else ""
        raise DataError(
            f"pretrained weights {tag} for open_clip:{arch} could not be loaded "
            f"({first_line(exc)}). OpenCLIP reads them from "
            f"the Hugging Face cache ({hub_cache()}; $HF_HOME/hub){where} or "
            f"~/.cache/clip, downloading them when there is a network; or pass "
            f"-p open_clip:{arch}.weights_path=FILE or weights=none") from None
    if weights_path:
        load_into(model, state_dict_from_file(weights_path), str(weights_path))
    label = f"file:{weights_path}" if weights_path else \
        (f"open_clip:{tag}" if tag else "random")
    return LoadedModel.of(spec, model.visual.eval(), label)
