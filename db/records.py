"""What crosses the store's boundary: frozen, typed records, never rows or dictionaries.

The app, the CLI, the worker and the ranking read these; only ``db/`` sees the
SQLAlchemy models. A record is a snapshot: reading one again gives what the
database holds now.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .models import Image, Job, ModelVersion, Worker

__all__ = [
    "AnnotationRecord",
    "ImageRecord",
    "JobRecord",
    "LandmarkInfo",
    "ModelRecord",
    "PredictionRecord",
    "ScoreRecord",
    "WorkerRecord",
]


@dataclass(frozen=True)
class LandmarkInfo:
    id: int
    index: int
    name: str
    color: str
    description: str


@dataclass(frozen=True)
class ImageRecord:
    id: int
    name: str
    path: str
    width: int
    height: int
    spacing: tuple[float, float] | None
    spacing_source: str
    status: str
    last_author: str | None
    checksum: str
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: Image) -> ImageRecord:
        spacing = (row.spacing_x, row.spacing_y) if row.spacing_x and row.spacing_y else None
        return cls(
            row.id,
            row.name,
            row.path,
            row.width,
            row.height,
            spacing,
            row.spacing_source,
            row.status.value,
            row.last_author,
            row.checksum,
            row.updated_at,
        )


@dataclass(frozen=True)
class AnnotationRecord:
    landmark: int  # index
    x: float | None
    y: float | None
    state: str
    source: str
    author: str
    updated_at: dt.datetime
    prediction_id: int | None


@dataclass(frozen=True)
class ModelRecord:
    """A model version. ``checkpoint`` is relative to the data folder: ask ``Project.checkpoint_file``."""

    id: int
    checkpoint: str
    config: dict[str, Any]
    training_set: dict[str, Any]
    metrics: dict[str, Any]
    parent_id: int | None
    is_current: bool
    created_at: dt.datetime
    note: str

    @classmethod
    def of(cls, row: ModelVersion) -> ModelRecord:
        return cls(
            row.id,
            row.checkpoint,
            dict(row.config or {}),
            dict(row.training_set or {}),
            dict(row.metrics or {}),
            row.parent_id,
            bool(row.is_current),
            row.created_at,
            row.note,
        )

    @property
    def trained_on(self) -> set[int]:
        """Ids of the images this version was trained on (not validated on)."""
        return {int(i) for i, _ in self.training_set.get("train", [])}


@dataclass(frozen=True)
class ScoreRecord:
    """One image's acquisition score under one strategy; ``details`` holds ``per_landmark`` and ``unit``."""

    strategy: str
    value: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def per_landmark(self) -> list[float | None]:
        return list(self.details.get("per_landmark", []))


@dataclass(frozen=True)
class PredictionRecord:
    """The latest run of one model version on one image."""

    run_id: int
    model_version: int
    points: np.ndarray  # (N, 2) original pixels, NaN where the model gave none
    confidence: np.ndarray  # (N,)
    prediction_ids: list[int | None]  # per landmark index: what a correction records as its origin
    heatmaps: str | None  # the cache, relative to the data folder: ask ``Project.heatmap_file``
    scores: dict[str, ScoreRecord]


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    state: str
    params: dict[str, Any]
    stage: str
    progress: float
    message: str
    log_tail: str
    error: str | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    result_model_id: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, row: Job) -> JobRecord:
        values = {c.name: getattr(row, c.name) for c in Job.__table__.columns}
        values["state"] = row.state.value
        values["params"] = dict(row.params or {})
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


@dataclass(frozen=True)
class WorkerRecord:
    id: int
    name: str
    device: str
    job_id: int | None
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    stopped_at: dt.datetime | None

    @classmethod
    def of(cls, row: Worker) -> WorkerRecord:
        return cls(**{c.name: getattr(row, c.name) for c in Worker.__table__.columns})
