"""The networks ``convnet:<arch>`` trains, in plain torch.

Each network maps normalized float images ``(n, 3, size, size)`` to logits and splits
into :meth:`features` (the penultimate activations: what feeds the final linear layer)
and :meth:`head` applied to them: ``net(x) == net.head_logits(net.features(x))``.

Optional methods of a network class are hooks of the training loop
(:meth:`~featbench.features.convnet.ConvNet.fit`), used where present:
``init_from_data(x)`` (data-dependent initialization from the normalized training
images), ``start_epoch(epoch)`` (before each epoch), ``param_groups(lr, weight_decay,
momentum, batch_size)`` (the optimizer's parameter groups), ``tta_logits(x)`` (the
test-time augmentation), ``drop_last`` (a class attribute: drop the last partial batch of
every epoch) and ``min_size(n_stages)`` (the smallest input side).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNetJS(nn.Module):
    """ConvNetJS's CIFAR-10 demo network.

    Per stage a 5x5 convolution (stride 1, padding 2) with ``widths[i]`` filters, ReLU
    and 2x2 max-pooling (stride 2); then one linear layer on the flattened last map
    (``widths[-1] * (size // 2**len(widths))**2`` numbers: 20 x 4 x 4 = 320 at 32 px).

    References
    ----------
    .. [1] A. Karpathy, ConvNetJS CIFAR-10 demo,
       https://cs.stanford.edu/people/karpathy/convnetjs/demo/cifar10.html
    """

    def __init__(self, n_classes: int, size: int = 32, widths: tuple[int, ...] = (16, 20, 20)
                 ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = 3, size
        for width in widths:
            layers += [nn.Conv2d(channels, width, 5, stride=1, padding=2), nn.ReLU(),
                       nn.MaxPool2d(2, 2)]
            channels, side = width, side // 2
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * side * side, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened output of the last pooling stage (what ``fc`` reads)."""
        return self.body(x).flatten(1)

    def head_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution (no bias), batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class Stage(nn.Module):
    """Convolution to ``c_out`` channels, 2x2 max-pool, BN, ReLU; then a residual block
    ``x + relu(bn(conv(relu(bn(conv(x))))))``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(c_out)
        self.res = nn.Sequential(conv_bn(c_out, c_out), conv_bn(c_out, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.pool(self.conv(x))))
        return x + self.res(x)


class ResNetSmall(nn.Module):
    """A residual network for 32 px images in the manner of airbench and ResNet-9.

    A 3x3 conv-BN-ReLU stem with ``widths[0] // 2`` channels; one :class:`Stage` per
    width (each halves the side); global max-pooling over the last map (the features,
    ``widths[-1]`` numbers); a linear layer without bias whose output is scaled by
    ``1/8`` (Page's ResNet-9; airbench scales by 1/9).

    References
    ----------
    .. [1] K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024
       (airbench, https://github.com/KellerJordan/cifar10-airbench).
    .. [2] D. Page, "How to train your ResNet", Myrtle.ai blog, 2018 (ResNet-9).
    """

    scale = 0.125

    def __init__(self, n_classes: int, size: int = 32,
                 widths: tuple[int, ...] = (64, 256, 256)) -> None:
        super().__init__()
        stem = max(1, widths[0] // 2)
        self.stem = conv_bn(3, stem)
        self.stages = nn.Sequential(*(Stage(c_in, c_out) for c_in, c_out
                                      in zip((stem, *widths[:-1]), widths, strict=True)))
        self.fc = nn.Linear(widths[-1], n_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Global max-pool of the last stage's output."""
        return torch.amax(self.stages(self.stem(x)), dim=(2, 3))

    def head_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.amax(self.stages(self.stem(x)), dim=(2, 3))) * self.scale


class AirbenchBatchNorm(nn.BatchNorm2d):
    """airbench's batch norm: no learned scale (the weight stays 1), a learned shift,
    ``eps=1e-12`` and running statistics updated with airbench's momentum 0.6 (torch's
    ``momentum=1 - 0.6``)."""

    def __init__(self, channels: int, momentum: float = 0.6, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad_(False)


class AirbenchConv(nn.Conv2d):
    """airbench's convolution: torch's initialization, then the first ``in_channels``
    filters set to the identity (:func:`torch.nn.init.dirac_`), a zero bias."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, padding: int = 1,
                 bias: bool = False) -> None:
        super().__init__(c_in, c_out, kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])


class AirbenchGroup(nn.Module):
    """airbench's conv group: conv, 2x2 max-pool, BN, GELU, conv, BN, GELU."""

    def __init__(self, c_in: int, c_out: int, momentum: float = 0.6) -> None:
        super().__init__()
        self.conv1 = AirbenchConv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = AirbenchBatchNorm(c_out, momentum)
        self.conv2 = AirbenchConv(c_out, c_out)
        self.norm2 = AirbenchBatchNorm(c_out, momentum)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


def patch_whitening(x: torch.Tensor, kernel_size: int = 2, eps: float = 5e-4
                    ) -> torch.Tensor:
    """airbench's whitening filters from images ``x`` ``(n, c, h, w)``: the
    eigenvectors of the (uncentered) covariance ``P.T @ P / m`` of all ``m`` flattened
    ``kernel_size`` x ``kernel_size`` patches, in decreasing order of eigenvalue, each
    divided by ``sqrt(eigenvalue + eps)``, followed by their negatives:
    ``(2 * c * k * k, c, k, k)`` float32 (the covariance in float64 here; airbench's in
    float32)."""
    c, k = x.shape[1], int(kernel_size)
    patches = x.double().unfold(2, k, 1).unfold(3, k, 1)  # (n, c, h', w', k, k)
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
    cov = flat.T @ flat / max(1, len(flat))
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]
    scaled = scaled.reshape(c * k * k, c, k, k).float()
    return torch.cat((scaled, -scaled))


class AirbenchNet(nn.Module):
    """airbench94's network (Jordan 2024), for 32 px images and any side above
    ``2**len(widths)``.

    A frozen 2x2 convolution (no padding) whose ``2 * 12`` filters whiten the image
    patches (:meth:`init_from_data`; its bias is trained for the first
    ``whiten_bias_epochs`` epochs only, :meth:`start_epoch`), GELU; one
    :class:`AirbenchGroup` per width (64, 256, 256); a global max-pool (the features,
    ``widths[-1]`` numbers: airbench's ``MaxPool2d(3)`` of the 3x3 map at 32 px); a
    linear layer without bias, its output scaled by 1/9.

    Departures from airbench94: the global max-pool instead of ``MaxPool2d(3)`` (the
    same at 32 px, any side here); float32 weights with the autocast of ``precision``
    instead of float16 weights with float32 batch norms.

    References
    ----------
    .. [1] K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024,
       arXiv:2404.00498 (airbench94: ``legacy/airbench94.py`` of
       https://github.com/KellerJordan/cifar10-airbench).
    """

    #: logits scale (airbench's ``scaling_factor``)
    scale = 1 / 9
    #: epochs the whitening bias is trained for (airbench's ``whiten_bias_epochs``)
    whiten_bias_epochs = 3
    #: learning-rate (not weight-decay) multiplier of the batch-norm shifts
    bias_scaler = 64.0
    #: batch-norm momentum (airbench's convention: the weight of the old statistics)
    bn_momentum = 0.6
    #: epsilon added to the eigenvalues of the whitening filters
    whiten_eps = 5e-4
    #: every epoch in full batches (airbench's training loader drops the last one)
    drop_last = True

    def __init__(self, n_classes: int, size: int = 32,
                 widths: tuple[int, ...] = (64, 256, 256)) -> None:
        super().__init__()
        self.whiten = AirbenchConv(3, 2 * 3 * 2 * 2, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.activ = nn.GELU()
        self.groups = nn.Sequential(*(AirbenchGroup(c_in, c_out, self.bn_momentum)
                                      for c_in, c_out in zip((self.whiten.out_channels,
                                                              *widths[:-1]), widths,
                                                             strict=True)))
        self.fc = nn.Linear(widths[-1], n_classes, bias=False)

    @staticmethod
    def min_size(n_stages: int) -> int:
        """Smallest side: the whitening takes one pixel, each group halves the side."""
        return 2 ** n_stages + 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Global max-pool of the last group's output."""
        return torch.amax(self.groups(self.activ(self.whiten(x))), dim=(2, 3))

    def head_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.features(x))

    # -- training hooks ----------------------------------------------------------------
    def init_from_data(self, x: torch.Tensor) -> None:
        """Set the whitening filters from normalized training images ``x``
        (:func:`patch_whitening`; airbench uses the first 5,000 training images)."""
        weight = patch_whitening(x.detach().float().cpu(), self.whiten.kernel_size[0],
                                 self.whiten_eps)
        with torch.no_grad():
            self.whiten.weight.copy_(weight.to(self.whiten.weight.device))

    def start_epoch(self, epoch: int) -> None:
        """Train the whitening bias during the first :attr:`whiten_bias_epochs` only."""
        self.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)

    def param_groups(self, lr: float, weight_decay: float, momentum: float,
                     batch_size: int) -> list[dict]:
        """airbench's SGD parameter groups for the *mean* loss of a batch.

        ``lr`` and ``weight_decay`` are airbench's decoupled values (per 1,024 images;
        airbench94: 11.5 and 0.0153): with ``kilostep = 1024 (1 + 1 / (1 - momentum))``
        airbench gives torch's SGD ``lr / kilostep`` (times :attr:`bias_scaler` for the
        batch-norm shifts) and a decay of ``weight_decay * batch_size / kilostep`` per
        step, on the summed loss. Here the loss is the batch mean, so each group's
        learning rate is ``batch_size`` times airbench's and its ``weight_decay`` is that
        decay divided by the group's learning rate: the same steps. Frozen parameters (the
        whitening filters, the batch-norm scales) are left out.
        """
        kilostep = 1024 * (1 + 1 / (1 - momentum))
        base = lr / kilostep * batch_size
        decay = weight_decay * batch_size / kilostep
        norm_ids = {id(m.bias) for m in self.modules() if isinstance(m, AirbenchBatchNorm)}
        trained = [p for p in self.parameters() if p.requires_grad]
        norms = [p for p in trained if id(p) in norm_ids]
        others = [p for p in trained if id(p) not in norm_ids]
        lr_norms = base * self.bias_scaler
        return [{"params": norms, "lr": lr_norms, "weight_decay": decay / lr_norms},
                {"params": others, "lr": base, "weight_decay": decay / base}]

    def tta_logits(self, x: torch.Tensor) -> torch.Tensor:
        """airbench's test-time augmentation (``tta_level=2``): the mean of the logits of
        the image and its mirror image (weight 1/2), and of the same two for the image
        translated by one pixel up-left and down-right (reflection padding; 1/4 each)."""
        def mirror(v: torch.Tensor) -> torch.Tensor:
            return 0.5 * self(v) + 0.5 * self(v.flip(-1))

        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = 0.5 * (mirror(padded[:, :, 0:h, 0:w]) + mirror(padded[:, :, 2:h + 2, 2:w + 2]))
        return 0.5 * mirror(x) + 0.5 * shifted


NETWORKS = {"convnetjs": ConvNetJS, "resnet-small": ResNetSmall, "airbench": AirbenchNet}


def build_network(arch: str, n_classes: int, size: int, widths: tuple[int, ...]) -> nn.Module:
    """The untrained network ``arch`` (initialized from torch's global generator)."""
    return NETWORKS[arch](n_classes, size, tuple(int(w) for w in widths))
