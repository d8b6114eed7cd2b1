"""From files on disk to tensors the network trains on, each image decoded once.

:func:`prepare_input` is *the* path from a radiograph to a network input; training
validation and inference both use it, so the model is validated on exactly what it
will see. For training, every image is also kept as a cache at a higher resolution
than the network input, from which augmentation samples; decoding a 2,000 x 2,000
JPEG for every step would make the CPU wait on the disk, not on the network.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LabelFileError, ScnError
from ..io.images import Radiograph, SpacingSource, image_id, read_image
from ..io.landmark_files import LandmarkTable
from .geometry import InputTransform, SpacingRule, fit_transform, inside_image
from .objects import LandmarkObjects

__all__ = [
    "Normalisation",
    "LabelledImage",
    "Sample",
    "build_samples",
    "cache_size",
    "labelled_images",
    "match_images",
    "prepare_input",
    "resample_to_input",
]

log = logging.getLogger(__name__)

#: Intensity every pixel outside the image (padding, or what augmentation brings in) gets.
BACKGROUND = -1.0


def resample_to_input(
    pixels: np.ndarray | torch.Tensor,
    transform: InputTransform,
    fill: float = 0.0,
) -> torch.Tensor:
    """The image as the network sees it: anti-aliased resize into the padded input canvas.

    Returns a float32 tensor of shape (height, width) on the pixels' device.
    """
    t = torch.as_tensor(pixels, dtype=torch.float32)
    in_h, in_w = transform.input_size
    w, h = transform.image_size
    new_w, new_h = round(w * transform.scale[0]), round(h * transform.scale[1])
    small = F.interpolate(t[None, None], size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[
        0, 0
    ]
    canvas = torch.full((in_h, in_w), fill, dtype=torch.float32, device=t.device)
    ox, oy = int(transform.offset[0]), int(transform.offset[1])
    canvas[oy : oy + new_h, ox : ox + new_w] = small
    return canvas


@dataclass(frozen=True)
class Normalisation:
    """Robust intensity window: the ``low`` and ``high`` percentiles map to -1 and 1.

    Percentiles rather than the paper's fixed ``(x - 128) / 128`` because 16-bit
    DICOMs and 8-bit JPEGs must look alike to the network.
    """

    low: float = 0.5
    high: float = 99.5

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        flat = pixels.flatten()
        if flat.numel() > 200_000:  # percentiles of a subsample are as good and much cheaper
            flat = flat[:: flat.numel() // 200_000 + 1]
        q = torch.quantile(flat, flat.new_tensor([self.low / 100, self.high / 100]))
        lo, hi = float(q[0]), float(q[1])
        if hi - lo < 1e-6:
            hi = lo + 1.0
        return ((pixels - lo) * (2.0 / (hi - lo)) - 1.0).clamp(-1.0, 1.0)

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def prepare_input(
    image: Radiograph,
    input_size: tuple[int, int],
    normalisation: Normalisation,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, InputTransform]:
    """The (H, W) network input of ``image`` and the transform between the two."""
    transform = fit_transform(image.size, input_size, image.spacing)
    pixels = torch.from_numpy(image.pixels).to(device)
    # Resize first, then normalise: the window is computed on the small image only.
    resized = resample_to_input(pixels, transform, fill=math.nan)
    inside = ~torch.isnan(resized)
    out = torch.full_like(resized, BACKGROUND)
    out[inside] = normalisation.apply(resized[inside])
    return out, transform


def cache_size(input_size: tuple[int, int], factor: float) -> tuple[int, int]:
    """(height, width) of the training cache: the network input ``factor`` times finer.

    The local refinement stage (``refine.py``) works at this resolution too, so an
    image prepared at this size at inference is exactly what it was trained on.
    """
    return round(input_size[0] * factor), round(input_size[1] * factor)


@dataclass
class Sample:
    """One labelled image, ready for training and validation."""

    id: str
    path: Path
    points: np.ndarray  # (N, 2) original pixels, NaN where missing
    spacing: tuple[float, float] | None
    spacing_source: SpacingSource
    transform: InputTransform  # original pixels <-> network input
    input: torch.Tensor  # (H, W) exactly what inference would feed the network
    cache: torch.Tensor | None = None  # (Hc, Wc) same field of view, higher resolution
    cache_points: torch.Tensor | None = None  # (N, 2) landmarks in cache pixels
    cache_transform: InputTransform | None = None  # original pixels <-> cache pixels

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.points).any(axis=1)

    def of_objects(self, objects: LandmarkObjects) -> Sample:
        """The same image with its objects' centres as its points (what stage 1 of an object layout learns)."""
        centres = objects.centres(self.points)
        cache_points = None
        if self.cache_transform is not None and self.cache_points is not None:
            moved = np.nan_to_num(self.cache_transform.to_network(centres), nan=0.0)
            cache_points = torch.from_numpy(moved).to(device=self.cache_points.device, dtype=torch.float32)
        return dataclasses.replace(self, points=centres, cache_points=cache_points)


