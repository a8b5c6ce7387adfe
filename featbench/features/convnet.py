"""``convnet:<arch>``: a ConvNet trained end to end on the dataset's own training images.

The lecture's other pipeline beside "image features + a trained classifier": a
ConvNet whose every layer is trained on the task (its ConvNetJS CIFAR-10 demo). ``fit``
trains the network on exactly the images and labels it is given (the extraction layer
gives the training split less the validation split); ``transform`` returns its
penultimate activations (the input of its final linear layer), which go to the same
classifiers as every other feature; :meth:`ConvNet.predict` gives the network's own
class predictions, and :meth:`ConvNet.head_logits` applies its trained head to
features.

The trained weights are the extractor's fitted state: plain float arrays (one per
state-dict entry) that the feature store keeps in its pickle-free ``.npz`` codebooks
beside the features, so a rerun reuses them. This departs from the issue's wording
(``torch.save`` or safetensors, loaded with ``weights_only=True``): numeric arrays read
with ``np.load(allow_pickle=False)`` are as safe, and need no second file format.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..errors import ParameterError
from ..progress import progress
from ..runtime import autocast, check_device, run_batches
from .base import ImageExtractor, as_uint8_images
from .convnet_archs import NETWORKS, build_network
from .convnet_recipes import ARCHS, CONVNET_PRECISIONS, DEFAULTS, FLIPS, RECIPES, SCHEDULES

#: images per forward pass when extracting features or predicting (halved on OOM)
EVAL_BATCH = 256
#: images resized per call when the input side differs from ``size``
RESIZE_BATCH = 1024
#: training images the network's data-dependent initialization sees at most (airbench
#: whitens with 5,000)
INIT_IMAGES = 5000
#: steps between two lookahead updates (airbench's 5)
LOOKAHEAD_EVERY = 5
#: prefix of the state-dict entries in :meth:`ConvNet.fitted_state` (``.`` -> ``__``)
WEIGHT_PREFIX = "net__"
#: the scalars :meth:`ConvNet.fitted_state` exports beside the arrays
_TRAIN_STATS = ("train_seconds_", "epochs_run_", "train_loss_", "train_images_per_s_",
                "stopped_by_budget_")


def lr_factor(schedule: str, t: float, warmup: float) -> float:
    """The learning rate, as a fraction of the peak, after a fraction ``t`` of training.

    ``onecycle``: linear from 0.1 to 1 over the first ``warmup`` of training, then linear
    down to 0 (Smith's one-cycle policy as airbench and ResNet-9 use it); ``cosine``: the
    same warm-up, then half a cosine down to 0; ``constant``: 1 throughout;
    ``airbench``: airbench94's, linear from 0.2 to 1 over the warm-up, then linear down
    to 0.07 (Jordan 2024, arXiv:2404.00498; airbench counts the warm-up in whole steps,
    ``int(0.23 * steps)``, which the training loop passes as ``warmup``).
    """
    if schedule not in SCHEDULES:
        raise ParameterError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    t = min(max(t, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    start, end = (0.2, 0.07) if schedule == "airbench" else (0.1, 0.0)
    if warmup > 0 and t < warmup:
        return start + (1.0 - start) * t / warmup
    rest = (t - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    if schedule == "airbench":
        return 1.0 - (1.0 - end) * rest
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * rest))
    return 1.0 - rest


def lookahead_decay(step: int, total: int) -> float:
    """airbench's lookahead decay after ``step`` of ``total`` steps:
    ``0.95**5 * (step / total)**3`` (close to 0 early: the average follows the weights;
    0.77 at the end)."""
    return 0.95 ** 5 * (step / max(1, total)) ** 3


@torch.no_grad()
def lookahead_update(average: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                     decay: float) -> None:
    """One lookahead step of airbench (its ``LookaheadState.update``), in place: every
    floating-point entry of the network's ``state`` (parameters and batch-norm
    statistics) moves the ``average`` to ``decay * average + (1 - decay) * value``, and
    the network's entry is then set to the average. ``decay=1`` copies the average into
    the network (airbench's last step). Integer entries (batch counts) are left alone.

    References
    ----------
    .. [1] K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024,
       arXiv:2404.00498 (section 3.5, lookahead with an EMA every 5 steps).
    .. [2] M. R. Zhang et al., "Lookahead optimizer: k steps forward, 1 step back", 2019.
    """
    for key, value in state.items():
        if value.is_floating_point():
            average[key].lerp_(value, 1.0 - decay)
            value.copy_(average[key])


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(n, 3, h, w)`` -> uint8 ``(n, 3, size, size)``: the whole image resized
    (bilinear, antialiased when shrinking, as ``cnn:*`` does), rounded back to uint8 so
    that training and extraction see the same pixels."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    out = []
    for start in range(0, len(x), RESIZE_BATCH):
        part = x[start:start + RESIZE_BATCH].float()
        shrink = bool(part.shape[-1] > size or part.shape[-2] > size)
        part = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=shrink)
        out.append(part.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else x.new_zeros((0, 3, size, size))


def augment(x: torch.Tensor, generator: torch.Generator, flip: bool, shift: int
            ) -> torch.Tensor:
    """Random horizontal flips (each image with probability 1/2) and random translations
    by up to ``shift`` pixels each way (reflection padding, then a random crop of the
    original size) of a float batch ``(n, c, h, w)``; the random numbers come from
    ``generator`` (on the CPU), whatever the batch's device."""
    n, c, h, w = x.shape
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    if shift:
        s = int(shift)
        padded = F.pad(x, (s, s, s, s), mode="reflect")
        dy = torch.randint(0, 2 * s + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=generator).to(x.device)
        # flat index of output pixel (r, q) of image i in its padded image: one gather
        # (8x faster on the CPU than indexing rows and columns)
        rows = dy[:, None, None] + torch.arange(h, device=x.device)[None, :, None]
        cols = dx[:, None, None] + torch.arange(w, device=x.device)[None, None, :]
        index = (rows * (w + 2 * s) + cols).view(n, 1, h * w).expand(n, c, h * w)
        x = padded.flatten(2).gather(2, index).view(n, c, h, w)
    return x


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (ddof 1, at least 1e-3) of uint8 images
    ``(n, 3, h, w)`` scaled to [0, 1], summed in float64 a chunk at a time (a float64 copy
    of CIFAR-10 would take 1.1 GB)."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(x), RESIZE_BATCH):
        part = x[start:start + RESIZE_BATCH].to(torch.float64).div_(255.0)
        total += part.sum(dim=(0, 2, 3))
        squares += (part * part).sum(dim=(0, 2, 3))
    count = max(1, x.shape[0] * x.shape[2] * x.shape[3])
    mean = total / count
    var = (squares - count * mean * mean) / max(1, count - 1)
    return mean.float(), var.clamp_(min=1e-6).sqrt_().float()


def _to_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, h, w, 3)`` -> uint8 tensor ``(n, 3, h, w)`` (copied: torch needs a
    writeable buffer, and the input may be read-only or memory-mapped)."""
    return torch.from_numpy(np.array(images, dtype=np.uint8, order="C", copy=True)
                            ).permute(0, 3, 1, 2).contiguous()


class ConvNet(ImageExtractor):
    """A ConvNet trained end to end on the training images; its penultimate activations.

    Parameters
    ----------
    arch : {"convnetjs", "resnet-small", "airbench"}, default="convnetjs"
        The network (:mod:`featbench.features.convnet_archs`); the command line names it
        ``convnet:<arch>``. ``convnetjs``: ConvNetJS's CIFAR-10 demo (three 5x5 conv +
        ReLU + 2x2 max-pool stages, 16, 20, 20 filters, one linear layer; 320 features at
        32 px). ``resnet-small``: an airbench-like residual network (3x3 conv stem, three
        conv-pool-BN-ReLU stages each with a residual block of two conv-BN-ReLU, global
        max-pool; ``widths[-1]`` features). ``airbench``: airbench94's network and
        training recipe (:class:`~featbench.features.convnet_archs.AirbenchNet`: a frozen
        2x2 patch-whitening convolution, GELU, three conv groups 64/256/256 with max
        pooling and batch norm without scale, global max-pool, logits scaled by 1/9;
        ``widths[-1]`` features).
    epochs : int or float, optional
        Passes over the training images (a fraction: the last pass stops part way);
        None: convnetjs 30, resnet-small 10, airbench 9.9.
    batch_size : int, optional
        Training images per step; None: convnetjs 64, resnet-small 512, airbench 1024.
    lr : float, optional
        Peak learning rate of SGD (the loss is the batch mean); None: convnetjs 0.02,
        resnet-small 0.4. airbench: its decoupled learning rate per 1024 images
        (default 11.5; see ``AirbenchNet.param_groups``).
    momentum : float, optional
        SGD momentum; None: 0.9, airbench 0.85.
    nesterov : bool, default=True
        Nesterov momentum.
    weight_decay : float, optional
        L2 weight decay of the convolution and linear weights (not of biases and batch
        norm); None: convnetjs 1e-4 (the demo's), resnet-small 5e-4. airbench: its
        decoupled decay per 1024 images, of every trained parameter (default 0.0153).
    schedule : {"onecycle", "cosine", "constant", "airbench"}, optional
        Learning-rate schedule over the whole training (:func:`lr_factor`), per step;
        None: onecycle, airbench airbench.
    warmup : float, optional
        Fraction of the training over which the learning rate rises to its peak; None:
        0.2, airbench 0.23.
    label_smoothing : float, optional
        Label smoothing of the cross-entropy loss; None: convnetjs 0, resnet-small 0.2,
        airbench 0.2.
    flip : {True, False, "random", "alternate"}, optional
        Horizontal flips during training: True or "random" (each image with probability
        1/2 every epoch), "alternate" (airbench's: a random half of the images in the
        first epoch, then each image the other way round every next epoch), False (none);
        None: True, airbench "alternate".
    shift : int, default=2
        Random translations by up to this many pixels each way during training
        (reflection padding); 0: none.
    size : int, default=32
        Input side: images are resized as a whole to ``size`` x ``size`` (in the
        pipeline when they are decoded; in :meth:`fit` and :meth:`transform` when given
        at another size: bilinear, antialiased when shrinking, rounded to uint8).
    widths : int or sequence of int, optional
        Channels of each stage, one stage per width; None: convnetjs (16, 20, 20),
        resnet-small (64, 256, 256), airbench (64, 256, 256). The side must allow one 2x2
        pooling per stage (airbench: after its 2x2 whitening takes a pixel).
    tta : bool, optional
        Test-time flip in :meth:`predict` and :meth:`logits` (each image's logits averaged
        with its mirror image's; airbench: its mirror and 1-pixel translations,
        ``AirbenchNet.tta_logits``); None: convnetjs False, resnet-small and airbench
        True. Features are never averaged.
    lookahead : bool, optional
        airbench's lookahead: every 5 steps an exponential moving average of the weights
        (and batch-norm statistics) is updated with :func:`lookahead_decay` and copied
        into the network, and the network ends with the average
        (:func:`lookahead_update`); None: False, airbench True.
    time_budget_s : float, optional
        Stop training after this many seconds (checked after every step; the learning
        rate schedule then runs on the larger of the step and the time fractions, so it
        ends annealed). A run stopped by its budget is not reproducible; the seconds and
        epochs trained are recorded (``train_seconds_``, ``epochs_run_``).
    device : str, default="auto"
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps"; training and
        extraction run there. The device type is in the store key.
    precision : {"fp32", "tf32", "bf16"}, default="fp32"
        Arithmetic of training and inference: IEEE float32 (TF32 off), TF32 tensor cores
        on CUDA (float32 elsewhere), or bf16 autocast. In the store key.
    random_state : int, default=0
        Seed of the initialization, the shuffling and the augmentation.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels, in the order of the logits.
    input_mean_, input_std_ : ndarray of shape (3,)
        Per-channel mean and standard deviation of the training images (in [0, 1]), with
        which every image is normalized.
    weights_ : dict of str to ndarray
        The trained network's state dict as float arrays.
    train_seconds_ : float
        Seconds of training (augmentation and optimizer steps; not the normalization).
    epochs_run_ : int
        Epochs trained (fewer than ``epochs`` when the time budget stopped the training;
        an interrupted epoch counts).
    train_loss_ : float
        Mean training loss over the last epoch.
    train_images_per_s_ : float
        Training throughput.
    stopped_by_budget_ : bool
        Whether ``time_budget_s`` ended the training.
    runtime_ : dict
        Device, precision, batch size and the training figures of the last transform.

    Notes
    -----
    Training is seeded: the initialization by ``random_state`` (torch's generator forked,
    the global one left alone), the order of the images and the augmentation by a
    ``torch.Generator`` seeded with it. On the CPU it runs with
    ``torch.use_deterministic_algorithms(True)`` and gives the same weights on every run
    (with the same torch and thread count); on CUDA it trains in the channels-last layout
    with cuDNN's autotuner, whose kernels may be nondeterministic.

    :meth:`head_logits` applied to :meth:`transform`'s features equals the network's own
    logits, without the test-time flip; :meth:`predict` uses it where ``tta`` says.

    References
    ----------
    .. [1] A. Karpathy, ConvNetJS CIFAR-10 demo,
       https://cs.stanford.edu/people/karpathy/convnetjs/demo/cifar10.html
    .. [2] K. Jordan, airbench: fast CIFAR-10 training,
       https://github.com/KellerJordan/cifar10-airbench (2024).
    .. [3] D. Page, "How to train your ResNet", Myrtle.ai blog, 2018.
    .. [4] L. N. Smith and N. Topin, "Super-convergence: very fast training of neural
       networks using large learning rates", 2017 (the one-cycle policy).
    .. [5] K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024,
       arXiv:2404.00498 (airbench94, ``legacy/airbench94.py``).

    The ``airbench`` recipe departs from airbench94 in these points: the images are
    normalized with the training images' channel statistics (airbench: CIFAR-10's); the
    whitening filters come from at most 5,000 of the training images drawn with the
    seed (airbench: the first 5,000 of CIFAR-10's training set), with the covariance in
    float64; the loss is the batch mean with a learning rate ``batch_size`` times
    airbench's (the same steps as its summed loss); the lookahead average starts from
    the whitened network (airbench's starts before the whitening is set, which mixes a
    trace of the initial filters into the frozen ones); training runs in float32 or
    under the autocast of ``precision`` (airbench: float16 weights); fewer images than a
    batch train as one batch.
    """

    _chunk_size = 4096
    _n_jobs = 1  # torch parallelizes inside each batch
    learns_from_images = True
    #: the device type and the precision are in the key through :meth:`cache_token`
    _cache_exclude = ("device", "precision")

    def __init__(self, arch: str = "convnetjs", epochs: int | None = None,
                 batch_size: int | None = None, lr: float | None = None,
                 momentum: float | None = None, nesterov: bool = True,
                 weight_decay: float | None = None, schedule: str | None = None,
                 warmup: float | None = None, label_smoothing: float | None = None,
                 flip: bool | str | None = None, shift: int = 2, size: int = 32,
                 widths: int | tuple[int, ...] | None = None, tta: bool | None = None,
                 lookahead: bool | None = None,
                 time_budget_s: float | None = None, device: str = "auto",
                 precision: str = "fp32", random_state: int | None = 0) -> None:
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.warmup = warmup
        self.label_smoothing = label_smoothing
        self.flip = flip
        self.shift = shift
        self.size = size
        self.widths = widths
        self.tta = tta
        self.lookahead = lookahead
        self.time_budget_s = time_budget_s
        self.device = device
        self.precision = precision
        self.random_state = random_state

    # -- settings ----------------------------------------------------------------------
    def setting(self, name: str) -> Any:
        """Parameter ``name`` as training uses it: its value, or the recipe's when None."""
        if self.arch not in RECIPES:
            raise ParameterError(f"unknown convnet architecture {self.arch!r}; "
                                 f"architectures: {', '.join(ARCHS)}")
        value = getattr(self, name)
        if value is None:
            value = RECIPES[self.arch].get(name, DEFAULTS.get(name))
        if name == "widths":
            value = (int(value),) if isinstance(value, (int, np.integer)) else \
                tuple(int(v) for v in value)
        return value

    def recipe(self) -> dict[str, Any]:
        """The settings training uses, the architecture's recipe filled in for every
        parameter left at None (what a record shows beside the parameters)."""
        out = {name: self.setting(name) for name in RECIPES[self.arch]} if \
            self.arch in RECIPES else {}
        out["widths"] = list(self.setting("widths")) if out else []
        return out

    def _precision(self, device: torch.device) -> str:
        if self.precision not in CONVNET_PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(CONVNET_PRECISIONS)}; "
                                 f"got {self.precision!r}")
        if self.precision == "tf32" and device.type != "cuda":
            return "fp32"  # no TF32 units: the arithmetic that runs
        return str(self.precision)

    def cache_token(self) -> dict[str, str]:
        """What the store key needs beyond the parameters: the device type and precision
        the features are computed with (``device``, ``precision``) and those the network
        is trained with (``train_device``, ``train_precision``: in the weights' key too)."""
        device = check_device(self.device)
        precision = self._precision(device)
        return {"precision": precision, "device": device.type,
                "train_precision": precision, "train_device": device.type}

    def check_plan(self, name: str, fit_images: tuple[int, int, int] | None = None) -> None:
        """Fail before any work on settings the network cannot take: a side too small for
        one 2x2 pooling per stage, a shift as large as the side, fewer than two images."""
        widths = self.setting("widths")
        if not widths:
            raise ParameterError(f"-p {name}.widths: needs at least one stage")
        cls = NETWORKS.get(self.arch)
        smallest = cls.min_size(len(widths)) if hasattr(cls, "min_size") else \
            2 ** len(widths)
        if int(self.size) < smallest:
            raise ParameterError(
                f"-p {name}.size={self.size}: {len(widths)} stages halve the side "
                f"{len(widths)} times; size must be at least {smallest}")
        if self.setting("flip") not in FLIPS:
            raise ParameterError(f"-p {name}.flip={self.flip}: must be one of "
                                 f"{', '.join(map(str, FLIPS))}")
        if int(self.shift) >= int(self.size):
            raise ParameterError(f"-p {name}.shift={self.shift}: must be less than size="
                                 f"{self.size}")
        if fit_images is not None and fit_images[0] < 2:
            raise ParameterError(f"{name}: needs at least 2 training images; got "
                                 f"{fit_images[0]}")

    def input_view(self, ds):
        """The images this extractor sees: the whole image resized to ``size`` x ``size``
        (bilinear; CIFAR-10's 32 px images as they are)."""
        from ..datasets.source import View

        return View("resize", int(self.size), interpolation="bilinear")

    # -- training ----------------------------------------------------------------------
    def _fit(self, X: np.ndarray, y=None) -> None:
        name = f"convnet:{self.arch}"
        self.check_plan(name)
        if y is None:
            raise ValueError(f"{name} trains on labels: call fit(images, labels)")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"{name}: labels must be one per image; got shape {y.shape} "
                             f"for {len(X)} images")
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{name}: labels must be numbers; got {y.dtype}")
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"{name}: needs at least 2 classes; got {len(classes)}")
        device = check_device(self.device)
        precision = self._precision(device)
        size, widths = int(self.size), self.setting("widths")
        x = resize_uint8(_to_nchw(X), size)
        mean, std = channel_stats(x)
        seed = check_random_state(self.random_state).randint(2**31) \
            if isinstance(self.random_state, np.random.RandomState) else \
            int(self.random_state or 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_network(self.arch, len(classes), size, widths)
        net = net.to(device)
        stats = self._train(net, x, torch.from_numpy(y_index.astype(np.int64)),
                            mean, std, device, precision, seed)
        self.classes_ = classes
        self.input_mean_ = mean.numpy().astype(np.float32)
        self.input_std_ = std.numpy().astype(np.float32)
        self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        for key, value in stats.items():
            setattr(self, key, value)
        self._net = (self._net_key(), net.eval())

    def _train(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor,
               std: torch.Tensor, device: torch.device, precision: str, seed: int
               ) -> dict[str, Any]:
        """Train ``net`` on uint8 images ``x`` ``(n, 3, size, size)`` and class indices
        ``y``; the training figures (:data:`_TRAIN_STATS`).

        The network's optional hooks (:mod:`~featbench.features.convnet_archs`) run
        here: ``param_groups`` gives the optimizer's groups (else: weight decay on the
        weights of ndim > 1 only), ``init_from_data`` sees at most
        :data:`INIT_IMAGES` normalized training images (drawn with the seed) before the
        first step, ``start_epoch`` runs before each epoch, ``drop_last`` drops each
        epoch's last partial batch. ``lookahead`` (airbench) keeps the moving average
        of :func:`lookahead_update`.
        """
        epochs, batch_size = self.setting("epochs"), int(self.setting("batch_size"))
        lr, wd = float(self.setting("lr")), float(self.setting("weight_decay"))
        smoothing = float(self.setting("label_smoothing"))
        momentum, schedule = float(self.setting("momentum")), self.setting("schedule")
        warmup, flip = float(self.setting("warmup")), self.setting("flip")
        budget = None if self.time_budget_s is None else float(self.time_budget_s)
        n = len(x)
        if getattr(net, "drop_last", False):
            steps = max(1, n // batch_size)
        else:
            steps = math.ceil(n / batch_size)
            if n % batch_size == 1 and n > 1:
                steps -= 1  # no batch of one image (batch norm needs two); a random one waits
        total = math.ceil(epochs * steps)
        if schedule == "airbench":  # airbench's warm-up: a whole number of steps
            warmup = int(total * warmup) / total
        if hasattr(net, "param_groups"):
            groups = net.param_groups(lr, wd, momentum, batch_size)
        else:
            decay = [p for p in net.parameters() if p.ndim > 1]
            no_decay = [p for p in net.parameters() if p.ndim <= 1]
            groups = [{"params": decay, "weight_decay": wd, "lr": lr},
                      {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
        base_lrs = [group["lr"] for group in groups]
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum,
                              nesterov=bool(self.nesterov) and momentum > 0)
        generator = torch.Generator().manual_seed(seed)
        x_dev, y_dev = x.to(device), y.to(device)
        mean_d, std_d = mean.to(device).view(1, 3, 1, 1), std.to(device).view(1, 3, 1, 1)
        deterministic = torch.are_deterministic_algorithms_enabled()
        benchmark = torch.backends.cudnn.benchmark
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        cuda = device.type == "cuda"
        # channels-last tensors: on the CPU (oneDNN) 1.2-1.8x the rate of NCHW, still
        # deterministic; on CUDA with cuDNN's autotuned kernels (not deterministic)
        channels_last = device.type in ("cpu", "cuda")
        if channels_last:
            net.to(memory_format=torch.channels_last)
        if cuda:
            torch.backends.cudnn.benchmark = True
        net.train()
        step, epochs_run, last_loss, stopped, seen = 0, 0, float("nan"), False, 0
        t0 = time.perf_counter()
        average = None
        if hasattr(net, "init_from_data"):
            pick = torch.randperm(n, generator=generator)[:INIT_IMAGES] if n > INIT_IMAGES \
                else torch.arange(n)
            net.init_from_data(x[pick].float().div_(255.0).sub_(mean.view(1, 3, 1, 1))
                               .div_(std.view(1, 3, 1, 1)))
        if self.setting("lookahead"):
            average = {k: v.detach().clone() for k, v in net.state_dict().items()}
        # airbench's alternating flip: a random half first, then all the other way round
        flipped = (torch.rand(n, generator=generator) < 0.5).to(device) \
            if flip == "alternate" else None
        # one step per batch; in logs a line every 30 s and one after every epoch
        bar = progress(total=total, desc=f"convnet:{self.arch}: train {n} img x {epochs} "
                                         f"epochs", unit="step")
        try:
            for epoch in range(math.ceil(epochs)):
                if hasattr(net, "start_epoch"):
                    net.start_epoch(epoch)
                order = torch.randperm(n, generator=generator).to(device)
                loss_sum = torch.zeros((), device=device)
                count = 0
                for b in range(steps):
                    if step >= total:  # a fraction of an epoch left
                        break
                    elapsed = time.perf_counter() - t0
                    frac = step / total
                    if budget is not None:
                        frac = max(frac, elapsed / budget)
                    factor = lr_factor(schedule, frac, warmup)
                    for group, base in zip(opt.param_groups, base_lrs, strict=True):
                        group["lr"] = base * factor
                    idx = order[b * batch_size:(b + 1) * batch_size]
                    xb = x_dev[idx].float().div_(255.0).sub_(mean_d).div_(std_d)
                    if flipped is not None:
                        mask = flipped[idx] ^ bool(epoch % 2)
                        xb = torch.where(mask[:, None, None, None], xb.flip(3), xb)
                    xb = augment(xb, generator, flip in (True, "random"), int(self.shift))
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with autocast(device, precision):
                        out = net(xb)
                    loss = F.cross_entropy(out.float(), y_dev[idx], label_smoothing=smoothing)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    loss_sum += loss.detach() * len(idx)
                    count += len(idx)
                    step += 1
                    if average is not None and step % LOOKAHEAD_EVERY == 0:
                        lookahead_update(average, net.state_dict(),
                                         lookahead_decay(step, total))
                    bar.update(1)
                    if budget is not None and time.perf_counter() - t0 >= budget:
                        stopped = True
                        break
                epochs_run += 1
                seen += count
                last_loss = float(loss_sum) / max(1, count)
                rate = seen / max(1e-9, time.perf_counter() - t0)
                bar.set_postfix_str(f"epoch {epoch + 1}/{epochs}: loss {last_loss:.4f}, "
                                    f"{rate:.0f} img/s")
                if stopped:
                    break
            if average is not None:  # the network ends with the average
                lookahead_update(average, net.state_dict(), 1.0)
        finally:
            bar.close()
            torch.use_deterministic_algorithms(deterministic)
            torch.backends.cudnn.benchmark = benchmark
            if cuda:
                net.to(memory_format=torch.contiguous_format)
        seconds = time.perf_counter() - t0
        return {"train_seconds_": float(seconds), "epochs_run_": int(epochs_run),
                "train_loss_": float(last_loss),
                "train_images_per_s_": float(seen / max(1e-9, seconds)),
                "stopped_by_budget_": bool(stopped)}

    # -- the trained network -----------------------------------------------------------
    def _net_key(self) -> tuple:
        return (self.arch, int(self.size), self.setting("widths"), str(self.device),
                id(self.weights_))

    def network(self) -> nn.Module:
        """The trained network in eval mode, on ``device`` (rebuilt from ``weights_``)."""
        check_is_fitted(self, "weights_")
        cached = getattr(self, "_net", None)
        key = self._net_key()
        if cached is not None and cached[0] == key:
            return cached[1]
        device = check_device(self.device)
        with torch.random.fork_rng(devices=[]):
            net = build_network(self.arch, len(self.classes_), int(self.size),
                                self.setting("widths"))
        state = {k: torch.from_numpy(np.asarray(v)) for k, v in self.weights_.items()}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            first = " ".join(str(exc).strip().splitlines()[:2])[:300]
            raise ValueError(f"convnet:{self.arch}: stored weights do not fit the network "
                             f"({first})") from None
        net = net.to(device).eval()
        if device.type in ("cpu", "cuda"):  # channels-last, as in training
            net = net.to(memory_format=torch.channels_last)
        self._net = (key, net)
        return net

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 ``(n, h, w, 3)`` images -> the normalized float ``(n, 3, size, size)``
        CPU tensor the network reads."""
        x = resize_uint8(_to_nchw(images), int(self.size)).float().div_(255.0)
        mean = torch.from_numpy(np.asarray(self.input_mean_, np.float32)).view(1, 3, 1, 1)
        std = torch.from_numpy(np.asarray(self.input_std_, np.float32)).view(1, 3, 1, 1)
        return (x - mean) / std

    def _run(self, images: np.ndarray, fn) -> np.ndarray:
        """``fn(net, x)`` over batches of preprocessed ``images``, on the device."""
        net = self.network()
        device = check_device(self.device)
        precision = self._precision(device)

        def forward(start: int, stop: int) -> torch.Tensor:
            x = self.preprocess(images[start:stop]).to(device)
            if device.type in ("cpu", "cuda"):  # (as in training: see _train)
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(device, precision):
                return fn(net, x).float().cpu()

        out, used = run_batches(forward, len(images), EVAL_BATCH)
        self.runtime_ = {"device": str(device), "precision": precision, "size": int(self.size),
                         "batch_size": used, "torch_threads": torch.get_num_threads(),
                         "recipe": self.recipe(),
                         **{k.rstrip("_"): getattr(self, k, None) for k in _TRAIN_STATS}}
        return torch.cat(out).numpy().astype(np.float32, copy=False)

    def _extract(self, images: np.ndarray) -> np.ndarray:
        if not len(images):  # no images: the width from one blank image
            blank = np.zeros((1, *images.shape[1:]), np.uint8)
            return self._run(blank, lambda net, x: net.features(x))[:0]
        return self._run(images, lambda net, x: net.features(x))

    def head_logits(self, features) -> np.ndarray:
        """The trained head (final linear layer) applied to ``features`` from
        :meth:`transform`: the network's own logits (without the test-time flip)."""
        net = self.network()
        device = next(net.parameters()).device
        f = torch.as_tensor(np.asarray(features, np.float32), device=device)
        with torch.inference_mode():
            return net.head_logits(f).float().cpu().numpy()

    def _checked(self, X) -> np.ndarray:
        check_is_fitted(self, "weights_")
        X = as_uint8_images(X)
        if tuple(X.shape[1:]) != self.image_shape_:
            raise ValueError(f"{type(self).__name__} was fitted on images of shape "
                             f"{self.image_shape_}; got images of shape {tuple(X.shape[1:])}")
        return X

    def logits(self, X, tta: bool | None = None) -> np.ndarray:
        """The network's logits ``(n, n_classes)`` for images ``X``; with ``tta`` (default:
        the ``tta`` setting) averaged with those of the mirrored images."""
        X = self._checked(X)
        tta = self.setting("tta") if tta is None else tta
        if tta:
            return self._run(X, lambda net, x: net.tta_logits(x) if hasattr(net, "tta_logits")
                             else 0.5 * (net(x) + net(x.flip(3))))
        return self._run(X, lambda net, x: net(x))

    def predict(self, X) -> np.ndarray:
        """The network's own class predictions (with the test-time flip where ``tta``)."""
        return self.classes_[np.argmax(self.logits(X), axis=1)]

    # -- fitted state ------------------------------------------------------------------
    def fitted_state(self) -> dict[str, np.ndarray | float | int | None]:
        """The classes, the input normalization, the training figures and the trained
        weights (one float array per state-dict entry, named ``net__<key>`` with the
        dots of the key as ``__``): plain numbers, no pickled objects."""
        check_is_fitted(self, "weights_")
        state: dict[str, Any] = {
            "image_shape_": np.asarray(self.image_shape_, dtype=np.int64),
            "classes_": np.asarray(self.classes_), "input_mean_": self.input_mean_,
            "input_std_": self.input_std_}
        state.update({k: getattr(self, k) for k in _TRAIN_STATS})
        for key, value in self.weights_.items():
            state[WEIGHT_PREFIX + key.replace(".", "__")] = np.asarray(value)
        return state

    def set_fitted_state(self, state: dict[str, Any]) -> ConvNet:
        """Restore a state from :meth:`fitted_state`: the network is rebuilt and gives the
        same features and predictions as the one trained.

        Raises
        ------
        ValueError
            When the state lacks something or its weights do not fit the network.
        """
        needed = {"image_shape_", "classes_", "input_mean_", "input_std_", *_TRAIN_STATS}
        missing = sorted(needed - state.keys())
        weights = {k[len(WEIGHT_PREFIX):].replace("__", "."): np.asarray(v)
                   for k, v in state.items() if k.startswith(WEIGHT_PREFIX)}
        if missing or not weights:
            raise ValueError(f"ConvNet: fitted state lacks "
                             f"{', '.join(missing) or 'the network weights'}")
        self.image_shape_ = tuple(int(v) for v in np.asarray(state["image_shape_"]))
        self.classes_ = np.asarray(state["classes_"])
        self.input_mean_ = np.asarray(state["input_mean_"], np.float32)
        self.input_std_ = np.asarray(state["input_std_"], np.float32)
        for key in _TRAIN_STATS:
            setattr(self, key, state[key])
        self.weights_ = weights
        self._net = None
        self.network()  # weights that do not fit are reported now
        return self

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_net", None)  # rebuilt from weights_ on demand
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = False
        return tags


__all__ = ["ConvNet", "augment", "lookahead_decay", "lookahead_update", "lr_factor",
           "resize_uint8"]
