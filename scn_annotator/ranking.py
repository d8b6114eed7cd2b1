"""The annotation queue: a project's images, the most doubtful first.

Shared by ``scn-annotator rank`` and the napari app's queue. Scores come from the
current model version's predictions, under the project's strategy (or one named);
images without a score (not yet predicted) come after the scored ones, and done
images last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from .db.models import Image, ImagePrediction, ModelVersion, Score
from .db.store import Project

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
    from .worker import RoundPolicy

    strategy = strategy or RoundPolicy.of(project).strategy
    names = project.landmark_names
    with project.db.read() as s:
        version = s.scalar(select(ModelVersion.id).where(ModelVersion.is_current))
        scored = {}
        if version is not None:
            query = (
                select(ImagePrediction.image_id, Score.value, Score.per_landmark)
                .join(Score, Score.run_id == ImagePrediction.id)
                .where(
                    ImagePrediction.model_version_id == version,
                    ImagePrediction.superseded.is_(False),
                    Score.strategy == strategy,
                )
            )
            scored = {image_id: (value, extra) for image_id, value, extra in s.execute(query)}
        images = s.execute(select(Image.id, Image.name, Image.status)).all()
    unit = next((extra.get("unit", "") for _, extra in scored.values() if extra and extra.get("unit")), "")
    values = [v for _, extra in scored.values() for v in (extra or {}).get("per_landmark", []) if v is not None]
    finite_values = np.array([v for v in values if np.isfinite(v)])
    threshold = float(np.quantile(finite_values, 1 - DOUBTFUL_SHARE)) if finite_values.size else float("inf")
    rows = []
    for image_id, name, status in images:
        value, extra = scored.get(image_id, (None, {}))
        per = list(extra.get("per_landmark", [])) if extra else []
        doubts = [(names[i], v) for i, v in enumerate(per[: len(names)]) if v is not None and v >= threshold]
        doubts.sort(key=lambda item: -item[1])
        rows.append(QueueRow(image_id, name, status.value, value, doubts, per))
    rows.sort(key=lambda r: (STATUS_ORDER.get(r.status, 9) == 3, r.score is None, -(r.score or 0.0), r.name))
    return RankedQueue(strategy, version, unit, rows, threshold)
