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

from scn_annotator.configs import Record
from scn_annotator.engine.config import TrainConfig
from scn_annotator.engine.geometry import ImageGeometry

from .models import Event, EventKind, Image, Job, JobKind, JobState, LandmarkState, ModelVersion, Score, Source, Worker

__all__ = [
    "AnnotationRecord",
    "EventRecord",
    "ImageRecord",
    "JobRecord",
    "LandmarkInfo",
    "ModelRecord",
    "PredictionRecord",
    "ScoreRecord",
    "TrainingSet",
    "VersionMetrics",
    "WorkerRecord",
]


@dataclass(frozen=True)
class LandmarkInfo:
    id: int
    index: int
    name: str
    color: str
    description: str
    object_name: str | None = None  # as the names file gave it; None: inferred from the names


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
    #: where the file's header puts its pixels (for physical coordinates); None for images imported before it was kept
    geometry: ImageGeometry | None = None
    #: the id an exchange file (COCO) gave the image, kept so that it round-trips
    exchange_id: int | None = None

    @classmethod
    def of(cls, row: Image) -> ImageRecord:
        spacing = (row.spacing_x, row.spacing_y) if row.spacing_x and row.spacing_y else None
        meta = row.meta or {}
        geometry = ImageGeometry.from_dict(meta["geometry"]) if isinstance(meta.get("geometry"), dict) else None
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
            geometry,
            meta.get("exchange_id"),
        )


@dataclass(frozen=True)
class AnnotationRecord:
    landmark: int  # index
    x: float | None
    y: float | None
    state: LandmarkState
    source: Source
    author: str
    updated_at: dt.datetime
    prediction_id: int | None


@dataclass(frozen=True)
class EventRecord:
    """One change: a landmark's old and new values (or an image's old and new status), who, when, why."""

    id: int
    group_id: int  # the events of one action (one undo step) share it
    kind: EventKind
    image_id: int
    image: str  # the image's name
    landmark_id: int | None
    landmark: str | None  # the landmark's name; None for a status change
    old_x: float | None
    old_y: float | None
    old_state: str | None  # None: there was no annotation
    old_source: str | None
    new_x: float | None
    new_y: float | None
    new_state: str | None  # None: the annotation was removed
    new_source: str | None
    old_status: str | None
    new_status: str | None
    reverts: int | None  # the group an undo or redo acts on
    prediction_id: int | None  # the proposal a correction started from
    author: str
    at: dt.datetime
    reader: str | None = None  # whose reading a reading event changed; None: the consensus

    @classmethod
    def of(cls, row: Event, image: str, landmark: str | None) -> EventRecord:
        values = {c.name: getattr(row, c.name) for c in Event.__table__.columns}
        values["kind"] = EventKind(row.kind)
        return cls(image=image, landmark=landmark, **values)


@dataclass(frozen=True)
class VersionMetrics(Record):
    """What the store knows of a model version's quality, measured when it was registered.

    ``val_error`` is the one figure models are compared by: the inference path on
    validation images neither the new nor the current model trained on
    (``compared_on`` of them), beside the current model's error there
    (``previous_val_error``). The training loop's own figure is kept as
    ``training_val_error`` and decides nothing.
    """

    val_error: float | None = None
    unit: str = "px"
    previous_val_error: float | None = None
    compared_on: int = 0
    training_val_error: float | None = None
    steps: int = 0
    best_step: int = 0
    seconds: float = 0.0
    stopped: str = ""

    @property
    def error_text(self) -> str | None:
        """The validation error as the app shows it (``0.83 mm``); None when there is none."""
        return None if self.val_error is None else f"{self.val_error:.2f} {self.unit}"


@dataclass(frozen=True)
class TrainingSet(Record):
    """The images a version was trained and validated on, each with the last event it saw.

    The event id says which state of an image's annotation the model learned from, so
    that a later correction of it is known to be news to that model.
    """

    train: list[tuple[int, int]] = field(default_factory=list)  # (image id, last event id)
    val: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class ModelRecord:
    """A model version. ``checkpoint`` is relative to the data folder: ask ``project.models.file``."""

    id: int
    checkpoint: str
    config: TrainConfig | None  # how it was trained; None for a model registered by hand
    training_set: TrainingSet
    metrics: VersionMetrics
    parent_id: int | None
    is_current: bool
    created_at: dt.datetime
    note: str

    @classmethod
    def of(cls, row: ModelVersion) -> ModelRecord:
        return cls(
            row.id,
            row.checkpoint,
            TrainConfig.from_dict(row.config) if row.config else None,
            TrainingSet.from_dict(row.training_set or {}),
            VersionMetrics.from_dict(row.metrics or {}),
            row.parent_id,
            bool(row.is_current),
            row.created_at,
            row.note,
        )

    @property
    def trained_on(self) -> set[int]:
        """Ids of the images this version was trained on (not validated on)."""
        return {int(i) for i, _ in self.training_set.train}


@dataclass(frozen=True)
class ScoreRecord:
    """One image's acquisition score under one strategy, with its value for each landmark."""

    strategy: str
    value: float
    per_landmark: list[float | None] = field(default_factory=list)  # by landmark index; None: no value
    unit: str = ""
    extra: dict[str, float] = field(default_factory=dict)  # what a strategy adds (its parts, say)

    def details(self) -> dict[str, Any]:
        """The ``details`` column: the per-landmark values, the unit and the extras."""
        return {"per_landmark": list(self.per_landmark), "unit": self.unit, **self.extra}

    @classmethod
    def of(cls, row: Score) -> ScoreRecord:
        details = dict(row.details or {})
        per_landmark, unit = list(details.pop("per_landmark", [])), str(details.pop("unit", ""))
        return cls(row.strategy, row.value, per_landmark, unit, details)


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
    kind: JobKind | str  # a kind this version does not know stays its text (a newer worker's job)
    state: JobState
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
        values["state"] = row.state
        values["kind"] = _job_kind(row.kind)
        values["params"] = dict(row.params or {})
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.state.finished


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


def _job_kind(kind: str) -> JobKind | str:
    """A kind this version knows as its enum; one it does not (a newer worker's) stays its text."""
    try:
        return JobKind(kind)
    except ValueError:
        return kind
