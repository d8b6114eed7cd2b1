"""The annotation queue: a project's images, the most doubtful (or, with few labels, the most typical) first.

Shared by ``scn-annotator rank`` and the napari app's queue. Scores come from the
current model version's predictions, under the project's strategy (or one named);
images without a score (not yet predicted) come after the scored ones, and done
images last. A pool strategy (``typical``, ``coverage``, ``dense_disagreement``,
``auto``: :mod:`.pool`) ranks the open images together from their embeddings (``rank --strategy typical`` on a
project just imported says which images are typical). Before any model, the default
queue is a random order (:func:`_cold_queue` says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..db.records import ImageRecord, ScoreRecord
from ..db.store import Project
from ..io.images import read_image
from .embeddings import FEATURES, PIXELS, pixel_embedding
from .policy import RoundPolicy
from .pool import DISAGREEMENT, PoolInput, doubt_threshold, expected_corrections, is_pool_strategy, pick
from .scores import random_value

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
    reason: str = ""  # why a pool strategy put it here


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


#: Why a project without a model is in a random order, not by typicality: what the cold-start campaigns measured.
COLD_START_REASON = (
    "no model yet: a random order (the typical images of a thumbnail embedding were no better on real hands; "
    "rank --strategy typical orders by them)"
)

#: Landmarks in the top share of all per-landmark values of the project are "doubtful".
DOUBTFUL_SHARE = 0.1


def ranked_queue(project: Project, strategy: str | None = None) -> RankedQueue:
    """Every image of the project, ordered for annotation under ``strategy``.

    A landmark is doubtful when its per-landmark value is among the highest
    ``DOUBTFUL_SHARE`` of the whole project's under this strategy, so the number of
    doubtful landmarks differs from image to image and says how much needs a look.
    """
    policy = RoundPolicy.of(project)
    strategy = strategy or policy.strategy
    current = project.models.current()
    version = current.id if current is not None else None
    images = project.images()
    if is_pool_strategy(strategy):
        return _pool_queue(project, images, strategy, policy, version)
    if version is None and images:  # no model, nothing to score yet
        return _cold_queue(images, strategy)
    scored = project.predictions.scores(strategy, version) if version is not None else {}
    threshold = _threshold(scored)
    rows = []
    for image in images:
        score = scored.get(image.id)
        rows.append(_row(project.landmark_names, image, score.value if score else None, score, threshold))
    rows.sort(key=lambda r: (STATUS_ORDER.get(r.status, 9) == 3, r.score is None, -(r.score or 0.0), r.name))
    return RankedQueue(strategy, version, _unit(scored), rows, threshold)


def _threshold(scored: dict[int, ScoreRecord]) -> float:
    """The per-landmark value from which a landmark is doubtful: the top ``DOUBTFUL_SHARE`` of the project's."""
    values = [v for sc in scored.values() for v in sc.per_landmark if v is not None]
    return doubt_threshold(np.array(values, dtype=np.float64), DOUBTFUL_SHARE)


def _unit(scored: dict[int, ScoreRecord]) -> str:
    return next((sc.unit for sc in scored.values() if sc.unit), "")


def _row(
    names: list[str],
    image: ImageRecord,
    value: float | None,
    score: ScoreRecord | None,
    threshold: float,
    reason: str = "",
) -> QueueRow:
    """A queue row at ``value``, with the landmarks ``score`` finds doubtful, most doubtful first."""
    per = score.per_landmark if score is not None else []
    doubts = [(names[i], v) for i, v in enumerate(per[: len(names)]) if v is not None and v >= threshold]
    doubts.sort(key=lambda item: -item[1])
    return QueueRow(image.id, image.name, image.status, value, doubts, per, reason)


def image_embeddings(project: Project, images: list[ImageRecord], version_id: int | None) -> tuple[str, dict]:
    """(kind, vectors by image id) for ``images``: the model version's features where it stored them for
    every image, else the model-free thumbnails, computed (and stored) for the images that lack one."""
    if version_id is not None:
        features = project.embeddings.get(FEATURES, version_id)
        if images and all(im.id in features for im in images):
            return FEATURES, features
    vectors = project.embeddings.get(PIXELS, None)
    missing = {im.id: pixel_embedding(read_image(project.resolve(im)).pixels) for im in images if im.id not in vectors}
    project.embeddings.put(PIXELS, None, missing)
    return PIXELS, {**vectors, **missing}


def _pool_queue(
    project: Project, images: list[ImageRecord], strategy: str, policy: RoundPolicy, version: int | None
) -> RankedQueue:
    """The open images ranked together by a pool strategy; in-progress ones first, done ones last."""
    scored = project.predictions.scores(DISAGREEMENT, version) if version is not None else {}
    kind, vectors = image_embeddings(project, images, version)
    done = [im for im in images if im.status == "done"]
    open_ = [im for im in images if im.status != "done"]
    scores = costs = None
    threshold = _threshold(scored)
    if scored:
        scores = np.array([scored[im.id].value if im.id in scored else 0.0 for im in open_], dtype=np.float64)
        n = len(project.landmark_names)
        per = [scored[im.id].per_landmark if im.id in scored else [] for im in open_]
        per_landmark = np.array([[v if v is not None else np.nan for v in p] or [np.nan] * n for p in per])
        costs = expected_corrections(per_landmark.reshape(len(open_), -1), threshold)
    dims = len(next(iter(vectors.values()))) if vectors else 0
    x = PoolInput(
        np.array([vectors[im.id] for im in open_]).reshape(len(open_), dims),
        np.array([vectors[im.id] for im in done]).reshape(len(done), dims),
        batch=policy.batch,
        scores=scores,
        costs=costs,
    )
    ranked = pick(strategy, x, switch=policy.auto_switch) if open_ else []
    names = project.landmark_names
    rows = [
        _row(names, open_[r.index], r.value, scored.get(open_[r.index].id), threshold, f"{r.reason} ({kind})")
        for r in ranked
    ]
    rows.sort(key=lambda r: STATUS_ORDER.get(r.status, 9) != 0)  # stable: in progress first, then the ranking
    rows += [QueueRow(im.id, im.name, im.status, None) for im in sorted(done, key=lambda im: im.name)]
    return RankedQueue(strategy, version, _unit(scored), rows, threshold)


def _cold_queue(images: list[ImageRecord], strategy: str) -> RankedQueue:
    """Before any model: a random order (fixed per image name), in-progress images first, done ones last.

    Not file order: a folder sorted by date or patient puts a series of alike images first.
    Not typicality: over five seeds on real hands, eight typical images (thumbnails or their
    oriented gradients) gave a first model no better than eight random ones (benchmarks/RESULTS.md).
    """
    rows = [
        QueueRow(
            image.id,
            image.name,
            image.status,
            None if image.status == "done" else random_value(image.name, 0),
            reason=COLD_START_REASON,
        )
        for image in images
    ]
    rows.sort(key=lambda r: (STATUS_ORDER.get(r.status, 9) == 3, STATUS_ORDER.get(r.status, 9) != 0, -(r.score or 0)))
    return RankedQueue(strategy, None, "", rows)