def match_images(paths: Sequence[Path], table: LandmarkTable) -> tuple[list[tuple[Path, str]], list[str]]:
    """Pair image files with label rows by id (the file name without suffix).

    Label ids may be bare (``3143``), file names (``3143.jpg``) or relative paths.
    Returns the pairs, in label order, and the label ids for which no file was found.
    """
    by_id: dict[str, Path] = {}
    for path in paths:
        key = image_id(path)
        if key in by_id:
            raise ScnError(f"two image files have the id {key!r}: {by_id[key]} and {path}")
        by_id[key] = path
    pairs, missing = [], []
    for label_id in table.points:
        key = image_id(label_id)
        if key in by_id:
            pairs.append((by_id[key], label_id))
        else:
            missing.append(label_id)
    return pairs, missing


def resolve_spacing(image: Radiograph, points: np.ndarray, rule: SpacingRule | None) -> Radiograph:
    """Apply a landmark-distance rule when given (it wins over the header, as the user asked)."""
    if rule is None:
        return image
    spacing = rule.spacing(points)
    if spacing is None:
        return image
    return image.with_spacing(spacing, SpacingSource.LANDMARKS)


#: What to do with a landmark that lies outside its image: refuse the file (default), or treat it as missing.
OUTSIDE_RULES = ("error", "missing")


def check_inside(
    points: np.ndarray,
    size: tuple[int, int],
    where: str,
    path: Path,
    names: Sequence[str] | None = None,
    outside: str = "error",
) -> tuple[np.ndarray, list[str]]:
    """Every present landmark must lie on the image (pixel edges included).

    Real public labels sometimes put a point just below the image. By default that
    is an error naming the file, row and landmark; with ``outside="missing"`` such
    landmarks become missing (NaN) and each is described in the returned notes, so
    nothing is dropped silently. Returns (points, notes).
    """
    if outside not in OUTSIDE_RULES:
        raise ScnError(f"unknown rule for landmarks outside their image: {outside!r} (one of {OUTSIDE_RULES})")
    w, h = size
    present = ~np.isnan(points).any(axis=1)
    x, y = points[:, 0], points[:, 1]
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(present & ~inside_image(x, y, size))
    if not bad.size:
        return points, []
    label = (lambda i: repr(names[i])) if names is not None else (lambda i: f"landmark {i}")
    described = [f"{label(i)} at ({x[i]:.1f}, {y[i]:.1f})" for i in bad]
    if outside == "error":
        raise LabelFileError(
            where,
            [
                f"{', '.join(described)} lie{'s' if len(bad) == 1 else ''} outside image {path.name} of size {w} x {h}"
                " (to train without such points, treat them as missing: --outside missing)"
            ],
        )
    kept = points.copy()
    kept[bad] = np.nan
    return kept, [f"{where}: {d} lies outside image {path.name} ({w} x {h}): treated as missing" for d in described]


