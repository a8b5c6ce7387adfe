"""Feature extractors and their registry.

``get_extractor("hog")`` builds a registered extractor; ``"hog+color-hist"``
concatenates several in a :class:`sklearn.pipeline.FeatureUnion`.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.pipeline import FeatureUnion

from ..constraints import (
    Interval,
    IntSequence,
    StrOptions,
    check_params,
    non_negative_real,
    positive_int,
    positive_real,
)
from ..errors import ParameterError, UnknownNameError
from ..registry import Registry
from ..runtime import PRECISIONS
from .base import ImageExtractor
from .bovw import BagOfVisualWords
from .cnn import CNNEmbedding, list_models, torchvision_models
from .color import COLOR_SPACES, ColorHistogram
from .fisher import FisherVector
from .hog import BLOCK_NORMS, HOG
from .kmeans_patches import KMeansPatches
from .local import DESCRIPTORS
from .openvino_backend import BACKENDS
from .raw import RawPixels
from .vlad import VLAD

EXTRACTORS = Registry("feature")

_int, _pos, _nonneg = positive_int(), positive_real(), non_negative_real()
_descriptor = [StrOptions(set(DESCRIPTORS))]
#: parameters shared by the dense-descriptor encodings
_LOCAL = {"descriptor": _descriptor, "step": [_int], "patch_sizes": [IntSequence(4)],
          "power_norm": ["boolean"], "max_descriptors": [_int],
          "random_state": ["random_state"]}

EXTRACTORS.register("raw", "Raw pixels scaled to [0, 1], optionally downscaled.", {
    "size": [_int, None], "grayscale": ["boolean"]})(RawPixels)
EXTRACTORS.register(
    "color-hist", "Color histogram: hue in HSV (10 bins) or joint HSV/RGB (Swain & Ballard 1991).",
    {"color_space": [StrOptions(set(COLOR_SPACES))], "bins": [_int]})(ColorHistogram)
EXTRACTORS.register(
    "hog", "HOG, Dalal & Triggs 2005: 8x8 cells, 9 bins, 2x2 blocks, L2-Hys (= skimage).",
    {"orientations": [_int], "pixels_per_cell": [IntSequence(1, 2)],
     "cells_per_block": [IntSequence(1, 2)], "block_norm": [StrOptions(set(BLOCK_NORMS)), None],
     "transform_sqrt": ["boolean"]})(HOG)
EXTRACTORS.register(
    "bovw", "Bag of visual words: dense SIFT, k-means codebook, spatial pyramid (Lazebnik 2006).",
    {**_LOCAL, "n_words": [Interval(Integral, 2, None, closed="left")],
     "assignment": [StrOptions({"hard", "soft"})], "soft_sigma": [_pos, None],
     "soft_neighbors": [_int], "pyramid_levels": [_int]})(BagOfVisualWords)
EXTRACTORS.register("vlad", "VLAD of dense SIFT (Jegou et al. 2010).", {
    **_LOCAL, "n_words": [Interval(Integral, 2, None, closed="left")],
    "intra_norm": ["boolean"]})(VLAD)
EXTRACTORS.register(
    "fisher", "Improved Fisher vector of dense SIFT, PCA + diagonal GMM (Perronnin 2010).",
    {**_LOCAL, "n_components": [_int], "pca_dim": [_int, None], "spatial": ["boolean"]}
)(FisherVector)
EXTRACTORS.register(
    "kmeans-patches", "Coates et al. 2011: whitened 6x6 patches, k-means, triangle code, torch.",
    {"n_centroids": [Interval(Integral, 2, None, closed="left")], "patch_size": [_int],
     "stride": [_int], "n_patches": [_int], "norm_eps": [_nonneg], "zca_eps": [_nonneg],
     "kmeans_iter": [_int], "device": [str], "batch_size": [_int, StrOptions({"auto"})],
     "random_state": ["random_state"]})(KMeansPatches)

EXTRACTORS.register(
    "cnn:<model>", "Pooled penultimate features of an ImageNet ConvNet (torchvision, Lite).",
    {"model": [str], "weights": [str, None], "weights_path": [str, None],
     "size": [Interval(Integral, 8, None, closed="left"), None], "layer": [str, None],
     "device": [str], "precision": [StrOptions(set(PRECISIONS))],
     "normalization": [StrOptions({"imagenet", "inception"}), None],
     "batch_size": [_int, StrOptions({"auto"})],
     "random_state": ["random_state"], "backend": [StrOptions(set(BACKENDS))]})(CNNEmbedding)

#: families whose names take an argument: ``cnn:resnet18``
FAMILIES = {"cnn": CNNEmbedding}


def build_extractor(name: str) -> BaseEstimator:
    """A fresh extractor for one registered name, e.g. ``hog`` or ``cnn:resnet18``."""
    family, sep, arg = name.partition(":")
    if not sep:
        return EXTRACTORS.build(name)
    if family not in FAMILIES:
        raise UnknownNameError(
            f"unknown feature family {family!r} in {name!r}; families: "
            f"{', '.join(f + ':<name>' for f in FAMILIES)}")
    if not arg:
        raise ParameterError(f"{name!r} needs a model name, e.g. cnn:resnet18 "
                             f"(see `featbench list features`)")
    if family == "cnn":
        from .cnn import LITE_MODELS, load_model

        if arg not in LITE_MODELS and arg not in torchvision_models():
            load_model(arg)  # raises the unknown-model error with close matches
    return FAMILIES[family](model=arg)


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
    family, sep, _ = name.partition(":")
    return EXTRACTORS.get(f"{family}:<model>" if sep else name).constraints


def check_extractor(name: str, params: dict[str, Any]) -> BaseEstimator:
    """Extractor ``name`` with ``params`` set, every parameter checked against its
    declared constraints (one :class:`ParameterError` wording for every error)."""
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
