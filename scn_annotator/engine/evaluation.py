"""Point errors reported the way the landmark papers report them.

Mean +- SD and median point-to-point error, a per-landmark table, the success
detection rate (share of points within 2 / 2.5 / 3 / 4 / 10 mm) and the count of
gross errors above 10 mm. Errors are in mm when every image has a spacing and in
pixels otherwise; the report always says which. A landmark present in the truth
but not predicted counts as a failure at every threshold and is reported as
missing, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScnError
from ..io.atomic import atomic_write_text
from ..io.landmark_files import LandmarkTable, default_names
from .measurements import CobbAngles, cobb_angles, smape, spine_corners

__all__ = ["THRESHOLDS", "CobbReport", "EvaluationReport", "align_tables", "evaluate", "mean_error", "point_errors"]

THRESHOLDS = (2.0, 2.5, 3.0, 4.0, 10.0)


def point_errors(predicted: np.ndarray, truth: np.ndarray, spacing: tuple[float, float] | None = None) -> np.ndarray:
    """The error of every landmark of one image: (N,) distances, in mm with ``spacing``, else in px.

    The one rule for a point error, used by training, validation, rounds,
    simulation and evaluation alike: NaN where the truth has no point (absent or
    unannotated: not an error, not a success), inf where the truth has one and the
    prediction has none (a failure at every threshold).
    """
    diff = np.asarray(predicted, float) - np.asarray(truth, float)
    if spacing is not None:
        diff = diff * np.asarray(spacing, float)
    errors = np.linalg.norm(diff, axis=-1)
    errors[np.isnan(np.asarray(predicted, float)).any(axis=-1)] = np.inf
    errors[np.isnan(np.asarray(truth, float)).any(axis=-1)] = np.nan
    return errors


def error_unit(spacings: Iterable[tuple[float, float] | None]) -> str:
    """``mm`` when every image's pixel spacing is known (and there is one), else ``px``.

    The one rule for the unit of a set of errors: mixing millimetres with pixels in
    one mean would make it meaningless, so a single image without a spacing puts the
    whole set in pixels.
    """
    known = [s is not None for s in spacings]
    return "mm" if known and all(known) else "px"


def mean_error(errors: np.ndarray) -> float | None:
    """Mean of the errors that have a truth (NaN skipped); None when no landmark has one.

    A missing prediction (inf) makes the mean inf: a model that finds nothing is not
    better than one that finds something.
    """
    values = np.asarray(errors, float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


@dataclass
class CobbReport:
    """The Cobb angles of a spine layout, predicted against true, scored as AASCE 2019 scored them."""

    image_ids: list[str]
    predicted: list[CobbAngles]
    truth: list[CobbAngles]
    incomplete: int  # images left out: a corner missing in the prediction or the truth

    @property
    def smape(self) -> float | None:
        return smape(self.predicted, self.truth) if self.truth else None

    @property
    def main_error_median(self) -> float | None:
        errors = [abs(p.main - t.main) for p, t in zip(self.predicted, self.truth)]
        return float(np.median(errors)) if errors else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "smape_pct": self.smape,
            "main_angle_abs_error_deg_median": self.main_error_median,
            "images": len(self.image_ids),
            "incomplete_images": self.incomplete,
            "per_image": {
                i: {"predicted": list(p.angles), "true": list(t.angles)}
                for i, p, t in zip(self.image_ids, self.predicted, self.truth)
            },
        }

    def format(self) -> str:
        if not self.truth:
            return f"Cobb angles: no image with every corner ({self.incomplete} incomplete)"
        left = f"; {self.incomplete} images with a missing corner left out" if self.incomplete else ""
        return (
            f"Cobb angles (AASCE 2019 rule) over {len(self.truth)} spines: SMAPE {self.smape:.1f} %, main angle "
            f"{self.main_error_median:.1f} degrees off (median){left}"
        )


def cobb_report(
    predicted: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    heights: Mapping[str, float],
    order: np.ndarray,
) -> CobbReport:
    """Cobb angles of every image with all corners in both sets; ``order`` from :func:`spine_corners`."""
    ids, pred_angles, true_angles, incomplete = [], [], [], 0
    for image, true in truth.items():
        pred, true = np.asarray(predicted[image], float)[order], np.asarray(true, float)[order]
        if np.isnan(pred).any() or np.isnan(true).any():
            incomplete += 1
            continue
        ids.append(image)
        pred_angles.append(cobb_angles(pred, heights[image]))
        true_angles.append(cobb_angles(true, heights[image]))
    return CobbReport(ids, pred_angles, true_angles, incomplete)


@dataclass
class EvaluationReport:
    """Errors of every (image, landmark) and the summaries computed from them."""

    unit: str
    names: list[str]
    image_ids: list[str]
    errors: np.ndarray  # (images, landmarks); NaN where the truth has no point; inf where none predicted
    spacing_sources: dict[str, str]
    #: For a spine layout (``measurements.spine_corners``) whose images' heights are known.
    cobb: CobbReport | None = None

    @property
    def _finite(self) -> np.ndarray:
        e = self.errors[~np.isnan(self.errors)]
        return e[np.isfinite(e)]

    @property
    def evaluated(self) -> int:
        return int((~np.isnan(self.errors)).sum())

    @property
    def missing(self) -> int:
        return int(np.isinf(self.errors).sum())

    def summary(self) -> dict[str, Any]:
        e = self._finite
        present = self.errors[~np.isnan(self.errors)]
        n = max(1, present.size)
        return {
            "unit": self.unit,
            "images": len(self.image_ids),
            "points": int(present.size),
            "missing_predictions": self.missing,
            "mean": float(e.mean()) if e.size else None,
            "sd": float(e.std()) if e.size else None,
            "median": float(np.median(e)) if e.size else None,
            "max": float(e.max()) if e.size else None,
            "sdr": {f"{t:g}": float((present <= t).sum() / n) for t in THRESHOLDS},
            "outliers_over_10": int((present > 10).sum()),
        }

    def per_landmark(self) -> list[dict[str, Any]]:
        rows = []
        for j, name in enumerate(self.names):
            col = self.errors[:, j]
            col = col[~np.isnan(col)]
            finite = col[np.isfinite(col)]
            rows.append(
                {
                    "landmark": name,
                    "points": int(col.size),
                    "mean": float(finite.mean()) if finite.size else None,
                    "sd": float(finite.std()) if finite.size else None,
                    "median": float(np.median(finite)) if finite.size else None,
                    "max": float(finite.max()) if finite.size else None,
                    "within_2": float((col <= 2).mean()) if col.size else None,
                    "over_4": int((col > 4).sum()),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "per_landmark": self.per_landmark(),
            "spacing_sources": self.spacing_sources,
            **({"cobb": self.cobb.to_dict()} if self.cobb is not None else {}),
            "per_image": {
                image: [None if np.isnan(v) else (None if np.isinf(v) else float(v)) for v in row]
                for image, row in zip(self.image_ids, self.errors)
            },
        }

    def write_json(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def format(self, per_landmark: bool = True) -> str:
        """The report as a plain-text table."""
        s, u = self.summary(), self.unit
        if s["mean"] is None:
            return f"No predicted landmark to evaluate ({s['points']} expected, all missing)."
        lines = [
            f"Point error over {s['points']} landmarks in {s['images']} images, in {u}"
            + ("" if u == "mm" else " (no pixel spacing known for every image)"),
            f"  mean {s['mean']:.2f} +- {s['sd']:.2f} {u}   median {s['median']:.2f} {u}   max {s['max']:.2f} {u}",
            "  within " + "   ".join(f"{t:g} {u}: {100 * s['sdr'][f'{t:g}']:.1f} %" for t in THRESHOLDS),
            f"  errors > 10 {u}: {s['outliers_over_10']}"
            + (f"   missing predictions: {s['missing_predictions']}" if s["missing_predictions"] else ""),
        ]
        if self.cobb is not None:
            lines.append("  " + self.cobb.format())
        if per_landmark:
            lines.append("")
            lines.append(f"  {'landmark':<14}{'mean':>8}{'sd':>8}{'median':>8}{'max':>8}{'<=2':>8}{'>4':>5}")
            for row in self.per_landmark():
                if row["mean"] is None:
                    lines.append(f"  {row['landmark']:<14}{'-':>8}")
                    continue
                lines.append(
                    f"  {row['landmark']:<14}{row['mean']:>8.2f}{row['sd']:>8.2f}{row['median']:>8.2f}"
                    f"{row['max']:>8.2f}{100 * row['within_2']:>7.0f}%{row['over_4']:>5}"
                )
        return "\n".join(lines)


def evaluate(
    predicted: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    spacing: Mapping[str, tuple[float, float] | None],
    names: Sequence[str],
    spacing_sources: Mapping[str, str] | None = None,
    heights: Mapping[str, float] | None = None,
) -> EvaluationReport:
    """Compare predictions with the truth for every image of the truth that was predicted.

    ``spacing[id]`` is (x, y) mm per pixel or None. Images of the truth without a
    prediction are left out (the caller decides whether that is an error);
    landmarks of a predicted image that the prediction lacks count as missing.
    A spine layout with every image's ``heights`` (pixels: the Cobb rule's upper-half
    test needs them) also gets its Cobb angles scored.
    """
    ids = [i for i in truth if i in predicted]
    if not ids:
        raise ScnError("no image is both in the predictions and in the truth")
    unit = error_unit(spacing.get(i) for i in ids)
    errors = np.empty((len(ids), len(names)))
    for row, image in enumerate(ids):
        errors[row] = point_errors(predicted[image], truth[image], spacing[image] if unit == "mm" else None)
    sources = {i: (spacing_sources or {}).get(i, "unknown") for i in ids}
    order = spine_corners(names)
    cobb = None
    if order is not None and heights is not None and all(i in heights for i in ids):
        cobb = cobb_report(predicted, {i: truth[i] for i in ids}, heights, order)
    return EvaluationReport(unit, list(names), ids, errors, sources, cobb)


def align_tables(pred: LandmarkTable, truth: LandmarkTable) -> tuple[dict[str, np.ndarray], list[str]]:
    """Predicted points re-ordered to the truth's landmark order.

    By name when both files name the same landmarks; by position when one of them
    has no names (a headerless file) and the counts agree; an error otherwise.
    """
    if set(pred.names) == set(truth.names):
        order = [pred.names.index(n) for n in truth.names]
        return {k: v[order] for k, v in pred.points.items()}, list(truth.names)
    unnamed = default_names(truth.num_landmarks) in (pred.names, truth.names)
    if unnamed and pred.num_landmarks == truth.num_landmarks:
        named = truth.names if pred.names == default_names(pred.num_landmarks) else pred.names
        return dict(pred.points), list(named)
    raise ScnError(
        f"the landmarks of {pred.path} ({pred.num_landmarks}: {', '.join(pred.names[:3])}, ...) and of "
        f"{truth.path} ({truth.num_landmarks}: {', '.join(truth.names[:3])}, ...) do not match"
    )
