"""The review queue: the images a reviewer should look at first.

Images read by two or more readers come first, ordered by how strongly the readers
disagree (the landmark they disagree on most); then images read once, ordered by
how little of the model's final heatmap lies under the human point (its value there
against its peak, for the worst landmark): a point placed where the model sees
nothing is the likeliest label error. Ahead of those, in a layout of objects along a
chain (vertebrae), the images where an object lies out of line with the rest of the
chain (``engine/implausible.py``): no column has it, so it is a slip for certain. Images
already marked reviewed go last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..db.store import Project
from ..engine.agreement import pairwise_distances
from ..engine.evaluation import error_unit
from ..engine.implausible import MIN_CHAIN, implausible_objects
from ..engine.objects import uses_objects

__all__ = ["ReviewItem", "heat_under", "review_queue"]


@dataclass(frozen=True)
class ReviewItem:
    image: str
    readers: int
    landmark: str | None  # the landmark the score is about
    disagreement: float | None  # readers' largest mean distance on one landmark (``unit``)
    heat: float | None  # single read: the model's final heatmap under the human point, share of its peak
    unit: str
    status: str | None  # the latest review verdict
    out_of_line: tuple[str, ...] = ()  # the objects no chain can have where they are (``implausible.py``)

    @property
    def reason(self) -> str:
        if self.out_of_line:
            return f"{', '.join(self.out_of_line)} out of line with the rest of the chain"
        if self.disagreement is not None:
            return f"{self.readers} readers {self.disagreement:.2f} {self.unit} apart on {self.landmark}"
        if self.heat is not None:
            return f"the model sees {100 * self.heat:.0f} % of its peak under {self.landmark}"
        return "read once; no heatmap to compare with"


def heat_under(final: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N,) each landmark's final heatmap at its (network-pixel) point, bilinear, as a share of the map's peak;
    NaN where the point is missing."""
    n, h, w = final.shape
    out = np.full(n, np.nan)
    for j, (x, y) in enumerate(np.asarray(points, dtype=np.float64)):
        if not np.isfinite(x):
            continue
        x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
        x0, y0 = int(x), int(y)
        x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
        fx, fy = x - x0, y - y0
        m = final[j]
        value = (m[y0, x0] * (1 - fx) + m[y0, x1] * fx) * (1 - fy) + (m[y1, x0] * (1 - fx) + m[y1, x1] * fx) * fy
        out[j] = float(np.clip(value / max(float(m.max()), 1e-12), 0.0, 1.0))
    return out


def _heat(project: Project, image: str, points: np.ndarray) -> tuple[float, int] | None:
    prediction = project.predictions.latest(image)
    path = project.predictions.heatmap_file(prediction) if prediction is not None else None
    if path is None:
        return None
    from ..io.heatmap_cache import load_heatmaps

    heatmaps = load_heatmaps(path)
    if heatmaps.final.shape[0] != len(points):  # an object layout's maps are of its objects
        return None
    shares = heat_under(heatmaps.final, heatmaps.transform.to_network(points))
    if np.isnan(shares).all():
        return None
    worst = int(np.nanargmin(shares))
    return float(shares[worst]), worst


def review_queue(project: Project) -> list[ReviewItem]:
    """Every image with readings or human points, the ones most likely to need a reviewer first."""
    names = project.landmark_names
    tables = project.readings.tables()
    records = {r.name: r for r in project.images()}
    statuses = project.reviews.statuses()
    read_by: dict[str, list[str]] = {}
    for reader, table in tables.items():
        for image in table.points:
            read_by.setdefault(image, []).append(reader)
    unit = error_unit([records[i].spacing for i in read_by if len(read_by[i]) > 1])
    items = []
    for image, readers in read_by.items():
        if len(readers) < 2:
            continue
        scale = {image: records[image].spacing if unit == "mm" else None}
        distances = pairwise_distances({r: {image: tables[r].points[image]} for r in readers}, scale)
        per_landmark = np.nanmean(distances, axis=0) if len(distances) else np.full(len(names), np.nan)
        if np.isnan(per_landmark).all():
            continue
        worst = int(np.nanargmax(per_landmark))
        status = statuses[image].status if image in statuses else None
        items.append(ReviewItem(image, len(readers), names[worst], float(per_landmark[worst]), None, unit, status))
    single = {}
    for image in records:
        points = project.annotations.points(image)
        if len(read_by.get(image, [])) <= 1 and not np.isnan(points).all():
            single[image] = points
    objects = project.objects()  # judged as a chain only where training learns them as one (not hands)
    chain = len(objects) >= MIN_CHAIN and uses_objects(objects, list(single.values()))
    for image, points in single.items():
        record = records[image]
        heat = _heat(project, image, points)
        status = statuses[image].status if image in statuses else None
        landmark = names[heat[1]] if heat else None
        slips = np.flatnonzero(implausible_objects(objects.centres(points))) if chain else []
        items.append(
            ReviewItem(
                image,
                len(read_by.get(image, [])) or 1,
                landmark,
                None,
                heat[0] if heat else None,
                "px" if record.spacing is None else "mm",
                status,
                tuple(objects.names[o] for o in slips),
            )
        )

    def order(item: ReviewItem) -> tuple:
        done = item.status == "reviewed"
        if item.disagreement is not None:
            return (done, 0, -item.disagreement, item.image)
        if item.out_of_line:
            return (done, 1, 0.0, item.image)
        return (done, 2, item.heat if item.heat is not None else 2.0, item.image)

    return sorted(items, key=order)
