"""The SCN's heatmaps of one image, in memory and on disk (one compressed file per model version and image).

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

from ..engine.geometry import InputTransform
from .atomic import atomic_open

__all__ = ["Heatmaps", "load_heatmaps", "orient", "save_heatmaps"]


def orient(final: np.ndarray, local: np.ndarray, spatial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LA and SC heatmaps with the sign that makes each landmark's peak positive.

    Only the product LA x SC is trained to match the target, so for any landmark
    the network is free to learn -LA and -SC instead (and it does: tanh makes SC
    symmetric). At the peak of the final heatmap both have the same sign; multiplying
    both by it makes "the LA peak" and "where SC is high" mean what they should, for
    the acquisition scores and for the overlays alike.
    """
    n = final.shape[0]
    peak = final.reshape(n, -1).argmax(axis=1)
    sign = np.sign(spatial.reshape(n, -1)[np.arange(n), peak])
    sign[sign == 0] = 1.0
    return local * sign[:, None, None], spatial * sign[:, None, None]


@dataclass
class Heatmaps:
    """The three heatmap stacks (N, h, w) at network resolution, and how they map onto the image."""

    final: np.ndarray
    local: np.ndarray
    spatial: np.ndarray | None  # None for the U-Net baseline
    transform: InputTransform

    def oriented(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(LA, SC) with each landmark's peak positive (see :func:`orient`)."""
        if self.spatial is None:
            return self.local, None
        return orient(self.final, self.local, self.spatial)


def save_heatmaps(path: Path, heatmaps: Heatmaps) -> Path:
    """Write atomically (temporary file, then rename)."""
    final, local, spatial, transform = heatmaps.final, heatmaps.local, heatmaps.spatial, heatmaps.transform
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


def load_heatmaps(path: Path) -> Heatmaps:
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
        return Heatmaps(data["final"].astype(np.float32), data["local"].astype(np.float32), spatial, transform)
