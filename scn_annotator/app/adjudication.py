"""Adjudication: every reader's point per landmark on one image, how far apart they are, and one action each
to decide the consensus from them (take one reader's point, take their mean) or to clear it and place it anew.

The decision goes into the consensus (what the model trains on and the export writes)
as a human correction, in the name of who decided (on PostgreSQL the role, which must
be a reviewer's), so the history says who adjudicated what. What a reader may see
follows blind double reading (``Readings.visible``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..db.roles import REVIEWER, can_adjudicate
from ..db.store import Project
from ..errors import ScnError

__all__ = ["READER_COLORS", "Adjudication", "ReadersView"]

#: Colours of readers' points in the app, in reader order (distinct from the landmarks' own colours' use).
READER_COLORS = ("#ff7f0e", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


@dataclass(frozen=True)
class ReadersView:
    """The readings of one image that the viewer may see."""

    image: str
    readers: list[str]
    points: dict[str, np.ndarray]  # reader -> (N, 2) original pixels, NaN where not placed
    spread: np.ndarray  # (N,) the largest distance between two readers' points (``unit``), NaN with fewer than two
    unit: str

    def color(self, reader: str) -> str:
        return READER_COLORS[self.readers.index(reader) % len(READER_COLORS)]


class Adjudication:
    """One image's readers, and the actions that decide its consensus."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def view(self, image: str, reader: str | None = None) -> ReadersView:
        """What ``reader`` (default: who is connected) may see of ``image``'s readings."""
        points = self.project.readings.visible(image, reader)
        readers = sorted(points)
        spacing = self.project.image(image).spacing
        factor = np.ones(2) if spacing is None else np.asarray(spacing)
        n = len(self.project.landmark_names)
        spread = np.full(n, np.nan)
        for a, b in itertools.combinations(readers, 2):
            d = np.linalg.norm((points[a] - points[b]) * factor, axis=1)
            spread = np.fmax(spread, d)
        return ReadersView(image, readers, points, spread, "px" if spacing is None else "mm")

    def _decide(self, image: str, landmark: int, xy: np.ndarray) -> None:
        if not can_adjudicate(self.project):
            raise ScnError(f"adjudicating is a reviewer's: ask for membership of {REVIEWER}")
        if np.isnan(xy).any():
            raise ScnError(f"no reader placed landmark {self.project.landmark_names[landmark]} on {image}")
        who = self.project.assignments.who()  # the role on PostgreSQL: the history names who decided
        self.project.annotations.set(image, landmark, float(xy[0]), float(xy[1]), author=who)

    def take(self, image: str, landmark: int, reader: str) -> None:
        """The consensus of ``landmark`` becomes ``reader``'s point."""
        view = self.view(image)
        if reader not in view.points:
            raise ScnError(f"{reader} has no reading of {image} that you may see")
        self._decide(image, landmark, view.points[reader][landmark])

    def take_mean(self, image: str, landmark: int) -> None:
        """The consensus of ``landmark`` becomes the mean of the readers who placed it."""
        stack = np.stack(list(self.view(image).points.values()))[:, landmark]
        placed = stack[~np.isnan(stack[:, 0])]
        self._decide(image, landmark, placed.mean(axis=0) if len(placed) else np.full(2, np.nan))

    def place_anew(self, image: str, landmark: int) -> None:
        """Clear the consensus of ``landmark``, so that the reviewer places it themselves."""
        if not can_adjudicate(self.project):
            raise ScnError(f"adjudicating is a reviewer's: ask for membership of {REVIEWER}")
        self.project.annotations.clear(image, landmark, author=self.project.assignments.who())