@dataclass(frozen=True)
class LabelledImage:
    """An image file and its landmarks, from a CSV row or from the project store."""

    path: Path
    points: np.ndarray  # (N, 2) original pixels, NaN where missing
    where: str  # for messages: "labels.csv, row 5" or "project image 'x'"
    spacing: tuple[float, float] | None = None  # a known spacing that overrides the header
    spacing_source: SpacingSource = SpacingSource.UNKNOWN


def labelled_images(pairs: Sequence[tuple[Path, str]], table: LandmarkTable) -> list[LabelledImage]:
    """The images of ``match_images`` with their rows of ``table`` (which must be in pixels)."""
    if table.unit != "px":
        raise ScnError(f"{table.path}: training needs landmarks in pixels, this file has {table.unit}")
    return [LabelledImage(path, np.asarray(table.points[i], np.float64), table.where(i)) for path, i in pairs]


def build_samples(
    items: Sequence[LabelledImage],
    input_size: tuple[int, int],
    normalisation: Normalisation,
    cache_factor: float | None = 2.0,
    spacing_rule: SpacingRule | None = None,
    progress: Callable[[int, int], None] | None = None,
    device: torch.device | str = "cpu",
    *,
    names: Sequence[str] | None = None,
    outside: str = "error",
    notes: list[str] | None = None,
) -> list[Sample]:
    """Decode and prepare every labelled image; ``cache_factor=None`` skips the training cache.

    ``outside`` says what a landmark outside its image is (see :func:`check_inside`);
    with ``"missing"`` a line per such landmark is appended to ``notes``.
    """
    samples = []
    for done, item in enumerate(items):
        image = read_image(item.path)
        if item.spacing is not None:
            image = image.with_spacing(item.spacing, item.spacing_source)
        points, dropped = check_inside(item.points, image.size, item.where, item.path, names, outside)
        if notes is not None:
            notes.extend(dropped)
        image = resolve_spacing(image, points, spacing_rule)
        net_input, transform = prepare_input(image, input_size, normalisation, device)
        sample = Sample(image.id, item.path, points, image.spacing, image.spacing_source, transform, net_input)
        if cache_factor:
            cache, cache_transform = prepare_input(image, cache_size(input_size, cache_factor), normalisation, device)
            sample.cache, sample.cache_transform = cache, cache_transform
            cache_points = np.nan_to_num(cache_transform.to_network(points), nan=0.0)
            sample.cache_points = torch.from_numpy(cache_points).to(device=device, dtype=torch.float32)
        samples.append(sample)
        if progress:
            progress(done + 1, len(items))
    return samples


def split_samples(
    ids: Sequence[str], val_fraction: float, seed: int, *, held_out: Sequence[str] = (), trained: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """A repeatable train/validation split of ``ids`` (at least one validation image when possible).

    ``held_out`` and ``trained`` are the current model's validation and training images:
    validation takes the held-out ones first, then images new to the project, and the
    trained ones only when nothing else is left. A new model is judged against the
    current one on its validation images, and a model measured on images it was
    trained on looks better than it is: with a split drawn afresh over a grown set,
    most of the new validation images were the old model's training images, and every
    new model was refused. Without a current model the split is the seeded permutation.
    """
    ids = list(ids)
    if val_fraction <= 0 or len(ids) < 2:
        return ids, []
    gen = np.random.default_rng(seed)
    order = [ids[i] for i in gen.permutation(len(ids))]
    n_val = min(len(ids) - 1, max(1, round(len(ids) * val_fraction)))
    present, kept, seen = set(ids), set(held_out), set(trained)
    preference = (
        [i for i in held_out if i in present]
        + [i for i in order if i not in kept and i not in seen]
        + [i for i in order if i in seen and i not in kept]
    )
    val = set(preference[:n_val])
    return [i for i in ids if i not in val], [i for i in ids if i in val]
