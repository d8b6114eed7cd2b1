"""Labels no column can have: an object far from where its neighbours put it, or two objects on one place.

Public landmark sets carry labelling slips, and a chain of look-alike objects shows
them plainly. In the real spine set 26 of 481 radiographs have one: in 20 the four
corners of L5 sit at the top of the image, 15 vertebrae above L4 (a row shifted in
the labelling tool, presumably), and in 6 two neighbouring vertebrae were given the
same corners (L5 a copy of L4, T7 of T6). Trained on as they are, they teach stage 1
that L5 may lie at the top and the check of the ends that the column's last step can
span the image; tested on, a spine whose true "L5" is at its top counts seventeen
vertebrae wrong and its Cobb angles are computed from a column that does not exist.

So along a chain of objects (``objects.py``: centres in chain order) an object is
implausible where it lies more than ``FAR`` median steps from where its neighbours
put it (the midpoint of the two beside it, or for an end the next two extended by a
step), the worst first and then judged again without it; and both objects of a step
shorter than ``TOUCHING`` of the median step. On the real spines the two kinds are far
apart from the true columns: every other radiograph's largest departure is at most
1.34 median steps (the next is 3.0) and its shortest step 0.33 of the median (the
largest copy 0.15). Such objects are treated as missing, like a label outside its
image, and each one is named, so that a person can correct it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .data import Sample
    from .objects import LandmarkObjects

__all__ = ["FAR", "TOUCHING", "MIN_CHAIN", "implausible_objects", "set_aside", "summary", "without_implausible"]

#: A chain shorter than this is not judged: three centres cannot say which of them is out of line.
MIN_CHAIN = 4

#: An object further than this many median steps from where its two neighbours put it is implausible.
FAR = 2.0
#: A step shorter than this share of the median step joins two objects on one place: both are implausible.
TOUCHING = 0.25


def implausible_objects(centres: np.ndarray) -> np.ndarray:
    """(M,) which of a chain's object centres (M, 2), in chain order, NaN where missing, no column can have."""
    centres = np.asarray(centres, dtype=np.float64)
    present = ~np.isnan(centres).any(axis=1)
    flagged = np.zeros(len(centres), dtype=bool)
    both = present[:-1] & present[1:]
    lengths = np.linalg.norm(centres[1:] - centres[:-1], axis=1)
    if both.sum() < 2:
        return flagged
    median = float(np.median(lengths[both]))
    if median <= 0:
        return flagged
    touching = np.flatnonzero(both & (lengths < TOUCHING * median))
    flagged[touching] = flagged[touching + 1] = True
    while True:
        kept = present & ~flagged
        departures = np.array([_departure(centres, kept, o) for o in range(len(centres))])
        worst = int(np.argmax(departures))
        if departures[worst] <= FAR * median:
            return flagged
        flagged[worst] = True


def without_implausible(points: np.ndarray, objects: LandmarkObjects) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) ``points`` with the members of their implausible objects missing (a copy), and those objects'
    indices; the objects are taken in their layout's order as the chain."""
    flagged = np.flatnonzero(implausible_objects(objects.centres(points)))
    kept = np.array(points, dtype=np.float64)
    kept[[k for o in flagged for k in objects.members[o]]] = np.nan
    return kept, flagged


def set_aside(
    train: Sequence[Sample], val: Sequence[Sample], objects: LandmarkObjects | None
) -> tuple[list[Sample], list[Sample], list[str]]:
    """The training and validation samples with the members of their implausible objects missing, and a
    note per image that had any. Without objects of several members, or with fewer than ``MIN_CHAIN``, they are
    returned as they are; the objects are taken in their layout's order as the chain."""
    notes: list[str] = []
    if objects is None or not objects.grouped or len(objects) < MIN_CHAIN:
        return list(train), list(val), notes
    layout = objects

    def checked(sample: Sample) -> Sample:
        points, flagged = without_implausible(sample.points, layout)
        if not flagged.size:
            return sample
        named = ", ".join(layout.names[o] for o in flagged)
        notes.append(f"image {sample.id}: {named} out of line with the rest of the chain, treated as missing")
        return dataclasses.replace(sample, points=points)

    return [checked(s) for s in train], [checked(s) for s in val], notes


def summary(notes: Sequence[str], shown: int = 3) -> str:
    """One line for a run's log: how many images had labels set aside, and the first few."""
    more = "; ..." if len(notes) > shown else ""
    return f"{len(notes)} images' labels set aside as out of line with their chain: {'; '.join(notes[:shown])}{more}"


def _departure(centres: np.ndarray, kept: np.ndarray, o: int) -> float:
    """How far centre ``o`` lies from where the kept centres beside it put it (0 where they cannot say)."""
    if not kept[o]:
        return 0.0
    before2, before, _, after, after2 = np.pad(kept, 2)[o : o + 5]  # kept at o-2 .. o+2; beyond the ends: not
    if before and after:
        expected = (centres[o - 1] + centres[o + 1]) / 2
    elif before and before2:
        expected = 2 * centres[o - 1] - centres[o - 2]
    elif after and after2:
        expected = 2 * centres[o + 1] - centres[o + 2]
    else:
        return 0.0
    return float(np.linalg.norm(centres[o] - expected))
