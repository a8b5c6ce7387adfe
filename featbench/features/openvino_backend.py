"""Run a CNN's forward pass with OpenVINO on the CPU (fp32), torch as the fallback.

On this project's 2-core CPUs OpenVINO's fp32 CPU plugin runs EfficientNet-Lite and
ResNet forward passes several times faster than eager PyTorch (fused convolutions,
its own thread pool; ``benchmarks/bench_cnn.py`` measures both in one run), with the
same numbers to float32 rounding (tests compare the two to 1e-4 relative). It is an
optional dependency (``pip install "featbench[openvino]"``, part of ``[dev]``); the
backend a run used is in its store key and records (``runtime_["backend"]``).

Departure from the eager path: OpenVINO's CPU plugin may reorder float32 sums
(different blocking of the same convolutions), so features differ from torch's in
the last bits; ``precision="fp32"`` is kept (``INFERENCE_PRECISION_HINT=f32``: no
bf16 on AMX CPUs, where OpenVINO would otherwise default to it).
"""

from __future__ import annotations

import importlib.util
import threading
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import ParameterError

BACKENDS = ("auto", "torch", "openvino")


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported."""
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(backend: str, device: torch.device, precision: str) -> str:
    """The backend a forward pass runs on: ``backend`` as asked, ``auto`` being OpenVINO
    for fp32 on the CPU when it is installed, else torch.

    Raises
    ------
    ParameterError
        An unknown backend, or ``openvino`` asked for where it cannot run (not
        installed; another device or precision).
    """
    if backend not in BACKENDS:
        raise ParameterError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    usable = device.type == "cpu" and precision == "fp32"
    if backend == "openvino":
        if not usable:
            raise ParameterError(f"backend 'openvino' runs fp32 on the CPU; got precision "
                                 f"{precision} on {device.type} (use backend=torch or auto)")
        if not openvino_available():
            raise ParameterError("backend 'openvino' needs the openvino package: "
                                 "pip install 'featbench[openvino]'")
        return "openvino"
    if backend == "auto" and usable and openvino_available():
        return "openvino"
    return "torch"


class CompiledNet:
    """``net`` compiled by OpenVINO for fp32 CPU inference on ``(n, 3, size, size)``
    inputs of any batch size; called like the module (returns its first output)."""

    def __init__(self, net: nn.Module, size: int, threads: int) -> None:
        import openvino as ov

        example = torch.zeros(1, 3, size, size)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notices
            model = ov.convert_model(net, example_input=example)
        model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, size, size])})
        self.compiled = ov.Core().compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": max(1, int(threads))})
        self._lock = threading.Lock()  # one infer request: calls come one at a time

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        data = np.ascontiguousarray(x.detach().float().cpu().numpy())
        with self._lock:
            out = self.compiled(data)[0]
        return torch.from_numpy(np.array(out, dtype=np.float32))
