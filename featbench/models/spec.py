"""What a backbone is, without importing torch: its evaluation transform, where its
weights come from and how to build it (:class:`ModelSpec`), in the spirit of
torchvision's ``Weights`` and timm's ``pretrained_cfg``; and the model once built
(:class:`LoadedModel`)."""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class EvalTransform:
    """A backbone's evaluation transform on a photo: short side resized to
    :attr:`resize` with ``interpolation`` and center crop ``size`` x ``size``
    (``resize_mode="shortest"``), or the whole image resized to ``size`` x ``size``
    (``"squash"``); scaled to [0, 1], then ``(x - mean) / std`` per channel."""

    size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    #: "shortest" (resize the short side, center crop) or "squash" (whole image)
    resize_mode: str = "shortest"
    #: how ``size / crop_pct`` becomes pixels: "round" (torchvision's sizes are exact),
    #: or "floor" (timm's ``transforms_imagenet_eval``)
    rounding: str = "round"

    @property
    def resize(self) -> int:
        """The short side before the center crop (``size`` when squashing)."""
        if self.resize_mode == "squash":
            return int(self.size)
        ratio = self.size / self.crop_pct
        return int(math.floor(ratio + 1e-9) if self.rounding == "floor" else round(ratio))

    def replace(self, **changes: Any) -> EvalTransform:
        """This transform with the given fields changed (None: kept)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class ModelSpec:
    """One backbone: its source, architecture, weights and evaluation transform.

    Attributes
    ----------
    model : str
        The name the ``cnn:<model>`` extractor holds (``resnet18``, ``timm/resnet18``,
        ``open_clip/RN50``, ``hf/<repo or folder>``, ``file/<path>``).
    source : str
        The module of :mod:`featbench.models` that builds it (``torchvision``,
        ``lite``, ``timm``, ``open_clip``, ``hf``, ``file``).
    arch : str
        The architecture in its library's own naming.
    weights : str or None
        The weights asked for (``DEFAULT``, a tag, ...); None: random initialization.
    transform : EvalTransform
        The evaluation transform of those weights (random weights: the architecture's).
    weights_location : str
        Where the weights are looked for (a file, a cache folder and repo id, a package).
    embedding_dim : int or None
        The width of the features where known without building the model.
    head : {"penultimate", "output"}
        What the features are: the input of the last linear layer, or the output of the
        built module itself (already pooled, or pooled globally).
    taps : {"fx", "modules", "none"}
        How ``layer`` names are read: torchvision's FX graph nodes, the modules of
        ``named_modules()`` (a forward hook), or none (TorchScript).
    metadata : dict
        Anything else the library says (tag, license, ...).
    """

    model: str
    source: str
    arch: str
    weights: str | None
    transform: EvalTransform
    weights_location: str = ""
    embedding_dim: int | None = None
    head: str = "penultimate"
    taps: str = "fx"
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def load(self, weights_path: str | None = None, random_state: int | None = 0
             ) -> LoadedModel:
        """Build the model with its weights (or ``weights_path``), in eval mode, on the CPU
        (imports the source's library)."""
        module = importlib.import_module(f"{__package__}.{self.source}")
        return module.load(self, weights_path, random_state)


@dataclass
class LoadedModel:
    """A model in eval mode and what its weights expect.

    ``model`` returns what :attr:`ModelSpec.head` says; ``tap_root`` is the module whose
    ``named_modules()`` name the layers a ``layer`` tap may read (None: ``model``), and
    ``call`` how ``tap_root``'s forward is run on a batch (None: ``tap_root(x)``).
    """

    model: nn.Module
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str
    interpolation: str = "bilinear"
    tap_root: nn.Module | None = None

    def preprocess(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """uint8 ``(n, h, w, 3)`` -> normalized float ``(n, 3, size, size)``, channels-last."""
        import torch
        import torch.nn.functional as F

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

    @classmethod
    def of(cls, spec: ModelSpec, model: nn.Module, label: str,
           tap_root: nn.Module | None = None) -> LoadedModel:
        """``model`` with ``spec``'s transform."""
        t = spec.transform
        return cls(model, t.size, tuple(t.mean), tuple(t.std), label, t.interpolation,
                   tap_root)
