"""Clinical measurements taken from landmarks: the Cobb angles of a spine, and how far apart two sets are.

The Cobb angles follow the rule by which the AASCE 2019 challenge scored its spine
radiographs (the 68 corners of 17 vertebrae, T1 to L5, each vertebra's corners
top-left, top-right, bottom-left, bottom-right), so that figures computed here
compare with the published ones (Cobb-angle SMAPE):

- each vertebra's axis joins the midpoint of its left side (top-left, bottom-left) to
  that of its right side; the angle between two vertebrae is the angle between their
  axes (0 to 90 degrees);
- the main angle is the largest over all pairs;
- the spine is S-shaped when the centres of its endplates lie on both sides of the
  chord from the first centre to the last; a C-shaped spine's other two angles are
  those of the top and of the bottom vertebra to the main curve's ends; an S-shaped
  spine's are the largest above and below the main curve (which one depends on
  whether the main curve lies in the upper half of the image).

One place for the rule: the benchmarks, the evaluation, the exports and the
readers' agreement take it from here. Besides the Cobb angles, a project may define
its own measurements (distances and angles between named landmarks, e.g. for
cephalograms; ``io/measurement_file.py``): :class:`Measurement`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .objects import object_prefix

__all__ = [
    "CORNERS",
    "CobbAngles",
    "Measurement",
    "builtin_measurements",
    "cobb_angles",
    "smape",
    "spine_corners",
]

#: A vertebra's corners as the AASCE layout names them, in the order the rule reads them.
CORNERS = ("tl", "tr", "bl", "br")


@dataclass(frozen=True)
class CobbAngles:
    """The three Cobb angles of one spine, in degrees, the main (largest) first."""

    main: float
    second: float
    third: float
    main_vertebrae: tuple[int, int]  # the two vertebrae (0: the first, T1) whose axes make the main angle
    s_shaped: bool

    @property
    def angles(self) -> tuple[float, float, float]:
        return self.main, self.second, self.third


def spine_corners(names: Sequence[str]) -> np.ndarray | None:
    """Indices that put a layout's landmarks in the rule's order (each vertebra's tl, tr, bl, br, top to bottom).

    A layout is a spine when every landmark is a vertebra's corner by name
    (``T1_tl`` .. ``L5_br``, any vertebra names, in the order they first appear)
    and every vertebra has all four; None for any other layout (hands, faces).
    """
    vertebrae: dict[str, dict[str, int]] = {}
    for k, name in enumerate(names):
        split = object_prefix(name)
        if split is None or split[1].lower() not in CORNERS:
            return None
        vertebrae.setdefault(split[0], {})[split[1].lower()] = k
    if len(vertebrae) < 2 or any(len(v) != len(CORNERS) for v in vertebrae.values()):
        return None
    return np.array([v[c] for v in vertebrae.values() for c in CORNERS], dtype=np.int64)


def cobb_angles(corners: np.ndarray, image_height: float) -> CobbAngles:
    """The Cobb angles of a spine from its vertebrae's corners ((4 * V, 2) pixels, top to bottom)."""
    pts = np.asarray(corners, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 8 or len(pts) % 4:
        raise ValueError(f"Cobb angles need 4 corners per vertebra and at least 2 vertebrae, not {pts.shape}")
    if np.isnan(pts).any():
        raise ValueError("Cobb angles need every corner; some are missing")
    tl, tr, bl, br = pts[0::4], pts[1::4], pts[2::4], pts[3::4]
    axes = (tr + br) / 2 - (tl + bl) / 2  # (V, 2), left to right
    unit = axes / np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)
    between = np.degrees(np.arccos(np.clip(unit @ unit.T, 0.0, 1.0)))  # (V, V)
    last = len(axes) - 1
    partner = between.argmax(axis=1)
    upper = int(between.max(axis=1).argmax())  # the first vertebra of the main pair
    lower = int(partner[upper])
    main = float(between[upper, lower])
    centres = np.stack([(tl + tr) / 2, (bl + br) / 2], axis=1).reshape(-1, 2)  # endplate centres, top to bottom
    s_shaped = _crosses_its_chord(centres)
    if not s_shaped:
        second, third = between[0, upper], between[last, lower]
    else:
        second_with = int(between[upper, : upper + 1].argmax())
        second = between[upper, second_with]
        if centres[2 * upper, 1] + centres[2 * lower, 1] < image_height:  # the main curve in the upper half
            third = between[lower, lower:].max()
        else:
            third = between[second_with, : second_with + 1].max()
    return CobbAngles(main, float(second), float(third), (upper, lower), s_shaped)


def _crosses_its_chord(centres: np.ndarray) -> bool:
    """Whether the endplate centres lie on both sides of the chord from the first to the last.

    The challenge's rule compares each centre's offset from that chord, normalised by
    the chord's extent along x and y; that normalisation divides by zero for a
    vertical chord, so the side is taken from the cross product instead (the same
    sign), with a tolerance of a thousandth of the chord's length.
    """
    first, last = centres[0], centres[-1]
    chord = last - first
    length = float(np.hypot(*chord))
    if length == 0:
        return False
    inner = centres[:-2]  # as the challenge: every centre but the last vertebra's two
    offsets = (chord[0] * (inner[:, 1] - first[1]) - chord[1] * (inner[:, 0] - first[0])) / length
    far = offsets[np.abs(offsets) > 1e-3 * length]
    return bool((far > 0).any() and (far < 0).any())


def smape(predicted: Sequence[CobbAngles], truth: Sequence[CobbAngles]) -> float:
    """The symmetric mean absolute percentage error of the Cobb angles, as AASCE 2019 scores it.

    Per image, the sum of the three angles' absolute differences over the sum of all
    six angles; the mean over images, in percent. An image whose six angles are all
    zero (two straight spines) counts as no error.
    """
    if len(predicted) != len(truth) or not truth:
        raise ValueError(f"SMAPE needs as many predicted as true spines, and some: {len(predicted)}, {len(truth)}")
    terms = []
    for p, t in zip(predicted, truth):
        a, b = np.asarray(p.angles), np.asarray(t.angles)
        total = float((a + b).sum())
        terms.append(float(np.abs(a - b).sum()) / total if total > 0 else 0.0)
    return 100.0 * float(np.mean(terms))


@dataclass(frozen=True)
class Measurement:
    """One derived measurement of a layout: what clinicians read off the landmarks.

    ``kind``: ``distance`` (two landmarks; mm where the spacing is known, px otherwise),
    ``angle`` (three: the angle at the middle one, degrees; cephalometry's SNA is
    ``angle(S, N, A)``), ``line_angle`` (four: between the line of the first two and of
    the last two, 0-90 degrees) or ``cobb_main`` / ``cobb_second`` / ``cobb_third`` (a
    spine layout's Cobb angles by the one rule above; ``landmarks`` lists the corners).
    """

    name: str
    kind: str
    landmarks: tuple[int, ...]

    ARITY: ClassVar[dict[str, int]] = {"distance": 2, "angle": 3, "line_angle": 4}
    COBB: ClassVar[tuple[str, ...]] = ("cobb_main", "cobb_second", "cobb_third")

    @property
    def unit(self) -> str:
        return "deg" if self.kind != "distance" else "length"

    def value(self, points: np.ndarray, spacing: tuple[float, float] | None = None, height: float = 0.0) -> float:
        """The measurement on (N, 2) original-pixel points; NaN where a landmark it needs is missing."""
        p = np.asarray(points, dtype=np.float64)[list(self.landmarks)]
        if np.isnan(p).any():
            return float("nan")
        if self.kind in self.COBB:
            return float(cobb_angles(p, height).angles[self.COBB.index(self.kind)])
        if self.kind == "distance":
            factor = np.ones(2) if spacing is None else np.asarray(spacing, dtype=np.float64)
            return float(np.linalg.norm((p[1] - p[0]) * factor))
        if self.kind == "angle":
            u, v = p[0] - p[1], p[2] - p[1]
        else:
            u, v = p[1] - p[0], p[3] - p[2]
        cos = float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12))
        angle = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
        return min(angle, 180.0 - angle) if self.kind == "line_angle" else angle


def builtin_measurements(names: Sequence[str]) -> list[Measurement]:
    """The measurements a layout gets without a file: a spine layout's three Cobb angles, else none."""
    order = spine_corners(names)
    if order is None:
        return []
    corners = tuple(int(k) for k in order)
    return [Measurement(kind.replace("cobb_", "Cobb ") + " angle", kind, corners) for kind in Measurement.COBB]
