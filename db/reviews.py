"""Review: a reviewer's verdict on an image (reviewed, or needs changes with a note), kept as a history.

The latest verdict is the image's review status; every earlier one stays, with who
gave it and when. On PostgreSQL only a reviewer (``scn_reviewer``), the project's
owner or a superuser gives verdicts, as only they adjudicate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from scn_annotator.errors import ScnError

from .models import Image, Review, ReviewStatus
from .rows import image_row

if TYPE_CHECKING:
    from .store import Project

__all__ = ["ReviewRecord", "Reviews"]


@dataclass(frozen=True)
class ReviewRecord:
    image: str
    status: str
    note: str
    reviewer: str
    at: dt.datetime


class Reviews:
    """``project.reviews``: each image's review verdicts."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def set(self, image: str | int, status: str, note: str = "") -> ReviewRecord:
        """Give ``image`` a verdict; ``needs_changes`` needs a note saying what."""
        from .roles import REVIEWER, can_adjudicate, reader_name

        try:
            verdict = ReviewStatus(status)
        except ValueError:
            raise ScnError(f"a review status is reviewed or needs_changes, not {status!r}") from None
        if verdict == ReviewStatus.NEEDS_CHANGES and not note.strip():
            raise ScnError("needs_changes needs a note saying what to change")
        if not can_adjudicate(self.project):
            raise ScnError(f"reviewing is a reviewer's: ask for membership of {REVIEWER}")
        with self.project.db.write() as s:
            row = image_row(s, image)
            review = Review(image_id=row.id, status=verdict, note=note.strip(), reviewer=reader_name(self.project, s))
            s.add(review)
            s.flush()
            return ReviewRecord(row.name, verdict.value, review.note, review.reviewer, review.created_at)

    def history(self, image: str | int | None = None) -> list[ReviewRecord]:
        """Every verdict, oldest first (of one image, or of all)."""
        with self.project.db.read() as s:
            query = select(Review, Image.name).join(Image).order_by(Review.id)
            if image is not None:
                query = query.where(Review.image_id == image_row(s, image).id)
            return [
                ReviewRecord(name, r.status.value, r.note, r.reviewer, r.created_at) for r, name in s.execute(query)
            ]

    def statuses(self) -> dict[str, ReviewRecord]:
        """Each reviewed image's latest verdict, by image name."""
        return {r.image: r for r in self.history()}
