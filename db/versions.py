"""A project's model versions: registered with their model files, one of them current.

At most one version is current (a partial unique index), and switching is one
transaction, so a rollback is making an older version current. A team project
(PostgreSQL) stores the model file's bytes in the same transaction as the
version, so no machine sees a version before its weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scn_annotator.engine.config import TrainConfig
from scn_annotator.errors import ScnError
from scn_annotator.io.atomic import atomic_copy

from . import artifacts
from .models import ModelVersion
from .records import ModelRecord, TrainingSet, VersionMetrics

if TYPE_CHECKING:
    from .store import Project

__all__ = ["Models"]


class Models:
    """``project.models``: register, list and switch model versions; find their files."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def path(self, version: int) -> Path:
        """Where version ``version``'s model file lives under the data folder."""
        return self.project.checkpoint_dir / f"model-v{version:04d}.pt"

    def register(
        self,
        checkpoint: str | Path,
        *,
        config: TrainConfig | None = None,
        training_set: TrainingSet | None = None,
        metrics: VersionMetrics | None = None,
        parent_id: int | None = None,
        make_current: bool = False,
        note: str = "",
    ) -> int:
        """Record a model version (its checkpoint moved under the data folder); optionally make it current."""
        source = Path(checkpoint)
        if not source.is_file():
            raise ScnError(f"{source}: no such model file")
        with self.project.db.write() as s:
            version = ModelVersion(
                checkpoint="",
                config=config.to_dict() if config is not None else {},
                training_set=training_set.to_dict() if training_set is not None else {},
                metrics=metrics.to_dict() if metrics is not None else {},
                parent_id=parent_id,
                note=note,
            )
            s.add(version)
            s.flush()
            target = self.path(version.id)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.resolve().parent == target.parent.resolve():
                os.replace(source, target)  # written by the worker beside its final place
            else:
                atomic_copy(source, target)
            version.checkpoint = target.relative_to(self.project.data_dir).as_posix()
            if self.project.shares_files:  # in the same transaction: no machine sees the version before its weights
                artifacts.store(s, target, version.checkpoint, "checkpoint", version.id)
            if make_current:
                _make_current(s, version.id)
            return version.id

    def make_current(self, version_id: int) -> None:
        """Make another version current (a rollback is this with an older one); atomic."""
        with self.project.db.write() as s:
            if s.get(ModelVersion, version_id) is None:
                raise ScnError(f"no model version {version_id}")
            _make_current(s, version_id)

    def current(self) -> ModelRecord | None:
        with self.project.db.read() as s:
            v = s.scalar(select(ModelVersion).where(ModelVersion.is_current))
            return ModelRecord.of(v) if v else None

    def all(self) -> list[ModelRecord]:
        with self.project.db.read() as s:
            return [ModelRecord.of(v) for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id))]

    def get(self, version_id: int | None = None) -> ModelRecord:
        """A model version (the current one when None); a clear error when there is none."""
        if version_id is None:
            current = self.current()
            if current is None:
                raise ScnError("the project has no model yet: train one first")
            return current
        with self.project.db.read() as s:
            v = s.get(ModelVersion, version_id)
            if v is None:
                raise ScnError(f"no model version {version_id}")
            return ModelRecord.of(v)

    def file(self, model: ModelRecord | int) -> Path:
        """The model file of a version on this machine (fetched from a team database when missing)."""
        record = model if isinstance(model, ModelRecord) else self.get(model)
        return self.project.local_file(record.checkpoint)


def _make_current(s: Session, version_id: int) -> None:
    # Two statements in one transaction: clear, then set (a single UPDATE could
    # trip the unique index half-way on PostgreSQL).
    s.execute(update(ModelVersion).where(ModelVersion.is_current).values(is_current=False))
    s.flush()
    s.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(is_current=True))
