"""The project's tables (SQLAlchemy 2.x declarative models).

The design rules the tables encode:

- ``annotations`` holds the *current* state of every landmark of every image and
  is only ever changed by a person or an import; model output goes to
  ``predictions``, so no model can overwrite a human correction.
- ``events`` is append-only: every change to an annotation or an image status
  adds a row with the old and new values, who and when, and the prediction it
  started from. Undo and redo are new events, not deletions, so the audit trail
  is complete.
- ``model_versions`` has at most one current row, enforced by a partial unique
  index, and switching is one transaction.
- A prediction run is never deleted when the same model predicts the image again;
  it is marked superseded, so the provenance of every correction survives.
- Checkpoints and heatmap caches are files under each machine's data folder, named
  by a path relative to it. A team project (PostgreSQL) also keeps their bytes in
  ``artifacts`` / ``artifact_chunks``, so every machine that shares the database,
  and nothing else, can fetch them into its own folder (``db/artifacts.py``).

Schema changes go through Alembic (``db/migrations``); a test checks that the
migrations and these models describe the same schema.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from scn_annotator.configs import TextEnum

__all__ = [
    "Annotation",
    "Artifact",
    "ArtifactChunk",
    "Base",
    "Event",
    "EventKind",
    "Image",
    "ImagePrediction",
    "ImageStatus",
    "Job",
    "JobKind",
    "JobState",
    "Landmark",
    "LandmarkState",
    "ModelVersion",
    "Prediction",
    "Score",
    "Setting",
    "Source",
    "Worker",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Naive UTC: SQLite keeps no time zone, so none is stored anywhere."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: DateTime(timezone=False)}  # noqa: RUF012


class ImageStatus(TextEnum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    SKIPPED = "skipped"


class LandmarkState(TextEnum):
    PLACED = "placed"  # seen and placed
    OCCLUDED = "occluded"  # not visible, position estimated
    ABSENT = "absent"  # not in this image (amputated, cropped out); no position


class Source(TextEnum):
    HUMAN = "human"  # placed or corrected by a person
    MODEL_ACCEPTED = "model_accepted"  # a prediction a person accepted as it was
    IMPORTED = "imported"  # from a landmark file


class EventKind(TextEnum):
    """What an event records: a change of landmarks (edit, import, undo, redo) or of an image's status."""

    EDIT = "edit"
    IMPORT = "import"
    UNDO = "undo"
    REDO = "redo"
    STATUS = "status"
    READING = "reading"  # a change to one reader's own reading (``reader`` names whose)
    READING_UNDO = "reading_undo"  # a reading change taken back (``reverts`` names it)


class JobKind(TextEnum):
    ROUND = "round"  # train on the done images, then re-predict and re-rank
    PREDICT = "predict"  # re-predict and re-rank with the current model


