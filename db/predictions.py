"""A project's predictions: every model version's landmarks, confidences, heatmaps and scores per image.

Predictions never touch annotations (only a person accepting them does, through
``project.annotations``). A model that predicts an image again supersedes its
earlier run instead of deleting it: corrections keep pointing at the proposal
they started from, and an open view that still shows the earlier proposals can
save a correction of one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select, update

from scn_annotator.errors import ScnError

from . import artifacts
from .models import ImagePrediction, Prediction, Score
from .records import PredictionRecord, ScoreRecord
from .rows import current_run, current_version_id, image_row

if TYPE_CHECKING:
    from .store import Project

__all__ = ["Predictions"]


class Predictions:
    """``project.predictions``: store a model's runs and read the latest, with scores and heatmaps."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def store(
        self,
        version_id: int,
        image: int | str,
        points: np.ndarray,
        confidence: np.ndarray,
        *,
        heatmaps: str | None = None,
        scores: Sequence[ScoreRecord] = (),
    ) -> int:
        """Store one model version's landmarks (and scores) for one image.

        An earlier run of the same version on the image is superseded, not deleted:
        corrections keep pointing at the proposal they started from, and a view that
        still shows the earlier proposals can save a correction of one of them.
        """
        ids = [lm.id for lm in self.project.landmarks()]
        if len(points) != len(ids):
            raise ScnError(f"{len(points)} predicted landmarks for a project with {len(ids)}")
        with self.project.db.write() as s:
            row = image_row(s, image)
            s.execute(
                update(ImagePrediction)
                .where(
                    ImagePrediction.image_id == row.id,
                    ImagePrediction.model_version_id == version_id,
                    ImagePrediction.superseded.is_(False),
                )
                .values(superseded=True)
            )
            run = ImagePrediction(model_version_id=version_id, image_id=row.id, heatmaps=heatmaps)
            if heatmaps and self.project.shares_files and (self.project.data_dir / heatmaps).is_file():
                artifacts.store(s, self.project.data_dir / heatmaps, heatmaps, "heatmaps", version_id)
            run.points = [
                Prediction(landmark_id=lm, x=float(p[0]), y=float(p[1]), confidence=float(c))
                for lm, p, c in zip(ids, points, confidence)
            ]
            run.scores = [Score(strategy=sc.strategy, value=float(sc.value), details=sc.details()) for sc in scores]
            s.add(run)
            s.flush()
            return run.id

    def store_conditioned(
        self,
        version_id: int,
        image: int | str,
        points: np.ndarray,
        confidence: np.ndarray,
        hints: Sequence[int],
    ) -> tuple[int, list[int]]:
        """Store proposals conditioned on the confirmed landmarks ``hints``; returns (run id, prediction ids).

        The run is born superseded: the model's own run, its heatmaps and scores stay the image's latest.
        """
        ids = [lm.id for lm in self.project.landmarks()]
        if len(points) != len(ids):
            raise ScnError(f"{len(points)} predicted landmarks for a project with {len(ids)}")
        with self.project.db.write() as s:
            row = image_row(s, image)
            run = ImagePrediction(
                model_version_id=version_id, image_id=row.id, superseded=True, hints=[int(h) for h in hints]
            )
            run.points = [
                Prediction(landmark_id=lm, x=float(p[0]), y=float(p[1]), confidence=float(c))
                for lm, p, c in zip(ids, points, confidence)
                if not np.isnan(p).any()
            ]
            s.add(run)
            s.flush()
            by_landmark = {p.landmark_id: p.id for p in run.points}
            return run.id, [by_landmark.get(lm) for lm in ids]

    def latest(self, image: int | str, version_id: int | None = None) -> PredictionRecord | None:
        """The current (or given) model's latest prediction for an image, or None."""
        index = {lm.id: lm.index for lm in self.project.landmarks()}
        with self.project.db.read() as s:
            row = image_row(s, image)
            run = current_run(s, row.id, version_id)
            if run is None:
                return None
            n = len(index)
            points, conf = np.full((n, 2), np.nan), np.full(n, np.nan)
            ids: list[int | None] = [None] * n
            for p in run.points:
                i = index[p.landmark_id]
                points[i], conf[i], ids[i] = (p.x, p.y), p.confidence, p.id
            scores = {sc.strategy: ScoreRecord.of(sc) for sc in run.scores}
            return PredictionRecord(run.id, run.model_version_id, points, conf, ids, run.heatmaps, scores)

    def scores(self, strategy: str, version_id: int | None = None) -> dict[int, ScoreRecord]:
        """Every image's score under ``strategy`` from the current (or given) model's latest runs, by image id."""
        with self.project.db.read() as s:
            if version_id is None:
                version_id = current_version_id(s)
                if version_id is None:
                    return {}
            query = (
                select(ImagePrediction.image_id, Score)
                .join(Score, Score.run_id == ImagePrediction.id)
                .where(
                    ImagePrediction.model_version_id == version_id,
                    ImagePrediction.superseded.is_(False),
                    Score.strategy == strategy,
                )
            )
            return {i: ScoreRecord.of(score) for i, score in s.execute(query)}

    def cache_path(self, version_id: int, image_id: int) -> Path:
        """Where the heatmaps of one model version on one image are cached."""
        return self.project.data_dir / "heatmaps" / f"v{version_id:04d}" / f"{image_id}.npz"

    def heatmap_file(self, prediction: PredictionRecord) -> Path | None:
        """The heatmap cache of a prediction on this machine, or None when there is none (yet)."""
        if not prediction.heatmaps:
            return None
        path = self.project.local_file(prediction.heatmaps)
        return path if path.exists() else None
