"""Model files that are written atomically and can never execute code when loaded.

A checkpoint is a plain dictionary of tensors, numbers, strings and lists. It is
written to a temporary file in the same folder and renamed into place, so a crash
or a kill leaves either the old file or the new one, never half of one. It is read
with ``torch.load(weights_only=True)`` only: a pickle that tries to build an
arbitrary object is refused, so a model file received from someone else cannot
run code on the annotator's machine.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io.atomic import atomic_open

__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint"]

FORMAT = "scn-annotator/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plain data and tensors only) to ``path``."""
    with atomic_open(path) as fh:
        torch.save({"format": FORMAT, **payload}, fh)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; never unpickles code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable model file (not a PyTorch archive)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f"it asks to import {found[1]}" if found else "it holds objects other than weights"
        raise CheckpointError(
            f"{path}: refused to load: {what}; a model file may only hold weights and plain data"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable model file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an scn-annotator model file")
    return data
