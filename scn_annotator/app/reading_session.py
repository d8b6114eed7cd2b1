"""Reading mode: the annotation session on a reader's own, independent reading (blind double reading).

The same session as annotating the consensus, with three differences. Edits go into
the reader's reading (``db/reading_store.py``), never into the consensus. The queue is
the reader's assigned images, a finished one counting as done; ``D`` finishes the
reading of the open image, after which (and only after which) the reader may see the
other readers' points on it. And the reader chooses whether the model's proposals are
shown at all: an unprompted reading is what an inter-observer study wants.
"""

from __future__ import annotations

from ..active.ranking import RankedQueue
from ..db.assignments import AssignmentRecord
from ..db.reading_store import ReaderAnnotations
from ..db.records import ImageRecord, PredictionRecord
from ..db.store import Project
from ..errors import ScnError
from .annotation_session import AnnotationSession, ImageView

__all__ = ["ReadingSession"]


class ReadingSession(AnnotationSession):
    """``reader``'s reading (default: who is connected; on PostgreSQL the role), with or without the proposals."""

    def __init__(self, project: Project, reader: str | None = None, show_model: bool = True, **kwargs: object) -> None:
        self.reader = project.assignments.who(reader)
        self.show_model = show_model
        super().__init__(project, **kwargs)  # type: ignore[arg-type]
        self.store = ReaderAnnotations(project, self.reader)
        self.refresh_queue()

    def refresh_queue(self) -> RankedQueue:
        """The ranked queue, narrowed to the reader's assigned images; a finished reading counts as done."""
        queue = super().refresh_queue()
        assigned = self._assigned()
        queue.rows = [row for row in queue.rows if row.name in assigned]
        self._follow_readings(assigned)
        return queue

    def reload(self) -> ImageView:
        view = super().reload()  # which set the open image's row to the image's status: the reading's is wanted
        self._follow_readings(self._assigned())
        return view

    def _assigned(self) -> dict[str, AssignmentRecord]:
        return {a.image: a for a in self.project.assignments.all() if a.reader == self.reader}

    def _follow_readings(self, assigned: dict[str, AssignmentRecord]) -> None:
        for row in self.queue.rows:
            row.status = "done" if assigned[row.name].finished else "in_progress"

    def _prediction(self, record: ImageRecord) -> PredictionRecord | None:
        return super()._prediction(record) if self.show_model else None

    def set_status(self, status: str) -> None:
        raise ScnError("a reader finishes a reading (D); the image's status is the consensus's")

    def mark_done(self) -> tuple[int | None, int]:
        """Finish the reading of the open image: the proposals shown are taken, the others' points become visible."""
        view = self._image()
        if not any(lm.kind.value in ("annotation", "prediction") for lm in view.landmarks):
            raise ScnError(f"nothing read on {view.record.name} yet: place the landmarks (or mark them absent) first")
        accepted = (
            self.accept_all() if self.show_model and any(lm.kind.value == "prediction" for lm in view.landmarks) else 0
        )
        if view.record.name in self.project.assignments.queue(self.reader, unfinished=False):
            self.project.assignments.finish(view.record.id, self.reader)
        self.refresh_queue()
        self.reload()
        row = self.queue.next_after(view.record.id)
        return (row.image_id if row else None), accepted
