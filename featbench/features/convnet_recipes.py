"""The architectures ``convnet:<arch>`` trains and each one's training recipe (torch-free).

``featbench list`` and ``describe`` read these without importing torch; the networks
themselves are in :mod:`featbench.features.convnet_archs`. A ``None`` parameter of
:class:`~featbench.features.convnet.ConvNet` takes the value of its architecture's
recipe here.
"""

from __future__ import annotations

from typing import Any

#: architectures, in the order ``featbench describe`` lists them
ARCHS = ("convnetjs", "resnet-small")

#: per-architecture defaults of the parameters left at None
RECIPES: dict[str, dict[str, Any]] = {
    # ConvNetJS's CIFAR-10 demo network: 5x5 convolutions with 16, 20, 20 filters. The demo
    # trains with adadelta, batch 4, L2 decay 1e-4; here SGD with Nesterov momentum, batch
    # 64 and a one-cycle schedule, the same weight decay.
    "convnetjs": {"widths": (16, 20, 20), "epochs": 30, "batch_size": 64, "lr": 0.02,
                  "weight_decay": 1e-4, "label_smoothing": 0.0, "tta": False},
    # a residual network for 32 px in the manner of airbench94 / Page's ResNet-9: stage
    # widths 64, 256, 256, batch 512, peak learning rate 0.4 (mean loss), weight decay 5e-4,
    # label smoothing 0.2, test-time flip averaging
    "resnet-small": {"widths": (64, 256, 256), "epochs": 10, "batch_size": 512, "lr": 0.4,
                     "weight_decay": 5e-4, "label_smoothing": 0.2, "tta": True},
}

#: learning-rate schedules (see :func:`featbench.features.convnet.lr_factor`)
SCHEDULES = ("onecycle", "cosine", "constant")
#: arithmetic of training and inference (see :mod:`featbench.runtime`)
CONVNET_PRECISIONS = ("fp32", "tf32", "bf16")
