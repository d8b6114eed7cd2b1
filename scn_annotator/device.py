"""Which device computes: CUDA, then Apple's MPS, then the CPU.

Training, inference, the worker and the simulator all ask here, so a GPU server
and a laptop run the same code.
"""

from __future__ import annotations

import torch

__all__ = ["best_device"]


def best_device() -> torch.device:
    """CUDA, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
