"""A project's image embeddings: one vector per image, kind and model version (NULL: model-free)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import ColumnElement, delete, select

from .models import Embedding

if TYPE_CHECKING:
    from .store import Project

__all__ = ["Embeddings"]


class Embeddings:
    """``project.embeddings``: store and read the vectors a pool ranking clusters."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def put(self, kind: str, version_id: int | None, vectors: Mapping[int, np.ndarray]) -> None:
        """Store (replace) the vectors of ``kind`` and model version for the images ``vectors`` holds, by image id."""
        if not vectors:
            return
        with self.project.db.write() as s:
            s.execute(delete(Embedding).where(*_of(kind, version_id), Embedding.image_id.in_(list(vectors))))
            s.add_all(
                Embedding(
                    image_id=int(i),
                    model_version_id=version_id,
                    kind=kind,
                    vector=np.asarray(v, dtype="<f4").ravel().tobytes(),
                )
                for i, v in vectors.items()
            )

    def get(self, kind: str, version_id: int | None) -> dict[int, np.ndarray]:
        """Every stored vector of ``kind`` and model version, by image id."""
        with self.project.db.read() as s:
            rows = s.execute(select(Embedding.image_id, Embedding.vector).where(*_of(kind, version_id)))
            return {int(i): np.frombuffer(v, dtype="<f4").copy() for i, v in rows}


def _of(kind: str, version_id: int | None) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The rows of ``kind`` and model version (``None``: the model-free ones, whose version is NULL)."""
    version = Embedding.model_version_id.is_(None) if version_id is None else Embedding.model_version_id == version_id
    return Embedding.kind == kind, version
