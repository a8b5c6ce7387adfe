"""The torch runtime every torch user shares: device, precision, out-of-memory back-off.

``cnn:*`` embeddings, ``kmeans-patches`` encoding and the torch classifiers
(``linear-svm`` and ``logreg`` on a GPU) resolve their device here; the extractors
also their precision, and they run their batches through :func:`run_batches`
(the CNN sizes its first batch with :func:`probe_batch_size`).

Every precision choice is explicit: ``fp32`` means IEEE float32 (CUDA's TF32 tensor
cores, which PyTorch allows for cuDNN convolutions by default, are turned off during
featbench's forward passes and fits, see :func:`tf32_mode`); ``tf32`` asks for them.
The resolved precision and the device type are part of the store key.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from .errors import ParameterError

#: accepted ``precision`` values; every one but ``auto`` names what the arithmetic is
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
#: ``n_samples * n_features`` from which a torch classifier with ``device="auto"`` fits on
#: CUDA (when there is one): below it a fit takes about a second on the CPU, and the copy to
#: the GPU and the kernel launches would eat most of the gain
AUTO_CUDA_MIN_SIZE = 10_000_000
OutOfMemoryError: type[BaseException] = getattr(torch, "OutOfMemoryError",
                                                torch.cuda.OutOfMemoryError)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA if available, else MPS, else CPU; anything else as torch parses it."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def check_device(spec: str) -> torch.device:
    """The torch device for ``spec``, or a ParameterError saying why it cannot be used."""
    try:
        device = resolve_device(str(spec))
    except RuntimeError as exc:
        raise ParameterError(f"invalid device {spec!r}: {str(exc).splitlines()[0]} "
                             f"(expected auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"device {spec!r}: CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ParameterError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA "
                                 f"device(s) here")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise ParameterError(f"device {spec!r}: MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ParameterError(f"device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def fit_device(device: str, size: int) -> torch.device:
    """The device a torch classifier fits on, for a problem of ``size = n * d`` numbers.

    ``auto``: CUDA when it is available and ``size >= AUTO_CUDA_MIN_SIZE``, else the CPU
    (never MPS: its float32 L-BFGS is not worth it for the sizes featbench fits). Any
    other spec is checked with :func:`check_device` (a :class:`ParameterError` says why
    it cannot be used).
    """
    if device == "auto":
        if torch.cuda.is_available() and size >= AUTO_CUDA_MIN_SIZE:
            return torch.device("cuda")
        return torch.device("cpu")
    return check_device(device)


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a forward pass on ``device`` runs in, for a ``precision`` option.

    ``auto``: bf16 on CUDA that supports it (else fp16), bf16 on CPUs with AVX-512 BF16
    or AMX (measured faster there), fp32 elsewhere. ``tf32``: TF32 tensor cores for
    float32 convolutions and matrix products, on CUDA devices that have them (compute
    capability 8.0 or later); elsewhere there are none, and it resolves to fp32 (the
    arithmetic that then runs). ``fp32``, ``bf16``, ``fp16``: as named.
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "tf32":
        return "tf32" if device.type == "cuda" and cuda_has_tf32(device) else "fp32"
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def cuda_has_tf32(device: torch.device) -> bool:
    """Whether the CUDA ``device`` has TF32 tensor cores (compute capability >= 8.0)."""
    return torch.cuda.get_device_capability(device)[0] >= 8


@contextlib.contextmanager
def tf32_mode(allow: bool) -> Iterator[None]:
    """TF32 allowed (or not) for CUDA float32 matrix products and cuDNN convolutions in
    the ``with`` block; the previous settings are restored afterwards.

    PyTorch allows TF32 in cuDNN convolutions by default, so an "fp32" forward pass
    on an Ampere or later GPU would otherwise run with 10-bit mantissas. The flags are
    process-wide; they have no effect on the CPU.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = bool(allow)
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """The arithmetic of a resolved precision for the ``with`` block: ``torch.autocast``
    for bf16 and fp16, and TF32 allowed for ``tf32`` only (:func:`tf32_mode`)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with tf32_mode(precision == "tf32"):
        if dtype is None:
            yield
        else:
            with torch.autocast(device.type, dtype=dtype):
                yield


def run_batches(fn: Callable[[int, int], torch.Tensor], n: int, batch_size: int,
                on_oom: Callable[[int], None] | None = None) -> tuple[list[torch.Tensor], int]:
    """Call ``fn(start, stop)`` over ``range(n)`` in batches; halve the batch on OOM.

    When a batch runs out of device memory the CUDA cache is emptied, the batch size
    halved and the same batch retried; a batch of one that does not fit re-raises.
    Returns the outputs and the batch size that worked.
    """
    out, start = [], 0
    while start < n:
        stop = min(n, start + batch_size)
        try:
            out.append(fn(start, stop))
        except OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if on_oom is not None:
                on_oom(batch_size)
            continue
        start = stop
    return out, batch_size


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error (CUDA, MPS, older CUDA builds)."""
    return isinstance(exc, OutOfMemoryError) or "out of memory" in str(exc)


def probe_batch_size(forward: Callable[[int], None], start: int = 64, cap: int = 1024,
                     memory_used: Callable[[], float] | None = None,
                     budget: float | None = None) -> int:
    """The largest batch ``start * 2**k <= cap`` that ``forward(batch)`` runs in.

    The batch doubles from ``start`` while ``forward`` fits and, when ``memory_used``
    (bytes the last call needed, e.g. CUDA's peak allocation) and ``budget`` are
    given, while that stays within ``budget``; a batch over the budget is not taken
    unless it is ``start`` itself. When ``start`` runs out of memory the batch is
    halved until one fits (a batch of one that does not fit re-raises).
    """
    best, batch = 0, max(1, int(start))
    while True:
        try:
            forward(batch)
        except OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if best:
                return best
            if batch == 1:
                raise
            batch //= 2
            continue
        over = memory_used is not None and budget is not None and memory_used() > budget
        if over and best:
            return best
        best = batch
        if over or batch < start or batch * 2 > cap:
            return best
        batch *= 2
