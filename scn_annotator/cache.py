"""Heatmaps on disk: one compressed file per model version and image.

The napari app shows the LA, SC and final heatmaps of the image it opens without
running the network, so the worker writes them once, after predicting. Values are
stored as float16 (the overlay needs no more, and the files stay small) together
with the transform that lays them over the original image. Only numpy: the app
reads these without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .geometry import InputTransform

__all__ = ["CachedHeatmaps", "load_heatmaps", "save_heatmaps"]


@dataclass
class CachedHeatmaps:
    final: np.ndarray  # (N, h, w) float32
    local: np.ndarray
    spatial: np.ndarray | None
    transform: InputTransform


def save_heatmaps(
    path: Path,
    final: np.ndarray,
    local: np.ndarray,
    spatial: np.ndarray | None,
    transform: InputTransform,
) -> Path:
    """Write atomically (temporary file, then rename)."""
    arrays = {
        "final": final.astype(np.float16),
        "local": local.astype(np.float16),
        "scale": np.asarray(transform.scale),
        "offset": np.asarray(transform.offset),
        "input_size": np.asarray(transform.input_size),
        "image_size": np.asarray(transform.image_size),
        "spacing": np.asarray(transform.spacing if transform.spacing else (np.nan, np.nan)),
    }
    if spatial is not None:
        arrays["spatial"] = spatial.astype(np.float16)
    with atomic_open(path, suffix=".npz") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_heatmaps(path: Path) -> CachedHeatmaps:
    with np.load(path) as data:
        spacing = tuple(float(v) for v in data["spacing"])
        transform = InputTransform(
            scale=tuple(float(v) for v in data["scale"]),
            offset=tuple(float(v) for v in data["offset"]),
            input_size=tuple(int(v) for v in data["input_size"]),
            image_size=tuple(int(v) for v in data["image_size"]),
            spacing=None if np.isnan(spacing[0]) else spacing,
        )
        spatial = data["spatial"].astype(np.float32) if "spatial" in data else None
        return CachedHeatmaps(data["final"].astype(np.float32), data["local"].astype(np.float32), spatial, transform)
