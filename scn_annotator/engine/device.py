"""Which device computes, and in which precision.

Training, inference, the worker and the simulator all ask here, so a GPU server
and a laptop run the same code.
"""

from __future__ import annotations

import os

import torch

__all__ = ["best_device", "mixed_precision", "training_layout"]


def best_device() -> torch.device:
    """CUDA, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """The dtype training's convolutions run in, or None for plain fp32.

    float16 on CUDA (with a gradient scaler). bfloat16 on a CPU whose instructions do
    it natively (AVX512-BF16, AMX): there it halves the convolutions' time, and its
    fp32 exponent needs no scaler; elsewhere bf16 is emulated and slower, so fp32.
    Weights, the loss and the optimiser stay fp32 either way (autocast). Set
    ``SCN_CPU_BF16=0`` to train in fp32 on such a CPU. Accuracy against fp32 is
    measured in benchmarks/RESULTS.md.
    """
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and os.environ.get("SCN_CPU_BF16", "1") != "0" and _cpu_has_bf16():
        return torch.bfloat16
    return None


def training_layout(device: torch.device) -> torch.memory_format:
    """Channels-last on the CPU, where oneDNN's convolutions are 10-20 % faster with it."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format
