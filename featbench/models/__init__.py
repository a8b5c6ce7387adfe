"""Backbones: one :class:`ModelSpec` per model, one module per source.

A spec carries how a backbone is built, where its weights come from, its evaluation
transform (:class:`EvalTransform`) and its metadata, in the spirit of torchvision's
``Weights`` and timm's ``pretrained_cfg``. Sources (modules of this package):

``torchvision`` (``torchvision:<model>``, alias ``cnn:<model>``), ``lite``
(``cnn:efficientnet-lite0`` ... ``-lite2``), ``timm`` (``timm:<arch>``), ``open_clip``
(``open_clip:<arch>/<tag>``), ``hf`` (``hf:<repo id or folder>``) and ``file``
(``file:<path>``: TorchScript, or a state dict with ``arch``).

This package imports no torch; a source's library is imported when a spec of that
source is resolved (:func:`resolve`) or loaded (:meth:`ModelSpec.load`).
"""

from __future__ import annotations

from .registry import (
    FAMILIES,
    SOURCES,
    label,
    missing_weights,
    model_name,
    parse,
    resolve,
    source_of,
)
from .spec import EvalTransform, LoadedModel, ModelSpec

__all__ = ["FAMILIES", "SOURCES", "EvalTransform", "LoadedModel", "ModelSpec", "label",
           "missing_weights", "model_name", "parse", "resolve", "source_of"]
