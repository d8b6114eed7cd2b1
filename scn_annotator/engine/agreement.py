"""How much readers disagree: the first table of every landmark paper, and the statistics behind it.

Two experts placing the same landmark differ by a distance that is the floor of what
any model can be judged against: a model within the readers' spread is as good as
a second reader. Measurements taken from the landmarks (a Cobb angle, a distance)
are compared by the intraclass correlation and Bland-Altman limits, as clinical
method-comparison papers report them. No database and no torch here: arrays in,
numbers out.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BlandAltman", "Spread", "bland_altman", "icc", "pairwise_distances", "spread"]


@dataclass(frozen=True)
class Spread:
    """Distances between two sets of points for one landmark (or all): their mean, median and 95th percentile."""

    landmark: str
    mean: float | None
    median: float | None
    p95: float | None
    unit: str
    count: int

    def to_dict(self) -> dict[str, object]:
        return {
            "landmark": self.landmark,
            "mean": self.mean,
            "median": self.median,
            "p95": self.p95,
            "unit": self.unit,
            "count": self.count,
        }


def spread(landmark: str, distances: np.ndarray, unit: str) -> Spread:
    """The summary of ``distances`` (NaN: not both placed, left out)."""
    d = np.asarray(distances, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return Spread(landmark, None, None, None, unit, 0)
    return Spread(landmark, float(d.mean()), float(np.median(d)), float(np.percentile(d, 95)), unit, int(d.size))


def pairwise_distances(
    readings: Mapping[str, Mapping[str, np.ndarray]],
    scale: Mapping[str, np.ndarray | None],
) -> np.ndarray:
    """(pairs x images, N) the distance between every two readers' points of every image both read.

    ``readings[reader][image]`` is (N, 2) original pixels (NaN: not placed); ``scale[image]``
    the (x, y) spacing to express the distance in (None: pixels). Each pair of readers
    counts once per image, so three readers give three distances per landmark and image.
    """
    rows = []
    for a, b in itertools.combinations(sorted(readings), 2):
        for image in sorted(set(readings[a]) & set(readings[b])):
            s = scale.get(image)
            factor = np.ones(2) if s is None else np.asarray(s, dtype=np.float64)
            rows.append(np.linalg.norm((readings[a][image] - readings[b][image]) * factor, axis=1))
    width = next((len(next(iter(r.values()))) for r in readings.values() if r), 0)
    return np.array(rows).reshape(-1, width)


def icc(values: np.ndarray) -> float | None:
    """ICC(2,1) of (subjects, raters) values: two-way random effects, absolute agreement, one rater
    (Shrout and Fleiss 1979; McGraw and Wong's ICC(A,1)), the form inter-reader studies report.

    Subjects with a missing value are left out; None with fewer than two subjects or raters.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)] if x.ndim == 2 else x
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        return None
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    ms_rows, ms_cols = ss_rows / (n - 1), ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    return float((ms_rows - ms_error) / denominator) if denominator > 0 else None


@dataclass(frozen=True)
class BlandAltman:
    """Two raters' agreement on a measurement: the mean difference (bias) and the 95 % limits of agreement."""

    first: str
    second: str
    bias: float
    lower: float
    upper: float
    means: tuple[float, ...]
    differences: tuple[float, ...]


def bland_altman(first: str, second: str, a: Sequence[float], b: Sequence[float]) -> BlandAltman | None:
    """Bland and Altman (1986) for paired values (NaN pairs left out); None with fewer than two pairs."""
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a_) & np.isfinite(b_)
    if ok.sum() < 2:
        return None
    diff, mean = a_[ok] - b_[ok], (a_[ok] + b_[ok]) / 2
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    return BlandAltman(first, second, bias, bias - 1.96 * sd, bias + 1.96 * sd, tuple(mean), tuple(diff))
