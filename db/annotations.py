"""A project's annotations: every landmark's current position, with its history, undo and redo.

The rules kept here: a correction is durable when :meth:`Annotations.set` returns
(one short write transaction); every change appends an event with the old and the
new values, and undo and redo are events too, so nothing is overwritten without a
trace; undo is per person, so that in a team one annotator's undo never reverts
another's work; a model never writes here (only a person accepting proposals, or
an import, does).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scn_annotator.engine.geometry import clamp_to_image, inside_image
from scn_annotator.errors import ScnError

from .models import (
    Annotation,
    Event,
    EventKind,
    Image,
    ImagePrediction,
    ImageStatus,
    LandmarkState,
    Prediction,
    Source,
    utcnow,
)
from .records import AnnotationRecord, EventRecord
from .rows import current_run, image_row, user_name

if TYPE_CHECKING:
    from .store import Project

__all__ = ["Annotations", "apply_change", "check_position", "record_event"]

UNDOABLE = (EventKind.EDIT, EventKind.IMPORT, EventKind.UNDO, EventKind.REDO)


_LOOK_UP = object()


def record_event(s: Session, kind: EventKind, image_id: int, group_id: int | None = None, **values: Any) -> Event:
    """Append one event; the first event of an action (``group_id`` None) names the group."""
    event = Event(kind=kind, image_id=image_id, group_id=group_id or 0, **values)
    s.add(event)
    if group_id is None:
        s.flush()  # the id is needed now: it names the group
        event.group_id = event.id
    return event


def apply_change(
    s: Session,
    image: Image,
    landmark_id: int,
    new: tuple[float | None, float | None, str | None, str | None],
    *,
    kind: EventKind,
    author: str,
    group_id: int | None,
    prediction_id: int | None = None,
    reverts: int | None = None,
    current: Annotation | object | None = _LOOK_UP,
) -> Event | None:
    """Set one annotation to ``(x, y, state, source)`` (state None: remove) with its event.

    ``current`` may hand over the annotation already loaded (or None), saving a query
    per landmark when a whole file is imported.
    """
    if current is _LOOK_UP:
        current = s.scalar(
            select(Annotation).where(Annotation.image_id == image.id, Annotation.landmark_id == landmark_id)
        )
    old = (current.x, current.y, current.state.value, current.source.value) if current else (None,) * 4
    if old == new:
        return None
    event = record_event(
        s,
        kind,
        image.id,
        group_id,
        landmark_id=landmark_id,
        reverts=reverts,
        author=author,
        old_x=old[0],
        old_y=old[1],
        old_state=old[2],
        old_source=old[3],
        new_x=new[0],
        new_y=new[1],
        new_state=new[2],
        new_source=new[3],
        prediction_id=prediction_id,
    )
    if new[2] is None:
        if current is not None:
            s.delete(current)
    elif current is None:
        s.add(
            Annotation(
                image_id=image.id,
                landmark_id=landmark_id,
                x=new[0],
                y=new[1],
                state=LandmarkState(new[2]),
                source=Source(new[3]),
                author=author,
                prediction_id=prediction_id,
                updated_at=utcnow(),
            )
        )
    else:
        current.x, current.y = new[0], new[1]
        current.state, current.source = LandmarkState(new[2]), Source(new[3])
        current.author, current.prediction_id, current.updated_at = author, prediction_id, utcnow()
    image.last_author, image.updated_at = author, utcnow()
    if image.status == ImageStatus.NEW:
        image.status = ImageStatus.IN_PROGRESS
    return event


def check_position(image: Image, x: float | None, y: float | None, state: str) -> None:
    """A human point's one check, for the consensus and a reader's reading alike: on its image, or absent."""
    if state == LandmarkState.ABSENT.value:
        if x is not None or y is not None:
            raise ScnError("an absent landmark has no position")
        return
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        raise ScnError(f"a {state} landmark needs a finite position, not ({x}, {y})")
    if not inside_image(x, y, (image.width, image.height)):
        raise ScnError(f"({x:.1f}, {y:.1f}) lies outside image {image.name} ({image.width} x {image.height})")


class Annotations:
    """``project.annotations``: read, change, undo and redo the landmarks of the project's images."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def of(self, image: int | str) -> dict[int, AnnotationRecord]:
        """The current annotation of every annotated landmark, by landmark index."""
        index = {lm.id: lm.index for lm in self.project.landmarks()}
        with self.project.db.read() as s:
            row = image_row(s, image)
            return {
                index[a.landmark_id]: AnnotationRecord(
                    index[a.landmark_id],
                    a.x,
                    a.y,
                    a.state,
                    a.source,
                    a.author,
                    a.updated_at,
                    a.prediction_id,
                )
                for a in s.scalars(select(Annotation).where(Annotation.image_id == row.id))
            }

    def points(self, image: int | str) -> np.ndarray:
        """(N, 2) pixel positions, NaN where a landmark has none (unannotated or absent)."""
        out = np.full((len(self.project.landmarks()), 2), np.nan)
        for i, a in self.of(image).items():
            if a.x is not None:
                out[i] = (a.x, a.y)
        return out

    def set(
        self,
        image: int | str,
        landmark: int | str,
        x: float | None,
        y: float | None,
        *,
        state: str = "placed",
        author: str | None = None,
        prediction_id: int | None = None,
        source: str = "human",
    ) -> int | None:
        """Place, move or mark one landmark; durable when this returns. Returns the event id.

        ``prediction_id`` records the prediction the correction started from.
        """
        lm = self.project.landmark(landmark)
        state = LandmarkState(state).value
        source = Source(source).value
        with self.project.db.write() as s:
            row = image_row(s, image)
            check_position(row, x, y, state)
            author = user_name(author or self.project.user)
            prediction_id = self._provenance(s, prediction_id, row.id, lm.id)
            event = apply_change(
                s,
                row,
                lm.id,
                (x, y, state, source),
                kind=EventKind.EDIT,
                author=author,
                group_id=None,
                prediction_id=prediction_id,
            )
            return event.id if event else None

    @staticmethod
    def _provenance(s: Session, prediction_id: int | None, image_id: int, landmark_id: int) -> int | None:
        """``prediction_id`` if it is a prediction of this image and landmark, else None.

        A correction is saved whatever the worker did meanwhile; provenance that does
        not name a proposal of this very landmark (a caller's stale or wrong id) is
        dropped rather than attached to the wrong prediction or refused.
        """
        if prediction_id is None:
            return None
        found = s.execute(
            select(Prediction.landmark_id, ImagePrediction.image_id)
            .join(ImagePrediction, Prediction.run_id == ImagePrediction.id)
            .where(Prediction.id == prediction_id)
        ).first()
        return prediction_id if found is not None and tuple(found) == (landmark_id, image_id) else None

    def clear(self, image: int | str, landmark: int | str, author: str | None = None) -> int | None:
        """Remove a landmark's annotation (back to unannotated), with its event."""
        lm = self.project.landmark(landmark)
        with self.project.db.write() as s:
            row = image_row(s, image)
            event = apply_change(
                s,
                row,
                lm.id,
                (None, None, None, None),
                kind=EventKind.EDIT,
                author=user_name(author or self.project.user),
                group_id=None,
            )
            return event.id if event else None

    def accept_predictions(self, image: int | str, author: str | None = None, run_id: int | None = None) -> int:
        """Copy the current model's predictions to every landmark that has no annotation yet.

        ``run_id`` accepts another run of this image instead: the conditioned
        proposals the annotator was shown. Annotated landmarks, human or not, are
        left as they are. One undo step. Returns how many landmarks were set.
        """
        author = user_name(author or self.project.user)
        with self.project.db.write() as s:
            row = image_row(s, image)
            run = current_run(s, row.id) if run_id is None else s.get(ImagePrediction, run_id)
            if run is None or run.image_id != row.id:
                raise ScnError(f"no prediction of the current model for image {row.name}")
            annotated = set(s.scalars(select(Annotation.landmark_id).where(Annotation.image_id == row.id)))
            group, count = None, 0
            for p in sorted(run.points, key=lambda p: p.landmark_id):
                if p.landmark_id in annotated:
                    continue
                x, y = clamp_to_image(p.x, p.y, (row.width, row.height))
                event = apply_change(
                    s,
                    row,
                    p.landmark_id,
                    (x, y, "placed", "model_accepted"),
                    kind=EventKind.EDIT,
                    author=author,
                    group_id=group,
                    prediction_id=p.id,
                )
                if event is not None:
                    group = group or event.group_id
                    count += 1
            return count

    # -- history, undo, redo ---------------------------------------------------

    def history(self, image: int | str | None = None, limit: int | None = None) -> list[EventRecord]:
        """Events, newest first."""
        names = {lm.id: lm.name for lm in self.project.landmarks()}
        with self.project.db.read() as s:
            query = select(Event, Image.name).join(Image, Event.image_id == Image.id).order_by(Event.id.desc())
            if image is not None:
                query = query.where(Event.image_id == image_row(s, image).id)
            if limit:
                query = query.limit(limit)
            return [EventRecord.of(e, image_name, names.get(e.landmark_id)) for e, image_name in s.execute(query)]

    @staticmethod
    def _stacks(s: Session, image_id: int, author: str) -> tuple[list[int], list[int]]:
        """(done, undone) group stacks of one person on one image, replayed from their events.

        Undo is per person: in a team, one annotator's undo never reverts another's work.
        """
        done: list[int] = []
        undone: list[int] = []
        seen: set[int] = set()
        events = s.scalars(
            select(Event)
            .where(Event.image_id == image_id, Event.kind.in_(UNDOABLE), Event.author == author)
            .order_by(Event.id)
        )
        for e in events:
            if e.group_id in seen:
                continue
            seen.add(e.group_id)
            if e.kind in (EventKind.EDIT, EventKind.IMPORT):
                done.append(e.group_id)
                undone.clear()
            elif e.kind == EventKind.UNDO and done and done[-1] == e.reverts:
                undone.append(done.pop())
            elif e.kind == EventKind.REDO and undone and undone[-1] == e.reverts:
                done.append(undone.pop())
        return done, undone

    def _revert(self, image: int | str, author: str | None, redo: bool) -> int:
        author = user_name(author or self.project.user)
        with self.project.db.write() as s:
            row = image_row(s, image)
            done, undone = self._stacks(s, row.id, author)
            stack = undone if redo else done
            if not stack:
                return 0
            target = stack[-1]
            events = list(
                s.scalars(
                    select(Event).where(Event.group_id == target, Event.landmark_id.is_not(None)).order_by(Event.id)
                )
            )
            self._check_unchanged_since(s, row, events, redo)
            group, count = None, 0
            for e in events if redo else reversed(events):
                values = (
                    (e.new_x, e.new_y, e.new_state, e.new_source)
                    if redo
                    else (e.old_x, e.old_y, e.old_state, e.old_source)
                )
                event = apply_change(
                    s,
                    row,
                    e.landmark_id,
                    values,
                    kind=EventKind.REDO if redo else EventKind.UNDO,
                    author=author,
                    group_id=group,
                    reverts=target,
                    prediction_id=e.prediction_id,
                )
                if event is not None:
                    group = group or event.group_id
                    count += 1
            if group is None:  # nothing to change (already in that state): still move the stacks
                record_event(s, EventKind.REDO if redo else EventKind.UNDO, row.id, reverts=target, author=author)
            if (
                not redo
                and row.status == ImageStatus.IN_PROGRESS
                and not s.scalar(select(func.count()).select_from(Annotation).where(Annotation.image_id == row.id))
            ):
                # undone back to before the first change: the image is new again (a change made it in progress)
                record_event(
                    s,
                    EventKind.STATUS,
                    row.id,
                    author=author,
                    old_status=row.status.value,
                    new_status=ImageStatus.NEW.value,
                )
                row.status = ImageStatus.NEW
            return count

    def _check_unchanged_since(self, s: Session, image: Image, events: list[Event], redo: bool) -> None:
        """Refuse to undo (redo) an action when a landmark it set was changed since, by anyone."""
        current = {a.landmark_id: a for a in s.scalars(select(Annotation).where(Annotation.image_id == image.id))}
        names = {lm.id: lm.name for lm in self.project.landmarks()}
        changed = []
        for e in events:
            expected = (
                (e.old_x, e.old_y, e.old_state, e.old_source) if redo else (e.new_x, e.new_y, e.new_state, e.new_source)
            )
            a = current.get(e.landmark_id)
            actual = (a.x, a.y, a.state.value, a.source.value) if a is not None else (None,) * 4
            if actual != expected:
                changed.append(f"{names.get(e.landmark_id)} (by {a.author if a is not None else 'someone'})")
        if changed:
            what = "redo" if redo else "undo"
            raise ScnError(f"cannot {what} on image {image.name}: changed since: {', '.join(sorted(set(changed)))}")

    def undo(self, image: int | str, author: str | None = None) -> int:
        """Revert this user's last change to the image (one action, however many landmarks).

        Returns the landmarks changed. Refused with a clear message when someone changed
        one of those landmarks since.
        """
        return self._revert(image, author, redo=False)

    def redo(self, image: int | str, author: str | None = None) -> int:
        """Re-apply the last undone change, if nothing was changed since."""
        return self._revert(image, author, redo=True)

    def can_undo(self, image: int | str, author: str | None = None) -> tuple[bool, bool]:
        """Whether this user (``author``) has something to undo and to redo on the image."""
        with self.project.db.read() as s:
            done, undone = self._stacks(s, image_row(s, image).id, user_name(author or self.project.user))
        return bool(done), bool(undone)
