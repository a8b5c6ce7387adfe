"""The networks ``convnet:<arch>`` trains, in plain torch.

Each network maps normalized float images ``(n, 3, size, size)`` to logits and splits
into :meth:`features` (the penultimate activations: what feeds the final linear layer)
and :meth:`head` applied to them: ``net(x) == net.head_logits(net.features(x))``.
"""

from __future__ import annotations

import torch
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


NETWORKS = {"convnetjs": ConvNetJS, "resnet-small": ResNetSmall}


def build_network(arch: str, n_classes: int, size: int, widths: tuple[int, ...]) -> nn.Module:
    """The untrained network ``arch`` (initialized from torch's global generator)."""
    return NETWORKS[arch](n_classes, size, tuple(int(w) for w in widths))
