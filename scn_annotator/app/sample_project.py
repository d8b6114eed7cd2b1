"""Generated radiograph-like sample data, made by the package itself for demos and tests.

A phantom "hand": a palm and five fingers of bright bone segments in soft tissue,
with noise and blur, in a random pose. Its joints look alike, finger to finger,
which is exactly the ambiguity the spatial-configuration component exists for: a
local detector finds *a* joint, the configuration tells *which*. Landmarks are the
base joint, the middle joint and the tip of every finger (15 in all).

Images are written as MetaImage (``.mha``) with their pixel spacing in the header,
as a DICOM would carry it, so errors come out in millimetres.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from skimage.draw import ellipse, polygon
from skimage.filters import gaussian

from ..io.landmark_files import write_landmarks

if TYPE_CHECKING:
    from ..db.store import Project

__all__ = [
    "FINGERS",
    "LANDMARK_NAMES",
    "annotate_from_truth",
    "generate_sample",
    "render_hand",
    "sample_project",
    "write_phantoms",
]

FINGERS = ("thumb", "index", "middle", "ring", "little")
LANDMARK_NAMES = [f"{f}_{part}" for f in FINGERS for part in ("base", "joint", "tip")]

# Finger layout in a hand frame (mm, origin at the wrist centre, y towards the fingers):
# base position, direction (degrees from the y axis), proximal and distal lengths.
_LAYOUT = (
    ((-30.0, 30.0), -48.0, 26.0, 20.0),
    ((-17.0, 62.0), -12.0, 30.0, 24.0),
    ((-2.0, 66.0), 0.0, 33.0, 26.0),
    ((13.0, 62.0), 10.0, 31.0, 24.0),
    ((26.0, 52.0), 22.0, 25.0, 19.0),
)


def _segment(img: np.ndarray, a: np.ndarray, b: np.ndarray, width: float, value: float) -> None:
    """A bone: a filled ellipse from a to b (pixel coordinates, x/y)."""
    centre = (a + b) / 2
    length = float(np.linalg.norm(b - a))
    angle = math.atan2(b[1] - a[1], b[0] - a[0])
    rr, cc = ellipse(centre[1], centre[0], width / 2, length / 2, shape=img.shape, rotation=-angle)
    img[rr, cc] = np.maximum(img[rr, cc], value)


def render_hand(
    rng: np.random.Generator,
    size: tuple[int, int] = (320, 256),
    spacing: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom: (uint8 image of shape ``size`` (height, width), (15, 2) landmarks in px).

    Poses that would put a landmark within 4 px of the border are drawn again.
    """
    while True:
        image, points = _render(rng, size, spacing)
        x, y = points[:, 0], points[:, 1]
        if x.min() >= 4 and y.min() >= 4 and x.max() <= size[1] - 5 and y.max() <= size[0] - 5:
            return image, points


