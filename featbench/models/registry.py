"""Names -> :class:`~featbench.models.spec.ModelSpec`, one source module per prefix.

A command-line name is ``<family>:<argument>``; :func:`model_name` turns it into the
name the ``cnn:<model>`` extractor holds, and :func:`resolve` that name (with the
weights asked for) into a spec. Nothing here imports torch; each source's library is
imported when its spec is resolved.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ParameterError, UnknownNameError
from ..features.models import LITE_MODELS
from .spec import ModelSpec

#: prefix of the extractor's model name -> source module (others: torchvision, Lite)
PREFIXES = {"timm/": "timm", "open_clip/": "open_clip", "hf/": "hf", "file/": "file"}
#: command-line families that name a backbone; ``cnn`` and ``torchvision`` are one source
FAMILIES = ("cnn", "torchvision", "timm", "open_clip", "hf", "file")
#: every source module of this package
SOURCES = ("torchvision", "lite", "timm", "open_clip", "hf", "file")


def source_of(model: str) -> tuple[str, str]:
    """``(source module, its own name of the model)`` of an extractor's model name."""
    for prefix, source in PREFIXES.items():
        if model.startswith(prefix):
            return source, model[len(prefix):]
    return ("lite" if model in LITE_MODELS else "torchvision"), model


def label(model: str) -> str:
    """The command-line name of the extractor's ``model`` (``timm/x`` -> ``timm:x``,
    ``resnet18`` -> ``cnn:resnet18``)."""
    source, name = source_of(model)
    return f"{source}:{name}" if source in PREFIXES.values() else f"cnn:{name}"


def _module(source: str):
    return importlib.import_module(f"{__package__}.{source}")


def resolve(model: str, weights: str | None = "DEFAULT", arch: str | None = None
            ) -> ModelSpec:
    """The spec of the extractor's ``model`` with ``weights`` (None: random init).

    Parameters
    ----------
    model : str
        ``resnet18``, ``efficientnet-lite0``, ``timm/<arch>``, ``open_clip/<arch>``,
        ``hf/<repo or folder>`` or ``file/<path>``.
    weights : str or None
        ``DEFAULT``, a source's weights name or tag, or None.
    arch : str, optional
        ``file/<path>`` only: the architecture of a state-dict file.
    """
    source, name = source_of(model)
    if arch and source != "file":
        raise ParameterError(f"arch is for file:<path> models only (cnn:{model} has "
                             f"arch={arch!r})")
    if source == "file":
        return _module("file").spec(name, weights, arch)
    return _module(source).spec(name, weights)


def missing_weights(model: str, weights: str | None = "DEFAULT",
                    weights_path: str | None = None, arch: str | None = None) -> str | None:
    """Why the weights of a backbone are not on this machine, without loading them; None
    when they are, when they are random, or for the sources whose cache is not looked
    into here (timm, OpenCLIP, a Hugging Face repo id: tried when loaded)."""
    import importlib.util
    from pathlib import Path

    if weights_path:
        return None if Path(weights_path).expanduser().is_file() else \
            f"weights file {weights_path} not found"
    source, name = source_of(model)
    if source == "file":
        path = Path(name).expanduser()
        return None if path.is_file() else f"model file {path} not found"
    if weights is None or source in ("timm", "open_clip", "hf"):
        return None
    spec = resolve(model, weights, arch)
    if source == "lite":
        package = spec.metadata["package"]
        return None if importlib.util.find_spec(package) else \
            f"the package {package.replace('_', '-')} is not installed"
    return None if Path(spec.weights_location).is_file() else \
        f"{spec.weights} not present at {spec.weights_location}"


def parse(family: str, arg: str) -> tuple[str, dict[str, Any]]:
    """``(model, params)`` of the command-line name ``<family>:<arg>``: the extractor's
    model name and the parameters the name sets (``open_clip:RN50/openai`` ->
    ``("open_clip/RN50", {"weights": "openai"})``); an unknown model raises with the
    closest names."""
    if family == "cnn":
        source, name = source_of(arg)
        if source not in ("torchvision", "lite"):
            return parse(source, name)
        if source == "torchvision":
            _module("torchvision").check(name)
        return arg, {}
    if family == "torchvision":
        _module("torchvision").check(arg)
        return arg, {}
    if family == "timm":
        _module("timm").import_timm(arg)
        return "timm/" + arg, {}
    if family == "open_clip":  # open_clip:<architecture>[/<pretrained tag>]
        arch, _, tag = arg.partition("/")
        _module("open_clip").import_open_clip(arch)
        return "open_clip/" + arch, ({"weights": tag} if tag else {})
    if family == "hf":
        return "hf/" + arg, {}
    if family == "file":
        return "file/" + arg, {}
    raise UnknownNameError(f"unknown model family {family!r}; families: "
                           f"{', '.join(f + ':<name>' for f in FAMILIES)}")


def model_name(name: str) -> str:
    """The extractor's model name of a backbone name given as a parameter (``arch``):
    ``resnet18``, ``cnn:resnet18``, ``torchvision:resnet18``, ``timm:resnet18``, ..."""
    family, sep, arg = name.partition(":")
    if not sep:
        family, arg = "cnn", name
    model, params = parse(family, arg)
    if params:
        raise ParameterError(f"arch={name!r}: give the architecture only (no tag)")
    return model
