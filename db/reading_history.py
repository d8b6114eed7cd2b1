"""A reading's history: every change to a reader's points is an event, and a reader can take their last one back.

Kept apart from the consensus's events (their own kinds, and the reader named), so
that undo in the consensus and undo in a reading never revert each other; as there,
undo is per person and per image, and refused when someone changed those points since.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scn_annotator.errors import ScnError

from .annotations import record_event
from .models import Event, EventKind, Image, LandmarkState, Reading, utcnow

__all__ = ["clear_reading", "current", "record_reading", "undo_reading", "values_of"]

Values = tuple[float | None, float | None, str | None]  # x, y, state (None: no point of this reader)


def values_of(reading: Reading | None) -> Values:
    return (reading.x, reading.y, reading.state.value) if reading is not None else (None, None, None)


def record_reading(
    s: Session,
    image: Image,
    landmark_id: int,
    reader: str,
    old: Values,
    new: Values,
    author: str,
    group_id: int | None = None,
    kind: EventKind = EventKind.READING,
    reverts: int | None = None,
) -> Event | None:
    """The event of one reading change (None when nothing changes); the first of an action names its group."""
    if old == new:
        return None
    return record_event(
        s,
        kind,
        image.id,
        group_id,
        landmark_id=landmark_id,
        reader=reader,
        author=author,
        reverts=reverts,
        old_x=old[0],
        old_y=old[1],
        old_state=old[2],
        new_x=new[0],
        new_y=new[1],
        new_state=new[2],
    )


def current(s: Session, image_id: int, landmark_id: int, reader: str) -> Reading | None:
    return s.scalar(
        select(Reading).where(
            Reading.image_id == image_id, Reading.landmark_id == landmark_id, Reading.reader == reader
        )
    )


def write(s: Session, image: Image, landmark_id: int, reader: str, values: Values, author: str) -> None:
    """Set one reading point to ``values`` (state None: remove it), without an event (the caller records it)."""
    row = current(s, image.id, landmark_id, reader)
    if values[2] is None:
        if row is not None:
            s.delete(row)
        return
    x, y, state = values
    if row is None:
        s.add(
            Reading(
                image_id=image.id,
                landmark_id=landmark_id,
                reader=reader,
                x=x,
                y=y,
                state=LandmarkState(state),
                author=author,
            )
        )
    else:
        row.x, row.y, row.state, row.author, row.updated_at = x, y, LandmarkState(state), author, utcnow()


def undo_reading(s: Session, image: Image, reader: str, author: str) -> int:
    """Take back ``author``'s last change to ``reader``'s reading of ``image``; returns the points changed."""
    events = list(
        s.scalars(
            select(Event)
            .where(Event.image_id == image.id, Event.reader == reader, Event.author == author)
            .where(Event.kind.in_([EventKind.READING, EventKind.READING_UNDO]))
            .order_by(Event.id)
        )
    )
    undone = {e.reverts for e in events if e.kind == EventKind.READING_UNDO}
    groups = [e.group_id for e in events if e.kind == EventKind.READING and e.group_id not in undone]
    if not groups:
        return 0
    target = groups[-1]
    changes = [e for e in events if e.group_id == target]
    for e in changes:
        now = values_of(current(s, image.id, e.landmark_id, reader))
        if now != (e.new_x, e.new_y, e.new_state):
            raise ScnError(f"cannot undo on image {image.name}: that point of {reader}'s reading was changed since")
    group = None
    for e in reversed(changes):
        old = (e.old_x, e.old_y, e.old_state)
        event = record_reading(
            s,
            image,
            e.landmark_id,
            reader,
            (e.new_x, e.new_y, e.new_state),
            old,
            author,
            group,
            EventKind.READING_UNDO,
            target,
        )
        group = group or (event.group_id if event else None)
        write(s, image, e.landmark_id, reader, old, author)
    return len(changes)


def clear_reading(s: Session, image: Image, landmark_id: int, reader: str, author: str) -> None:
    """Remove one point of a reading, with its event."""
    old = values_of(current(s, image.id, landmark_id, reader))
    record_reading(s, image, landmark_id, reader, old, (None, None, None), author)
    s.execute(
        delete(Reading).where(
            Reading.image_id == image.id, Reading.landmark_id == landmark_id, Reading.reader == reader
        )
    )
