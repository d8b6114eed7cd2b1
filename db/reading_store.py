"""One reader's reading behind the interface the annotation session edits the consensus through.

In reading mode the app's drags, marks and acceptances go into the reader's own
reading instead of the consensus: the session is the same, only what it writes to
differs. What a reading does not keep is said, not faked: it has no per-change
history, so undo is the consensus's alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from scn_annotator.engine.geometry import clamp_to_image
from scn_annotator.errors import ScnError

from .models import ImagePrediction, Reading, Source
from .reading_history import clear_reading, undo_reading
from .records import AnnotationRecord
from .roles import reader_name
from .rows import current_run, image_row

if TYPE_CHECKING:
    from .store import Project

__all__ = ["ReaderAnnotations"]


class ReaderAnnotations:
    """``reader``'s points, read and written as ``project.annotations`` reads and writes the consensus."""

    def __init__(self, project: Project, reader: str) -> None:
        self.project = project
        self.reader = reader

    def of(self, image: int | str) -> dict[int, AnnotationRecord]:
        index = {lm.id: lm.index for lm in self.project.landmarks()}
        with self.project.db.read() as s:
            row = image_row(s, image)
            rows = s.scalars(select(Reading).where(Reading.image_id == row.id, Reading.reader == self.reader))
            return {
                index[r.landmark_id]: AnnotationRecord(
                    index[r.landmark_id], r.x, r.y, r.state, Source.HUMAN, r.author, r.updated_at, None
                )
                for r in rows
            }

    def set(
        self,
        image: int | str,
        landmark: int | str,
        x: float | None,
        y: float | None,
        *,
        state: str = "placed",
        prediction_id: int | None = None,
        author: str | None = None,
    ) -> None:
        self.project.readings.set(image, landmark, x, y, state=state, reader=self.reader)

    def clear(self, image: int | str, landmark: int | str, author: str | None = None) -> None:
        lm = self.project.landmark(landmark)
        with self.project.db.write() as s:
            clear_reading(s, image_row(s, image), lm.id, self.reader, reader_name(self.project, s))

    def accept_predictions(self, image: int | str, author: str | None = None, run_id: int | None = None) -> int:
        """The shown proposals become the reader's points where the reader has none (a reader who chose to see them)."""
        with self.project.db.read() as s:
            row = image_row(s, image)
            run = current_run(s, row.id) if run_id is None else s.get(ImagePrediction, run_id)
            if run is None or run.image_id != row.id:
                raise ScnError(f"no prediction of the current model for image {row.name}")
            proposals = [(p.landmark_id, *clamp_to_image(p.x, p.y, (row.width, row.height))) for p in run.points]
        index = {lm.id: lm.index for lm in self.project.landmarks()}
        have = self.of(image)
        missing = [(index[lm], x, y) for lm, x, y in proposals if index[lm] not in have]
        for landmark, x, y in missing:
            self.project.readings.set(image, landmark, x, y, reader=self.reader)
        return len(missing)

    def undo(self, image: int | str) -> int:
        """Take back this person's last change to the reading (per person, as in the consensus)."""
        with self.project.db.write() as s:
            return undo_reading(s, image_row(s, image), self.reader, reader_name(self.project, s))

    def redo(self, image: int | str) -> int:
        raise ScnError("a reading's undo is not redone: place the point again")
