"""The annotation queue: a project's images, the most doubtful first.

Shared by ``scn-annotator rank`` and the napari app's queue. Scores come from the
current model version's predictions, under the project's strategy (or one named);
images without a score (not yet predicted) come after the scored ones, and done
images last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..db.store import Project
from .policy import RoundPolicy

__all__ = ["QueueRow", "RankedQueue", "ranked_queue"]

STATUS_ORDER = {"in_progress": 0, "new": 1, "skipped": 2, "done": 3}


@dataclass
class QueueRow:
    image_id: int
    name: str
    status: str
    score: float | None
    doubtful: list[tuple[str, float]] = field(default_factory=list)  # (landmark, value), most doubtful first
    per_landmark: list[float | None] = field(default_factory=list)


@dataclass
class RankedQueue:
    strategy: str
    model_version: int | None
    unit: str
    rows: list[QueueRow]
    threshold: float = float("inf")  # a landmark whose value reaches this is doubtful

    def set_status(self, image_id: int, status: str) -> bool:
        """Follow a status the store changed (a first correction, an undo); True when the row changed."""
        for row in self.rows:
            if row.image_id == image_id and row.status != status:
                row.status = status
                return True
        return False

    def next_after(self, image_id: int | None, include_done: bool = False) -> QueueRow | None:
        """The next image to annotate after ``image_id`` (from the top when None)."""
        rows = [r for r in self.rows if include_done or r.status != "done"]
        ids = [r.image_id for r in rows]
        if image_id in ids:
            i = ids.index(image_id)
            rows = rows[i + 1 :] + rows[:i]
        return rows[0] if rows else None


#: Landmarks in the top share of all per-landmark values of the project are "doubtful".
DOUBTFUL_SHARE = 0.1


def ranked_queue(project: Project, strategy: str | None = None) -> RankedQueue:
    """Every image of the project, ordered for annotation under ``strategy``.

    A landmark is doubtful when its per-landmark value is among the highest
    ``DOUBTFUL_SHARE`` of the whole project's under this strategy, so the number of
    doubtful landmarks differs from image to image and says how much needs a look.
    """
    strategy = strategy or RoundPolicy.of(project).strategy
    names = project.landmark_names
    current = project.models.current()
    scored = project.predictions.scores(strategy, current.id) if current is not None else {}
    unit = next((sc.unit for sc in scored.values() if sc.unit), "")
    values = [v for sc in scored.values() for v in sc.per_landmark if v is not None]
    finite_values = np.array([v for v in values if np.isfinite(v)])
    threshold = float(np.quantile(finite_values, 1 - DOUBTFUL_SHARE)) if finite_values.size else float("inf")
    rows = []
    for image in project.images():
        score = scored.get(image.id)
        per = score.per_landmark if score is not None else []
        doubts = [(names[i], v) for i, v in enumerate(per[: len(names)]) if v is not None and v >= threshold]
        doubts.sort(key=lambda item: -item[1])
        rows.append(QueueRow(image.id, image.name, image.status, score.value if score else None, doubts, per))
    rows.sort(key=lambda r: (STATUS_ORDER.get(r.status, 9) == 3, r.score is None, -(r.score or 0.0), r.name))
    return RankedQueue(strategy, current.id if current else None, unit, rows, threshold)
