"""A generated spine: a curved chain of look-alike "vertebrae" with four corners each.

The demo and test counterpart of ``../shared/data/spine``: every vertebra is the same
bright, slightly tilted box, so a local detector finds *a* corner, never *which*
one; only the order along the column tells them apart. Corners are named as in the
real set (``V1_tl``, ``V1_tr``, ``V1_bl``, ``V1_br``, ...), so the objects come from
the names. The column bends (a C or an S, as in scoliosis) and the vertebrae tilt
with it, which is what the Cobb angle measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.draw import polygon
from skimage.filters import gaussian

from ..engine.measurements import CORNERS
from .sample_project import write_phantoms

__all__ = ["CORNERS", "generate_spine_sample", "render_spine", "spine_names"]


def spine_names(vertebrae: int) -> list[str]:
    return [f"V{v + 1}_{c}" for v in range(vertebrae) for c in CORNERS]


def render_spine(
    rng: np.random.Generator, size: tuple[int, int] = (384, 160), vertebrae: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W) uint8 and its corners (4 * vertebrae, 2) as (x, y), in the order of :func:`spine_names`."""
    h, w = size
    top, bottom = 0.1 * h + rng.uniform(-6, 6), 0.92 * h + rng.uniform(-6, 6)
    step = (bottom - top) / vertebrae
    amplitude, waves, phase = rng.uniform(-0.12, 0.12) * w, rng.choice([0.5, 1.0]), rng.uniform(0, 0.3)
    t = np.linspace(0, 1, vertebrae)
    cx = w / 2 + rng.uniform(-6, 6) + amplitude * np.sin(np.pi * (2 * waves * t + phase))
    cy = top + step * (np.arange(vertebrae) + 0.5)
    slope = np.gradient(cx, cy)
    image = np.zeros(size)
    corners = []
    for v in range(vertebrae):
        angle = np.arctan(slope[v]) + rng.normal(0, 0.04)
        half_w, half_h = 0.2 * w * rng.uniform(0.95, 1.05), 0.33 * step
        along = np.array([np.sin(angle), np.cos(angle)])  # down the column
        across = np.array([along[1], -along[0]])
        c = np.array([cx[v], cy[v]])
        box = [c - half_w * across - half_h * along, c + half_w * across - half_h * along]
        box += [c - half_w * across + half_h * along, c + half_w * across + half_h * along]
        corners += box
        ring = np.array([box[0], box[1], box[3], box[2]])
        rr, cc = polygon(ring[:, 1], ring[:, 0], shape=size)
        image[rr, cc] = 1.0
    soft = np.zeros(size)
    soft[:, int(0.15 * w) : int(0.85 * w)] = 1.0
    pixels = 20 + 60 * gaussian(soft, 8) + 110 * gaussian(image, 1.2)
    pixels *= rng.uniform(0.85, 1.15)
    pixels += rng.normal(0, 5, size) + 80 * gaussian(rng.normal(0, 1, size), 10)
    return np.clip(pixels, 0, 255).astype(np.uint8), np.array(corners, dtype=np.float64)


def generate_spine_sample(
    folder: str | Path,
    count: int = 24,
    seed: int = 0,
    size: tuple[int, int] = (384, 160),
    vertebrae: int = 8,
    spacing: float = 0.5,
) -> Path:
    """Write ``count`` generated spines (``.mha`` with spacing) and ``labels.csv`` into ``folder``; returns it."""
    rng = np.random.default_rng(seed)
    renders = (render_spine(rng, size, vertebrae) for _ in range(count))
    return write_phantoms(folder, "spine", spine_names(vertebrae), renders, spacing)
