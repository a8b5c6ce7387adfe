"""A local model file (``file:<path>``): a TorchScript archive (``torch.jit.save``;
features: its forward output, globally pooled when it is a map) or a state dict of an
architecture given as ``arch`` (``resnet18``, ``timm:resnet18``, ...; features: what
that architecture's source gives). The evaluation transform is given as parameters
(``size``, ``mean``, ``std``, ``crop_pct``, ``interpolation``): defaults 224 px,
ImageNet mean/std, crop fraction 0.875, bilinear (with ``arch``: the architecture's).

A TorchScript file is code (restricted to TorchScript, but more than weights): load
only files you trust. A state dict is read with ``weights_only=True``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import DataError, ParameterError
from .spec import EvalTransform, LoadedModel, ModelSpec

#: model names of the file source: ``file/<path>`` (``-f file:<path>``)
PREFIX = "file/"


def model_file(path: str) -> Path:
    """The file ``path`` names; a missing one is a one-line error naming it."""
    p = Path(path).expanduser()
    if not p.is_file():
        why = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise DataError(f"model file {p} {why} (file:{path}): save the TorchScript "
                        f"(torch.jit.save) or state-dict (torch.save) file there")
    return p


def spec(path: str, weights: str | None = "DEFAULT", arch: str | None = None) -> ModelSpec:
    """The spec of ``file:<path>``: TorchScript, or a state dict of ``arch``."""
    p = model_file(path)
    if not arch:
        if weights is None:
            raise ParameterError(f"file:{path} is a TorchScript file with its own weights: "
                                 f"weights=none needs -p file:{path}.arch=ARCH")
        return ModelSpec(PREFIX + path, "file", "", "DEFAULT", EvalTransform(), str(p), None,
                         "output", "none", {"format": "torchscript"})
    from .registry import model_name, resolve

    inner = model_name(str(arch))
    if inner.startswith(PREFIX):
        raise ParameterError(f"-p file:{path}.arch={arch}: an architecture name, e.g. "
                             f"resnet18 or timm:resnet18")
    base = resolve(inner, None)
    return ModelSpec(PREFIX + path, "file", inner, weights, base.transform, str(p),
                     base.embedding_dim, base.head, base.taps,
                     {"format": "state_dict", "arch": inner, "arch_source": base.source})


def load(spec: ModelSpec, weights_path: str | None, random_state: int | None) -> LoadedModel:
    """The TorchScript module, or ``arch`` with the file's state dict (``weights=none``:
    random weights, seeded)."""
    import torch

    path = model_file(spec.model[len(PREFIX):])
    if weights_path:
        raise ParameterError(f"file:{spec.model[len(PREFIX):]} is itself the weights; "
                             f"weights_path does not apply")
    if spec.metadata.get("format") == "torchscript":
        try:
            with warnings.catch_warnings():  # (torch 2.9+: TorchScript is deprecated)
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - not a TorchScript archive
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise DataError(f"cannot load {path} as TorchScript ({first}); a state-dict file "
                            f"needs its architecture: -p file:{spec.model[len(PREFIX):]}"
                            f".arch=ARCH (e.g. resnet18, timm:resnet18)") from None
        return LoadedModel.of(spec, model.eval(), f"file:{path}")
    from .registry import resolve

    base = resolve(spec.arch, None)
    loaded = base.load(None if spec.weights is None else str(path), random_state)
    label = "random" if spec.weights is None else f"file:{path}"
    return LoadedModel.of(spec, loaded.model, label, loaded.tap_root)
