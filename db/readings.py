"""A project's readings: each reader's own points, kept apart from the consensus in ``annotations``.

A reader's points are changed only in that reader's name (a re-import by the same
reader replaces them; another reader's import never touches them). The consensus
the model trains on is decided from them (:meth:`Readings.consensus_table`) and
imported into ``annotations`` through the same checks as any landmark file, so a
human correction there is never overwritten without ``--overwrite``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from scn_annotator.errors import ScnError
from scn_annotator.io.landmark_files import LandmarkTable

from .models import Image, LandmarkState, Reading, utcnow
from .reading_history import current, record_reading, values_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .store import Project
    from .transfer import Change

__all__ = ["Readings"]


class Readings:
    """``project.readings``: every reader's points, by reader and image."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def readers(self) -> list[str]:
        with self.project.db.read() as s:
            return sorted(set(s.scalars(select(Reading.reader).distinct())))

    def all(self) -> dict[str, dict[str, np.ndarray]]:
        """``{reader: {image name: (N, 2) original pixels, NaN where not placed or absent}}``."""
        return {reader: table.points for reader, table in self.tables().items()}

    def tables(self) -> dict[str, LandmarkTable]:
        """Every reader's reading as a table keyed by image name, each landmark's state in ``extra`` (for exports)."""
        index = {lm.id: lm.index for lm in self.project.landmarks()}
        names = self.project.landmark_names
        out: dict[str, LandmarkTable] = {}
        with self.project.db.read() as s:
            rows = s.execute(select(Reading, Image.name).join(Image, Image.id == Reading.image_id))
            for reading, image in rows:
                table = out.setdefault(reading.reader, LandmarkTable(list(names), {}, "px", None, layout="exchange"))
                if image not in table.points:
                    table.points[image] = np.full((len(names), 2), np.nan)
                    table.extra[image] = {"state": np.full(len(names), "", dtype=object)}
                j = index[reading.landmark_id]
                table.extra[image]["state"][j] = reading.state.value
                if reading.x is not None:
                    table.points[image][j] = (reading.x, reading.y)
        return out

    def set(
        self,
        image: int | str,
        landmark: int | str,
        x: float | None,
        y: float | None,
        *,
        state: str = "placed",
        reader: str | None = None,
    ) -> None:
        """Place, move or mark one landmark of a reader's own reading (default: this user's); durable on return.

        One row per image, landmark and reader, written in one statement (insert or
        update), so two readers saving the same image at once never touch each other's
        rows, and the same reader's two windows cannot make a duplicate. On PostgreSQL
        the reader defaults to, and is checked against, the connecting role.
        """
        from .annotations import check_position
        from .roles import connected_role, reader_name
        from .rows import image_row, user_name

        lm = self.project.landmark(landmark)
        state = LandmarkState(state).value
        with self.project.db.write() as s:
            row = image_row(s, image)
            check_position(row, x, y, state)
            role = connected_role(self.project, s)
            who = (reader or reader_name(self.project, s)).strip()
            values = {"x": x, "y": y, "state": LandmarkState(state), "author": role or user_name(self.project.user)}
            before = values_of(current(s, row.id, lm.id, who))
            insert = (sqlite_insert if self.project.db.is_sqlite else pg_insert)(Reading).values(
                image_id=row.id, landmark_id=lm.id, reader=who, updated_at=utcnow(), **values
            )
            with self._refused(role, who):
                s.execute(
                    insert.on_conflict_do_update(
                        index_elements=["image_id", "landmark_id", "reader"], set_={**values, "updated_at": utcnow()}
                    )
                )
            record_reading(s, row, lm.id, who, before, (x, y, state), values["author"])

    def visible(self, image: str, reader: str | None = None) -> dict[str, np.ndarray]:
        """The readings of ``image`` that ``reader`` (default: who is connected) may see: their own, and the
        others' only once their own assigned reading of it is finished (blind double reading)."""
        who = self.project.assignments.who(reader)
        others = self.project.assignments.may_see_others(image, who)
        return {name: points for name, points in self.of_image(image).items() if others or name == who}

    def of_image(self, image: str | int) -> dict[str, np.ndarray]:
        """Every reader's (N, 2) points of one image (NaN where not placed or absent), in one query: what the
        app reads on every redraw, so not the whole project's readings."""
        from .rows import image_row

        index = {lm.id: lm.index for lm in self.project.landmarks()}
        out: dict[str, np.ndarray] = {}
        with self.project.db.read() as s:
            row = image_row(s, image)
            for reading in s.scalars(select(Reading).where(Reading.image_id == row.id)):
                points = out.setdefault(reading.reader, np.full((len(index), 2), np.nan))
                if reading.x is not None:
                    points[index[reading.landmark_id]] = (reading.x, reading.y)
        return out

    def replace(self, s: Session, reader: str, author: str, plan: list[Change]) -> int:
        """Within the caller's transaction: ``reader``'s points of the plan's images become the plan's.

        On PostgreSQL the author is the connecting role, and the database refuses a role that
        is neither ``reader`` nor a reviewer (migration 0010): said here in one line.
        """
        from .roles import connected_role

        role = connected_role(self.project, s)
        images = {row.id for row, _, _ in plan}
        before = {
            (r.image_id, r.landmark_id): values_of(r)
            for r in s.scalars(select(Reading).where(Reading.reader == reader, Reading.image_id.in_(images)))
        }
        s.execute(delete(Reading).where(Reading.reader == reader, Reading.image_id.in_(images)))
        s.add_all(
            Reading(
                image_id=row.id,
                landmark_id=lm_id,
                reader=reader,
                x=x,
                y=y,
                state=LandmarkState(state),
                author=role or author,
            )
            for row, lm_id, (x, y, state, _source) in plan
        )
        with self._refused(role, reader):
            s.flush()  # here, so that a refusal is said here (the caller's transaction is rolled back)
        after = {(row.id, lm_id): (x, y, state) for row, lm_id, (x, y, state, _source) in plan}
        groups: dict[int, int] = {}
        rows = {row.id: row for row, _, _ in plan}
        for key in sorted(set(before) | set(after)):
            event = record_reading(
                s,
                rows[key[0]],
                key[1],
                reader,
                before.get(key, (None,) * 3),
                after.get(key, (None,) * 3),
                role or author,
                groups.get(key[0]),
            )
            if event is not None:
                groups.setdefault(key[0], event.group_id)
        return len(plan)

    @staticmethod
    @contextmanager
    def _refused(role: str | None, reader: str) -> Iterator[None]:
        """The database's refusal of another reader's name (PostgreSQL's row-level security), said in one line."""
        from .roles import REVIEWER

        try:
            yield
        except DBAPIError as exc:
            if "row-level security" not in str(exc.orig):
                raise
            raise ScnError(
                f"role {role!r} may not write the reading of {reader!r}: only {reader!r} or a member of {REVIEWER} may"
            ) from None

    def consensus_table(self) -> LandmarkTable | None:
        """The mean of every landmark over the readers who placed it, for every image read by two or more
        (an image read once has no consensus to decide: its reading is what there is). None without such images."""
        by_reader = self.all()
        images = sorted({i for r in by_reader.values() for i in r})
        names = self.project.landmark_names
        points: dict[str, np.ndarray] = {}
        for image in images:
            stack = np.stack([r[image] for r in by_reader.values() if image in r])
            if len(stack) < 2:
                continue
            placed = ~np.isnan(stack[..., 0])
            total = np.where(placed[..., None], stack, 0.0).sum(axis=0)
            count = placed.sum(axis=0)[:, None]
            points[image] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        if not points:
            return None
        return LandmarkTable(names=list(names), points=points, unit="px", layout="wide", path=None)
