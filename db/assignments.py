"""Double reading: which readers are asked for which images, and when each reader has finished.

A project asks for a share of its images (seeded, so the same share every time) or
a list of them to be read by two or more named readers. Each reader's queue is
their unfinished images. A reader is blind to the other readers' points on an image
until they finish their own reading of it (:meth:`Assignments.may_see_others`), so
that the readings stay independent, which is what makes their agreement mean anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from scn_annotator.errors import ScnError

from .models import Assignment, Image, utcnow
from .roles import reader_name
from .rows import image_row

if TYPE_CHECKING:
    from .store import Project

__all__ = ["AssignmentRecord", "Assignments"]


@dataclass(frozen=True)
class AssignmentRecord:
    image: str
    reader: str
    assigned_by: str
    assigned_at: dt.datetime
    finished_at: dt.datetime | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class Assignments:
    """``Assignments(project)``: who reads what."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def assign(
        self, readers: Sequence[str], *, images: Sequence[str] | None = None, share: float | None = None, seed: int = 0
    ) -> list[str]:
        """Ask every one of ``readers`` for the images given, or for a seeded random ``share`` of the project's.

        Every reader gets the same images (that is double reading). Assignments already
        there stay as they are. Returns the images assigned.
        """
        readers = [r.strip() for r in readers if r.strip()]
        if len(set(readers)) != len(readers) or not readers:
            raise ScnError(f"assign needs one or more different readers, not {list(readers)}")
        if (images is None) == (share is None):
            raise ScnError("assign needs either images or a share of the project's images")
        if share is not None and not 0 < share <= 1:
            raise ScnError(f"the share of images to read twice must be in (0, 1], not {share}")
        with self.project.db.write() as s:
            if images is None:
                every = sorted(s.scalars(select(Image.name)))
                count = max(1, round(share * len(every)))
                chosen = sorted(np.random.default_rng(seed).choice(every, size=count, replace=False).tolist())
            else:
                chosen = list(images)
            rows = [image_row(s, name) for name in chosen]  # an unknown image is refused before anything is written
            have = {(a.image_id, a.reader) for a in s.scalars(select(Assignment))}
            by = reader_name(self.project, s)
            s.add_all(
                Assignment(image_id=row.id, reader=reader, assigned_by=by)
                for row in rows
                for reader in readers
                if (row.id, reader) not in have
            )
        return [row.name for row in rows]

    def all(self) -> list[AssignmentRecord]:
        with self.project.db.read() as s:
            rows = s.execute(select(Assignment, Image.name).join(Image).order_by(Image.name, Assignment.reader))
            return [
                AssignmentRecord(name, a.reader, a.assigned_by, a.assigned_at, a.finished_at) for a, name in rows.all()
            ]

    def queue(self, reader: str | None = None, *, unfinished: bool = True) -> list[str]:
        """The images ``reader`` (default: who is connected) is asked to read, unfinished ones only by default."""
        who = self.who(reader)
        return [a.image for a in self.all() if a.reader == who and not (unfinished and a.finished)]

    def finish(self, image: str | int, reader: str | None = None) -> None:
        """``reader`` has finished their reading of ``image``: from now on they may see the others'."""
        who = self.who(reader)
        with self.project.db.write() as s:
            row = image_row(s, image)
            a = s.scalar(select(Assignment).where(Assignment.image_id == row.id, Assignment.reader == who))
            if a is None:
                raise ScnError(f"{who} is not asked to read image {row.name}")
            a.finished_at = a.finished_at or utcnow()

    def may_see_others(self, image: str | int, reader: str | None = None) -> bool:
        """May ``reader`` see the other readers' points on ``image``? Not while their own assigned reading is open."""
        who = self.who(reader)
        with self.project.db.read() as s:
            row = image_row(s, image)
            a = s.scalar(select(Assignment).where(Assignment.image_id == row.id, Assignment.reader == who))
            return a is None or a.finished_at is not None

    def who(self, reader: str | None = None) -> str:
        """``reader``, or who is connected (the PostgreSQL role; on SQLite the user)."""
        if reader:
            return reader.strip()
        with self.project.db.read() as s:
            return reader_name(self.project, s)