def _render(rng: np.random.Generator, size: tuple[int, int], spacing: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    scale = rng.uniform(0.85, 1.1) / spacing  # px per mm
    rotation = math.radians(rng.uniform(-15, 15))
    centre = np.array([w / 2 + rng.uniform(-0.08, 0.08) * w, h * rng.uniform(0.8, 0.9)])
    cos, sin = math.cos(rotation), math.sin(rotation)

    def to_px(p: np.ndarray) -> np.ndarray:  # hand frame (mm, y up) -> image px (y down)
        x, y = p[..., 0], p[..., 1]
        return np.stack([cos * x + sin * y, sin * x - cos * y], -1) * scale + centre

    soft = np.zeros(size, np.float32)
    bone = np.zeros(size, np.float32)
    points, hull = [], [np.array([-28.0, -5.0]), np.array([28.0, -5.0])]
    for base, direction, l1, l2 in _LAYOUT:
        angle = math.radians(direction + rng.uniform(-7, 7))
        d = np.array([math.sin(angle), math.cos(angle)])
        base_mm = np.array(base) + rng.uniform(-2, 2, 2)
        joint = base_mm + d * l1 * rng.uniform(0.9, 1.1)
        tip = joint + d * l2 * rng.uniform(0.9, 1.1)
        wrist_side = base_mm - d * 24
        pts = to_px(np.stack([base_mm, joint, tip, wrist_side]))
        points.append(pts[:3])
        # soft tissue around the finger, bone segments with a joint gap at each landmark
        _segment(soft, pts[3], pts[2] + (pts[2] - pts[1]) * 0.12, 17 * scale, 1.0)
        unit = (pts[1] - pts[0]) / max(np.linalg.norm(pts[1] - pts[0]), 1e-6)
        unit2 = (pts[2] - pts[1]) / max(np.linalg.norm(pts[2] - pts[1]), 1e-6)
        g = 1.6 * scale
        _segment(bone, pts[3], pts[0] - unit * g, 9 * scale, 1.0)  # metacarpal
        _segment(bone, pts[0] + unit * g, pts[1] - unit2 * g, 8 * scale, 0.95)  # proximal phalanx
        _segment(bone, pts[1] + unit2 * g, pts[2] - unit2 * 0.5 * g, 7 * scale, 0.9)  # distal phalanx
        hull.append(base_mm)
    palm = to_px(np.array([*hull, np.array([34.0, 20.0])]))
    order = np.argsort(np.arctan2(palm[:, 1] - palm[:, 1].mean(), palm[:, 0] - palm[:, 0].mean()))
    rr, cc = polygon(palm[order, 1], palm[order, 0], shape=size)
    soft[rr, cc] = 1.0
    wrist = to_px(np.array([[-20.0, -60.0], [20.0, -60.0]]))
    _segment(soft, wrist.mean(0), to_px(np.array([0.0, 10.0])), 52 * scale, 1.0)

    image = 18 + 70 * gaussian(soft, 2.0) + 100 * gaussian(bone, 0.8)
    image *= rng.uniform(0.8, 1.2)
    image += rng.normal(0, 6, size) + 150 * gaussian(rng.normal(0, 1, size), 12)  # grain and uneven exposure
    return np.clip(image, 0, 255).astype(np.uint8), np.concatenate(points).astype(np.float64)


def generate_sample(
    folder: str | Path,
    count: int = 40,
    seed: int = 0,
    size: tuple[int, int] = (320, 256),
    spacing: float = 0.6,
    suffix: str = ".mha",
) -> Path:
    """Write ``count`` phantoms and ``labels.csv`` into ``folder``; returns the labels path.

    ``suffix`` ``.mha`` stores the spacing in each header; ``.png`` stores none.
    """
    rng = np.random.default_rng(seed)
    renders = (render_hand(rng, size, spacing) for _ in range(count))
    return write_phantoms(folder, "hand", LANDMARK_NAMES, renders, spacing, suffix)


def write_phantoms(
    folder: str | Path,
    prefix: str,
    names: Sequence[str],
    renders: Iterable[tuple[np.ndarray, np.ndarray]],
    spacing: float,
    suffix: str = ".mha",
) -> Path:
    """``images/<prefix>000<suffix>, ...`` and their ``labels.csv`` from (pixels, landmarks) pairs; the labels path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    labels = {}
    for i, (pixels, points) in enumerate(renders):
        image = sitk.GetImageFromArray(pixels)
        image.SetSpacing((spacing, spacing))
        name = f"{prefix}{i:03d}"
        sitk.WriteImage(image, str(folder / "images" / f"{name}{suffix}"), useCompression=True)
        labels[name] = points
    path = folder / "labels.csv"
    write_landmarks(path, names, labels)
    return path


def annotate_from_truth(
    project: Project, truth: Mapping[str, np.ndarray], names: Sequence[str], author: str | None = None
) -> None:
    """Do what an annotator would for the images ``names``: place their true landmarks, mark them done.

    The landmarks go through the project's own CSV import (the file is kept in the
    project's ``exports`` folder), so a demo or a test exercises the real path.
    """
    from ..db.transfer import import_labels

    path = project.exports_dir / f"sample-annotations-{len(names)}-{names[0]}.csv"
    write_landmarks(path, project.landmark_names, {n: truth[n] for n in names})
    import_labels(project, path, author=author)
    for name in names:
        project.set_status(name, "done")


def sample_project(
    folder: str | Path,
    images: str | Path,
    truth: Mapping[str, np.ndarray],
    annotated: Sequence[str],
    *,
    user: str = "sample",
    author: str | None = None,
    landmark_names: Sequence[str] = LANDMARK_NAMES,
) -> Project:
    """A project over the images in ``images`` with ``annotated`` annotated and done (demo, tests, benchmarks)."""
    from ..db.store import Project
    from ..db.transfer import import_images

    project = Project.create(folder, landmark_names, user=user)
    import_images(project, images)
    if annotated:
        annotate_from_truth(project, truth, annotated, author)
    return project
