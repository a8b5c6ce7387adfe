"""The architectures ``convnet:<arch>`` trains and each one's training recipe (torch-free).

``featbench list`` and ``describe`` read these without importing torch; the networks
themselves are in :mod:`featbench.features.convnet_archs`. A ``None`` parameter of
:class:`~featbench.features.convnet.ConvNet` takes the value of its architecture's
recipe here.
"""

from __future__ import annotations

from typing import Any

#: architectures, in the order ``featbench describe`` lists them
ARCHS = ("convnetjs", "resnet-small", "airbench")

#: the value of a parameter left at None that an architecture's recipe does not name
DEFAULTS: dict[str, Any] = {"momentum": 0.9, "schedule": "onecycle", "warmup": 0.2,
                            "flip": True, "lookahead": False}

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
    # airbench94 (Jordan 2024, arXiv:2404.00498; legacy/airbench94.py of
    # github.com/KellerJordan/cifar10-airbench): frozen 2x2 whitening convolution, GELU,
    # conv groups 64/256/256, 9.9 epochs of batch 1024, SGD Nesterov with momentum 0.85;
    # lr 11.5 and weight decay 0.0153 are airbench's decoupled values (per 1024 images,
    # see AirbenchNet.param_groups); its warm-up/decay schedule (23 % warm-up from 0.2,
    # then down to 0.07), lookahead EMA, alternating flip, label smoothing 0.2 and its
    # test-time augmentation (mirror and 1-px translations)
    "airbench": {"widths": (64, 256, 256), "epochs": 9.9, "batch_size": 1024, "lr": 11.5,
                 "weight_decay": 0.0153, "momentum": 0.85, "schedule": "airbench",
                 "warmup": 0.23, "label_smoothing": 0.2, "flip": "alternate",
                 "lookahead": True, "tta": True},
}

#: learning-rate schedules (see :func:`featbench.features.convnet.lr_factor`)
SCHEDULES = ("onecycle", "cosine", "constant", "airbench")
#: training flips: ``True`` / ``"random"`` (each image with probability 1/2 every epoch),
#: ``"alternate"`` (airbench: a random half at first, then every image the other way
#: round each epoch), ``False`` (none)
FLIPS = (True, False, "random", "alternate")
#: arithmetic of training and inference (see :mod:`featbench.runtime`)
CONVNET_PRECISIONS = ("fp32", "tf32", "bf16")
