"""torch's default random generators, used without changing them for anyone else.

Weight init, dropout and MC-dropout passes draw from the default generators, which
take no ``generator`` argument. Each of those draws happens inside
``torch.random.fork_rng`` from a state its owner keeps (a trainer, one image's
passes), so a run is repeatable and resumable and the caller's random numbers are
left as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["private_rng", "seeded_rng"]


def _cuda(device: torch.device) -> list[torch.device]:
    """The devices whose generator ``fork_rng`` must save besides the CPU's."""
    return [device] if device.type == "cuda" else []


@contextlib.contextmanager
def private_rng(state: dict[str, torch.Tensor], device: torch.device) -> Iterator[None]:
    """Run with torch's default generators set to ``state`` (updated on exit), then restore the caller's.

    Weight init and dropout draw from the default generators, which take no
    ``generator`` argument; forking them keeps a run repeatable and resumable
    without changing anyone else's random numbers.
    """
    cuda = _cuda(device)
    with torch.random.fork_rng(devices=cuda):
        torch.set_rng_state(state["cpu"])
        if cuda and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
        try:
            yield
        finally:
            state["cpu"] = torch.get_rng_state()
            if cuda:
                state["cuda"] = torch.cuda.get_rng_state(device)


def seeded_rng(seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A state for :func:`private_rng`, as ``torch.manual_seed(seed)`` would leave the default generators."""
    cuda = _cuda(device)
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        state = {"cpu": torch.get_rng_state()}
        if cuda:
            state["cuda"] = torch.cuda.get_rng_state(device)
    return state
