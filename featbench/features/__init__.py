"""Feature extractors and their registry.

``get_extractor("hog")`` builds a registered extractor; ``"hog+color-hist"``
concatenates several in a :class:`sklearn.pipeline.FeatureUnion`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError, UnknownNameError
from ..registry import Registry
from .models import list_models  # noqa: F401 - torch-free: lists torchvision's models once

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

EXTRACTORS = Registry("feature", plugin_group="featbench.extractors")

#: public names of the implementation modules, imported on first use (PEP 562) so that
#: ``featbench list`` and ``describe`` import neither torch nor scikit-learn
_LAZY = {"BagOfVisualWords": ".bovw", "CNNEmbedding": ".cnn", "ColorHistogram": ".color",
         "ConvNet": ".convnet",
         "FisherVector": ".fisher", "HOG": ".hog", "ImageExtractor": ".base",
         "KMeansPatches": ".kmeans_patches", "RawPixels": ".raw", "VLAD": ".vlad",
         "torchvision_models": ".models", "COLOR_SPACES": ".color", "BLOCK_NORMS": ".hog",
         "DESCRIPTORS": ".local", "BACKENDS": ".openvino_backend", "PRECISIONS": "..runtime"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _constraints(name: str):
    """The constraints of extractor ``name``, built on first use (they need scikit-learn's
    constraint classes and the option tuples of the implementation modules)."""

    def declared() -> dict[str, list]:
        from numbers import Integral, Real

        from ..constraints import (
            Interval,
            IntSequence,
            StrOptions,
            non_negative_real,
            positive_int,
            positive_real,
        )
        from ..runtime import PRECISIONS
        from .color import COLOR_SPACES
        from .hog import BLOCK_NORMS
        from .local import DESCRIPTORS
        from .openvino_backend import BACKENDS

        _int, _pos, _nonneg = positive_int(), positive_real(), non_negative_real()
        _descriptor = [StrOptions(set(DESCRIPTORS))]
        #: parameters shared by the dense-descriptor encodings
        _LOCAL = {"descriptor": _descriptor, "step": [_int], "patch_sizes": [IntSequence(4)],
                  "power_norm": ["boolean"], "max_descriptors": [_int],
                  "random_state": ["random_state"]}
        return {
            "raw": {"size": [_int, None], "grayscale": ["boolean"]},
            "color-hist": {"color_space": [StrOptions(set(COLOR_SPACES))], "bins": [_int]},
            "hog": {"orientations": [_int], "pixels_per_cell": [IntSequence(1, 2)],
                    "cells_per_block": [IntSequence(1, 2)],
                    "block_norm": [StrOptions(set(BLOCK_NORMS)), None],
                    "transform_sqrt": ["boolean"]},
            "bovw": {**_LOCAL, "n_words": [Interval(Integral, 2, None, closed="left")],
                     "assignment": [StrOptions({"hard", "soft"})], "soft_sigma": [_pos, None],
                     "soft_neighbors": [_int], "pyramid_levels": [_int]},
            "vlad": {**_LOCAL, "n_words": [Interval(Integral, 2, None, closed="left")],
                     "intra_norm": ["boolean"]},
            "fisher": {**_LOCAL, "n_components": [_int], "pca_dim": [_int, None],
                       "spatial": ["boolean"]},
            "kmeans-patches": {
                "n_centroids": [Interval(Integral, 2, None, closed="left")],
                "patch_size": [_int], "stride": [_int], "n_patches": [_int],
                "norm_eps": [_nonneg], "zca_eps": [_nonneg], "kmeans_iter": [_int],
                "device": [str], "batch_size": [_int, StrOptions({"auto"})],
                "random_state": ["random_state"]},
            "cnn:<model>": {
                "model": [str], "weights": [str, None], "weights_path": [str, None],
                "size": [Interval(Integral, 8, None, closed="left"), None],
                "layer": [str, None], "device": [str],
                "precision": [StrOptions(set(PRECISIONS))],
                "normalization": [StrOptions({"imagenet", "inception"}), None],
                "batch_size": [_int, StrOptions({"auto"})],
                "random_state": ["random_state"], "backend": [StrOptions(set(BACKENDS))],
                "arch": [str, None], "mean": ["array-like", None], "std": ["array-like", None],
                "crop_pct": [Interval(Real, 0, 1, closed="right"), None],
                "interpolation": [StrOptions({"bilinear", "bicubic"}), None]},
            "convnet:<arch>": _convnet_constraints(),
        }[name]

    return declared


EXTRACTORS.register_class("raw", "featbench.features.raw:RawPixels",
                          "Raw pixels scaled to [0, 1], optionally downscaled.",
                          _constraints("raw"))
EXTRACTORS.register_class(
    "color-hist", "featbench.features.color:ColorHistogram",
    "Color histogram: hue in HSV (10 bins) or joint HSV/RGB (Swain & Ballard 1991).",
    _constraints("color-hist"))
EXTRACTORS.register_class(
    "hog", "featbench.features.hog:HOG",
    "HOG, Dalal & Triggs 2005: 8x8 cells, 9 bins, 2x2 blocks, L2-Hys (= skimage).",
    _constraints("hog"))
EXTRACTORS.register_class(
    "bovw", "featbench.features.bovw:BagOfVisualWords",
    "Bag of visual words: dense SIFT, k-means codebook, spatial pyramid (Lazebnik 2006).",
    _constraints("bovw"))
EXTRACTORS.register_class("vlad", "featbench.features.vlad:VLAD",
                          "VLAD of dense SIFT (Jegou et al. 2010).", _constraints("vlad"))
EXTRACTORS.register_class(
    "fisher", "featbench.features.fisher:FisherVector",
    "Improved Fisher vector of dense SIFT, PCA + diagonal GMM (Perronnin 2010).",
    _constraints("fisher"))
EXTRACTORS.register_class(
    "kmeans-patches", "featbench.features.kmeans_patches:KMeansPatches",
    "Coates et al. 2011: whitened 6x6 patches, k-means, triangle code, torch.",
    _constraints("kmeans-patches"))

EXTRACTORS.register_class(
    "cnn:<model>", "featbench.features.cnn:CNNEmbedding",
    "Pooled features of a pretrained backbone (torchvision, Lite, timm, OpenCLIP, HF, file).",
    _constraints("cnn:<model>"))
EXTRACTORS.register_class(
    "convnet:<arch>", "featbench.features.convnet:ConvNet",
    "A ConvNet trained end to end on the training split (convnetjs, resnet-small, airbench).",
    _constraints("convnet:<arch>"))

#: families whose names take an argument: ``cnn:resnet18`` (the entry of ``cnn:<model>``
#: builds it with ``model=resnet18``), ``convnet:convnetjs`` (``arch=convnetjs``); the
#: backbone families are :data:`featbench.models.FAMILIES`
FAMILIES = ("cnn", "convnet", "torchvision", "timm", "open_clip", "hf", "file")
#: each family's registry entry and the parameter its argument sets
FAMILY_ENTRIES = {"convnet": ("convnet:<arch>", "arch"),
                  **{f: ("cnn:<model>", "model") for f in FAMILIES if f != "convnet"}}


def _convnet_constraints() -> dict[str, list]:
    """Declared constraints of ``convnet:<arch>`` (scikit-learn imported on first use)."""
    from numbers import Integral, Real

    from ..constraints import (
        Interval,
        IntSequence,
        StrOptions,
        non_negative_real,
        positive_int,
        positive_real,
    )
    from .convnet_recipes import ARCHS, CONVNET_PRECISIONS, SCHEDULES

    _int, _pos = positive_int(), positive_real()
    _fraction = Interval(Real, 0, 1, closed="left")
    return {"arch": [StrOptions(set(ARCHS))], "epochs": [_int, _pos, None],
            "batch_size": [_int, None], "lr": [_pos, None], "momentum": [_fraction, None],
            "nesterov": ["boolean"], "weight_decay": [non_negative_real(), None],
            "schedule": [StrOptions(set(SCHEDULES)), None], "warmup": [_fraction, None],
            "label_smoothing": [_fraction, None],
            "flip": ["boolean", StrOptions({"random", "alternate"}), None],
            "lookahead": ["boolean", None],
            "shift": [Interval(Integral, 0, None, closed="left")],
            "size": [Interval(Integral, 8, None, closed="left")],
            "widths": [IntSequence(1), None], "tta": ["boolean", None],
            "time_budget_s": [_pos, None], "device": [str],
            "precision": [StrOptions(set(CONVNET_PRECISIONS))],
            "random_state": ["random_state"]}


def extractor_entry(name: str):
    """The registry entry ``name`` is built from (``cnn:x`` -> ``cnn:<model>``,
    ``convnet:x`` -> ``convnet:<arch>``)."""
    family, sep, _ = name.partition(":")
    if sep and family in FAMILY_ENTRIES:
        return EXTRACTORS.get(FAMILY_ENTRIES[family][0])
    return EXTRACTORS.get(f"{family}:<model>" if sep else name)


def build_extractor(name: str) -> BaseEstimator:
    """A fresh extractor for one registered name, e.g. ``hog`` or ``cnn:resnet18``."""
    family, sep, arg = name.partition(":")
    if not sep:
        return EXTRACTORS.build(name)
    if family not in FAMILIES:
        raise UnknownNameError(
            f"unknown feature family {family!r} in {name!r}; families: "
            f"{', '.join(f + ':<name>' for f in FAMILIES)}")
    if family == "convnet":
        from .convnet_recipes import ARCHS

        if arg not in ARCHS:
            raise ParameterError(f"unknown convnet architecture {arg!r} in {name!r}; "
                                 f"architectures: {', '.join('convnet:' + a for a in ARCHS)}")
        return EXTRACTORS.build("convnet:<arch>", arch=arg)
    if not arg:
        raise ParameterError(f"{name!r} needs a model name, e.g. cnn:resnet18 "
                             f"(see `featbench list features`)")
    from ..models import parse

    model, params = parse(family, arg)  # an unknown model raises with close matches
    est = EXTRACTORS.build("cnn:<model>", model=model)
    return est.set_params(**params) if params else est


def split_spec(spec: str) -> list[str]:
    """The extractor names of a feature spec: ``"hog+color-hist"`` -> ``["hog", "color-hist"]``."""
    names = [part.strip() for part in spec.split("+")]
    if not spec.strip() or any(not n for n in names):
        raise ParameterError(f"invalid feature spec {spec!r}: expected names joined by '+'")
    return names


def set_params_checked(estimator: BaseEstimator, params: dict[str, Any], label: str):
    """``estimator.set_params(**params)``, with an error that lists the valid names."""
    valid = sorted(estimator.get_params(deep=False))
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ParameterError(
            f"{label} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid parameters: {', '.join(valid) or '(none)'}"
        )
    return estimator.set_params(**params)


def constraints_for(name: str) -> dict[str, list] | None:
    """The declared parameter constraints of extractor ``name`` (``cnn:x`` -> family's)."""
    return extractor_entry(name).constraints


def check_extractor(name: str, params: dict[str, Any]) -> BaseEstimator:
    """Extractor ``name`` with ``params`` set, every parameter checked against its
    declared constraints (one :class:`ParameterError` wording for every error)."""
    from ..constraints import check_params

    est = set_params_checked(build_extractor(name), params, f"feature {name!r}")
    check_params(est, name, constraints_for(name))
    return est


def get_extractor(spec: str, **params: Any) -> BaseEstimator:
    """Build the extractor named by ``spec``.

    Parameters
    ----------
    spec : str
        A registered name (see ``featbench list features``) or several joined by
        ``+``, which gives a :class:`~sklearn.pipeline.FeatureUnion` whose parts are
        named after the extractors.
    **params
        Parameters of the extractor; for a union, ``<name>__<param>``.

    Examples
    --------
    >>> from featbench import get_extractor
    >>> get_extractor("hog", block_norm=None)
    HOG(block_norm=None)
    >>> [name for name, _ in get_extractor("hog+color-hist").transformer_list]
    ['hog', 'color-hist']
    """
    names = split_spec(spec)
    if len(names) == 1:
        extractor = build_extractor(names[0])
        return set_params_checked(extractor, params, f"feature {names[0]!r}")
    if len(set(names)) != len(names):
        raise ParameterError(f"feature spec {spec!r} names an extractor twice")
    from sklearn.pipeline import FeatureUnion

    union = FeatureUnion([(name, build_extractor(name)) for name in names])
    by_part: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        part, sep, param = key.partition("__")
        if not sep or part not in names:
            raise ParameterError(
                f"parameter {key!r} for {spec!r} must be '<name>__<param>' with name in {names}"
            )
        by_part.setdefault(part, {})[param] = value
    for part, part_params in by_part.items():
        set_params_checked(union.named_transformers[part], part_params, f"feature {part!r}")
    return union


__all__ = [
    "EXTRACTORS",
    "BagOfVisualWords",
    "CNNEmbedding",
    "ConvNet",
    "FisherVector",
    "KMeansPatches",
    "VLAD",
    "ColorHistogram",
    "HOG",
    "ImageExtractor",
    "RawPixels",
    "build_extractor",
    "get_extractor",
    "list_models",
    "split_spec",
]
