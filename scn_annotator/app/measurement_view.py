"""What the app shows of a layout's measurements on the open image: a table, and the lines they are read from.

Recomputed from the points as they are on screen, while a point is dragged, so the
annotator sees a Cobb angle or a distance change under the mouse. The values come
from the core's one rule per measurement (``engine/measurements.py``); only the
lines to draw are decided here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..engine.measurements import Measurement, cobb_angles

__all__ = ["MeasurementRow", "MeasurementView", "measure"]

#: A Cobb line runs this far beyond its vertebra on each side, as a share of the vertebra's width.
OVERHANG = 0.6


@dataclass(frozen=True)
class MeasurementRow:
    name: str
    value: float  # NaN where a landmark it needs is missing
    unit: str  # deg, mm or px

    @property
    def text(self) -> str:
        return "-" if np.isnan(self.value) else f"{self.value:.1f} {self.unit}"


@dataclass(frozen=True)
class MeasurementView:
    rows: list[MeasurementRow]
    lines: list[np.ndarray] = field(default_factory=list)  # (2, 2) segments, (x, y) original pixels


def _cobb_lines(m: Measurement, points: np.ndarray, height: float) -> list[np.ndarray]:
    """The axes of the main curve's two end vertebrae (left side's mid-point to the right side's), extended."""
    corners = points[list(m.landmarks)]
    upper, lower = cobb_angles(corners, height).main_vertebrae
    lines = []
    for v in (upper, lower):
        tl, tr, bl, br = corners[4 * v : 4 * v + 4]
        left, right = (tl + bl) / 2, (tr + br) / 2
        reach = (right - left) * OVERHANG
        lines.append(np.array([left - reach, right + reach]))
    return lines


def _lines(m: Measurement, points: np.ndarray, height: float) -> list[np.ndarray]:
    p = points[list(m.landmarks)]
    if m.kind == "cobb_main":
        return _cobb_lines(m, points, height)
    if m.kind == "distance":
        return [p[:2]]
    if m.kind == "angle":
        return [p[[1, 0]], p[[1, 2]]]
    if m.kind == "line_angle":
        return [p[:2], p[2:4]]
    return []  # the second and third Cobb angles: the table says them; two lines are enough to read


def measure(
    definitions: Sequence[Measurement], points: np.ndarray, spacing: tuple[float, float] | None, height: float
) -> MeasurementView:
    """Every measurement on (N, 2) original-pixel points (NaN: missing); lines only for those with every landmark."""
    pts = np.asarray(points, dtype=np.float64)
    rows, lines = [], []
    for m in definitions:
        value = m.value(pts, spacing, height)
        unit = "deg" if m.unit == "deg" else ("mm" if spacing is not None else "px")
        rows.append(MeasurementRow(m.name, value, unit))
        if not np.isnan(value):
            lines += _lines(m, pts, height)
    return MeasurementView(rows, lines)