class JobState(TextEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    # Stored as the readable values, checked by a constraint on every backend.
    return Enum(
        kind,
        name=name,
        values_callable=lambda e: [m.value for m in e],
        native_enum=False,
        create_constraint=True,
        length=16,
    )


class Setting(Base):
    """Project-wide settings as JSON values (image root, retraining policy, strategy, ...)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class Landmark(Base):
    __tablename__ = "landmarks"
    id: Mapped[int] = mapped_column(primary_key=True)
    index: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    color: Mapped[str] = mapped_column(String(9))  # "#rrggbb"
    description: Mapped[str] = mapped_column(Text, default="")
    #: The structure this landmark belongs to (a vertebra for its four corners), as the landmark-names file
    #: gave it; None: inferred from the names (``engine.objects.LandmarkObjects.infer``).
    object_name: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Image(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), unique=True)  # relative to the image root where possible
    name: Mapped[str] = mapped_column(String(256), unique=True)  # the id landmark files use
    checksum: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the file
    file_size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    spacing_x: Mapped[float | None] = mapped_column(Float)
    spacing_y: Mapped[float | None] = mapped_column(Float)
    spacing_source: Mapped[str] = mapped_column(String(16), default="unknown")
    status: Mapped[ImageStatus] = mapped_column(_enum(ImageStatus, "image_status"), default=ImageStatus.NEW, index=True)
    last_author: Mapped[str | None] = mapped_column(String(128))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    annotations: Mapped[list[Annotation]] = relationship(back_populates="image")


class Annotation(Base):
    """The current state of one landmark in one image."""

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("image_id", "landmark_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    landmark_id: Mapped[int] = mapped_column(ForeignKey("landmarks.id"))
    x: Mapped[float | None] = mapped_column(Float)  # original pixels; None when absent
    y: Mapped[float | None] = mapped_column(Float)
    state: Mapped[LandmarkState] = mapped_column(_enum(LandmarkState, "landmark_state"))
    source: Mapped[Source] = mapped_column(_enum(Source, "annotation_source"))
    author: Mapped[str] = mapped_column(String(128))
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id", ondelete="SET NULL"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    image: Mapped[Image] = relationship(back_populates="annotations")


class Event(Base):
    """One change, append-only. ``group_id`` ties the events of one action (undo unit)."""

    __tablename__ = "events"
    __table_args__ = (Index(None, "image_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # an EventKind
    reverts: Mapped[int | None] = mapped_column(Integer)  # the group an undo/redo acts on
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    landmark_id: Mapped[int | None] = mapped_column(ForeignKey("landmarks.id"))
    old_x: Mapped[float | None] = mapped_column(Float)
    old_y: Mapped[float | None] = mapped_column(Float)
    old_state: Mapped[str | None] = mapped_column(String(16))  # None: there was no annotation
    old_source: Mapped[str | None] = mapped_column(String(16))
    new_x: Mapped[float | None] = mapped_column(Float)
    new_y: Mapped[float | None] = mapped_column(Float)
    new_state: Mapped[str | None] = mapped_column(String(16))  # None: the annotation was removed
    new_source: Mapped[str | None] = mapped_column(String(16))
    old_status: Mapped[str | None] = mapped_column(String(16))
    new_status: Mapped[str | None] = mapped_column(String(16))
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id", ondelete="SET NULL"))
    author: Mapped[str] = mapped_column(String(128))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reader: Mapped[str | None] = mapped_column(String(128))  # whose reading a reading event changed; None: consensus


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        # at most one current version, on SQLite and PostgreSQL alike
        Index(
            "uq_model_versions_current",
            "is_current",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint: Mapped[str] = mapped_column(String(1024))  # relative to the data folder
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    training_set: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


class ImagePrediction(Base):
    """One model version's run on one image: its heatmap cache and its scores.

    A model version may predict an image again (a round that keeps the current
    model re-predicts everything). The new run does not replace the old one: the
    old run is marked ``superseded`` and kept, because corrections and their events
    refer to its predictions ("which proposal did this correction start from"),
    and because the annotator's open view may still hold its prediction ids. At
    most one run per version and image is not superseded (a partial unique index).
    """

    __tablename__ = "image_predictions"
    __table_args__ = (
        Index(
            "uq_image_predictions_latest",
            "model_version_id",
            "image_id",
            unique=True,
            sqlite_where=text("NOT superseded"),
            postgresql_where=text("NOT superseded"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    heatmaps: Mapped[str | None] = mapped_column(String(1024))  # .npz relative to the data folder
    superseded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: Set on a run conditioned on an annotator's confirmed landmarks (their indices): the proposals the app
    #: showed after a correction. Such a run is born superseded; it is never the model's latest prediction.
    hints: Mapped[list[int] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    points: Mapped[list[Prediction]] = relationship(back_populates="run", cascade="all, delete-orphan")
    scores: Mapped[list[Score]] = relationship(back_populates="run", cascade="all, delete-orphan")


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("run_id", "landmark_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("image_predictions.id", ondelete="CASCADE"))
    landmark_id: Mapped[int] = mapped_column(ForeignKey("landmarks.id"))
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)

    run: Mapped[ImagePrediction] = relationship(back_populates="points")


class Score(Base):
    """An acquisition score of one image under one strategy, with per-landmark values."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("run_id", "strategy"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("image_predictions.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    #: ``per_landmark`` (a value per landmark index, None where there is none), ``unit`` and any extras.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    run: Mapped[ImagePrediction] = relationship(back_populates="scores")


class Job(Base):
    """A unit of background work (training, re-prediction) and everything the GUI shows of it."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.QUEUED, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stage: Mapped[str] = mapped_column(String(32), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    log_tail: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(256))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    result_model_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class Worker(Base):
    """A background worker process: the app starts one when none is alive."""

    __tablename__ = "workers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256))  # host:pid
    device: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column()


class Artifact(Base):
    """A file every machine of a team project must reach (a checkpoint, a heatmap cache), by its data path."""

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(512), unique=True)  # relative to the data folder, posix
    kind: Mapped[str] = mapped_column(String(32))  # "checkpoint" or "heatmaps"
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ArtifactChunk(Base):
    """One piece of an artifact's bytes: streamed in and out a piece at a time, never whole in memory."""

    __tablename__ = "artifact_chunks"
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Embedding(Base):
    """What one image looks like as a vector (``active/embeddings.py``), for ranking a pool by typicality.

    ``model_version_id`` is NULL for the model-free ``pixels`` kind (a project's images
    are ranked right after the import, before any model) and the version that computed
    them for the ``features`` kind, kept beside that version's scores.
    """

    __tablename__ = "embeddings"
    __table_args__ = (Index("ix_embeddings_lookup", "kind", "model_version_id", "image_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian


class Reading(Base):
    """One reader's own point for one landmark in one image, beside the project's consensus (``annotations``).

    Several readers read an image independently (double reading); each keeps their
    own row, which only they (or an import in their name) change, never another
    reader. The consensus the model trains on and the export carries stays in
    ``annotations``, decided from the readings (``db/readings.py``).
    """

    __tablename__ = "readings"
    __table_args__ = (UniqueConstraint("image_id", "landmark_id", "reader"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    landmark_id: Mapped[int] = mapped_column(ForeignKey("landmarks.id"))
    reader: Mapped[str] = mapped_column(String(128), index=True)
    x: Mapped[float | None] = mapped_column(Float)  # original pixels; None when absent
    y: Mapped[float | None] = mapped_column(Float)
    state: Mapped[LandmarkState] = mapped_column(_enum(LandmarkState, "landmark_state"))
    #: who wrote it: the reader, or who imported it in the reader's name
    author: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Assignment(Base):
    """An image a named reader is asked to read (double reading: two or more readers per image).

    ``finished_at`` is set when the reader finishes their reading; until then the
    reader is blind to the other readers' points on that image.
    """

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("image_id", "reader"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    reader: Mapped[str] = mapped_column(String(128), index=True)
    assigned_by: Mapped[str] = mapped_column(String(128))
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class ReviewStatus(TextEnum):
    REVIEWED = "reviewed"  # a reviewer checked the image's landmarks and accepts them
    NEEDS_CHANGES = "needs_changes"  # a reviewer asks for changes (the note says which)


class Review(Base):
    """A reviewer's verdict on an image; the latest row is its review status, the earlier ones its history."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    status: Mapped[ReviewStatus] = mapped_column(_enum(ReviewStatus, "review_status"))
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
