"""What an image looks like, as a vector: so that a pool can be clustered and its typical images found.

Two kinds, stored per image in the project (``db/embeddings.py``):

- ``pixels``, before any model exists: the radiograph shrunk to a small grid (aspect
  kept, padded), its intensities standardised per image. Radiographs of one project
  differ mostly by framing, size of the patient, pose and exposure, which a 24 x 24
  thumbnail already shows; it costs a read and a resize (milliseconds), so 400
  imported radiographs are ranked right after the import.
- ``features``, once a model exists: the local-appearance component's deepest level,
  averaged over the image (and its maximum), taken in the same pass that predicts
  (``Predictor.predict(embed=True)``). It sees what the model has learned to look at.

Distances between embeddings are taken after :func:`project` (centred, scaled to the
pool's spread and reduced to its leading components), so that no single pixel or
channel dominates.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "FEATURES",
    "GRADIENTS",
    "KINDS",
    "MODEL_FREE",
    "PIXELS",
    "THUMBNAIL",
    "gradient_embedding",
    "model_free_embedding",
    "pixel_embedding",
    "project",
]

PIXELS = "pixels"
GRADIENTS = "gradients"
FEATURES = "features"
KINDS = (PIXELS, GRADIENTS, FEATURES)
#: The embeddings that need no model.
MODEL_FREE = (PIXELS, GRADIENTS)
#: The model-free embedding's grid (height, width): a thumbnail, aspect kept.
THUMBNAIL = (24, 24)


def pixel_embedding(pixels: np.ndarray, grid: tuple[int, int] = THUMBNAIL) -> np.ndarray:
    """(grid h * grid w,) float32: the image fitted into ``grid`` (aspect kept, centred), standardised.

    The padding is the image's mean, so an image's shape shows as where its content ends,
    not as a black frame that all tall images share.
    """
    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"a pixel embedding needs a 2-D image, not shape {image.shape}")
    gh, gw = grid
    scale = min(gh / image.shape[0], gw / image.shape[1])
    h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    # an area average before the resize, so a 2,000 px radiograph does not alias into the thumbnail
    step = max(1, int(1 / scale) // 2)
    if step > 1:
        image = ndimage.uniform_filter(image, size=step)[::step, ::step]
    small = ndimage.zoom(image, (h / image.shape[0], w / image.shape[1]), order=1)[:h, :w]
    low, high = np.percentile(small, [1, 99])
    small = np.clip(small, low, high)
    small = (small - small.mean()) / max(float(small.std()), 1e-6)
    out = np.zeros(grid, dtype=np.float32)
    top, left = (gh - small.shape[0]) // 2, (gw - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out.ravel()


def gradient_embedding(pixels: np.ndarray, grid: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Histograms of oriented gradients (Dalal and Triggs 2005) of a 64 x 64 thumbnail: where edges run which
    way (a hand's fingers, a column's tilt), not how bright the exposure is."""
    from skimage.feature import hog

    thumb = pixel_embedding(pixels, grid).reshape(grid)
    return hog(thumb, orientations=8, pixels_per_cell=(8, 8), cells_per_block=(2, 2)).astype(np.float32)


def model_free_embedding(kind: str, pixels: np.ndarray) -> np.ndarray:
    """The ``kind`` (``pixels`` or ``gradients``) embedding of an image, for a pool without a model."""
    if kind == PIXELS:
        return pixel_embedding(pixels)
    if kind == GRADIENTS:
        return gradient_embedding(pixels)
    raise ValueError(f"{kind!r} is not a model-free embedding ({', '.join(MODEL_FREE)})")


def project(vectors: np.ndarray, components: int = 16) -> np.ndarray:
    """(I, D) -> (I, <= components): centred, each dimension scaled to unit spread, the leading principal
    components kept (the rest is mostly noise at a pool's size). Rows stay in their order."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        return x.reshape(len(x), -1)
    x = x - x.mean(axis=0)
    x = x / np.maximum(x.std(axis=0), 1e-9)
    if len(x) < 3:
        return x
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    k = max(1, min(components, len(s)))
    return u[:, :k] * s[:k]
