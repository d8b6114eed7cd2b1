"""Objects: the structures a landmark set is made of, and how their members sit on them.

Seventeen vertebrae look alike, and their 68 corners are too close to tell apart at
the resolution where the SCN's spatial configuration sees a whole spine (the
closest corners of adjacent vertebrae are about one network pixel apart). Their 17
*centres* are not: several network pixels apart, a chain the SC component can
order. So a layout whose landmarks come in groups (the four corners of a vertebra,
a tooth's points, a bone's two ends) is learned in two stages: the SCN finds each
object's centre (which vertebra is which), then each object is looked at in its own
crop, turned to the local axis of the structure, where its members no longer look
like anyone else's (where exactly). Payer et al. (VISAPP 2020) localise vertebrae
coarse to fine for the same reason; Yi et al. (ISBI 2020) place corners as offsets
from vertebra centres.

Objects come from the landmark names (``T1_tl``, ``T1_tr``, ``T1_bl``, ``T1_br`` share
the prefix ``T1``) or from the landmark-names file; a landmark without a partner is
its own object, and a layout of such singles (every hand layout) trains and predicts
exactly as it did before objects existed. No torch here: the store and the napari
process read objects too.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .chain_prior import ChainPrior
from .error_model import ErrorModel

if TYPE_CHECKING:
    from .levels import LevelCheck

__all__ = [
    "CROWDED",
    "ChainPrior",
    "LandmarkObjects",
    "ObjectLayout",
    "centre_span",
    "chain_frames",
    "crowding",
    "nearest_gap",
    "object_prefix",
    "uses_objects",
]

#: Objects are used where :func:`crowding` is below this (spines 0.34, generated spines 0.36, generated hands 0.99).
CROWDED = 0.6

_SEPARATOR = re.compile(r"^(.+?)[_\-. ]+([^_\-. ]+)$")


def object_prefix(name: str) -> tuple[str, str] | None:
    """``("T1", "tl")`` for ``T1_tl``; None for a name without a separator (``L3``, ``thumb``)."""
    match = _SEPARATOR.match(name.strip())
    return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True)
class LandmarkObjects:
    """Which landmarks belong together: object ``o`` is ``names[o]`` with landmark indices ``members[o]``."""

    names: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        flat = sorted(k for m in self.members for k in m)
        if flat != list(range(len(flat))) or len(self.names) != len(self.members) or any(not m for m in self.members):
            raise ValueError("objects must split the landmarks 0..N-1, every landmark into exactly one object")

    @classmethod
    def singles(cls, landmark_names: Sequence[str]) -> LandmarkObjects:
        return cls(tuple(landmark_names), tuple((k,) for k in range(len(landmark_names))))

    @classmethod
    def infer(cls, landmark_names: Sequence[str], given: Sequence[str | None] | None = None) -> LandmarkObjects:
        """Objects from shared name prefixes, where the names file did not say (``given[k]``: landmark k's object).

        A prefix makes an object only where the structure repeats: at least two prefixes
        with the same member suffixes (``T1_tl .. T1_br`` and ``T2_tl .. T2_br``), the
        look-alike anatomy objects are for. One lone group (``left_knee``, ``left_hip``)
        is more likely a naming habit than a structure, and stays as singles unless the
        names file groups it.
        """
        names = [str(n) for n in landmark_names]
        given = list(given) if given is not None else [None] * len(names)
        inferred: dict[int, str] = {}
        groups: dict[str, list[tuple[int, str]]] = {}
        for k, name in enumerate(names):
            split = object_prefix(name)
            if given[k] is None and split is not None:
                groups.setdefault(split[0], []).append((k, split[1]))
        patterns: dict[frozenset[str], int] = {}
        for members in groups.values():
            if len(members) > 1:
                key = frozenset(s for _, s in members)
                patterns[key] = patterns.get(key, 0) + 1
        for prefix, members in groups.items():
            if len(members) > 1 and patterns[frozenset(s for _, s in members)] > 1:
                inferred.update((k, prefix) for k, _ in members)
        label = [given[k] or inferred.get(k) or names[k] for k in range(len(names))]
        order: dict[str, list[int]] = {}
        for k, obj in enumerate(label):
            order.setdefault(obj, []).append(k)
        return cls(tuple(order), tuple(tuple(m) for m in order.values()))

    @property
    def grouped(self) -> bool:
        """Does any object have more than one member (then the model learns in two stages)?"""
        return any(len(m) > 1 for m in self.members)

    @property
    def num_landmarks(self) -> int:
        return sum(len(m) for m in self.members)

    def __len__(self) -> int:
        return len(self.members)

    @functools.cached_property
    def owner(self) -> np.ndarray:
        """(N,) the object index of every landmark (once: every prediction and correction indexes by it)."""
        out = np.zeros(self.num_landmarks, dtype=np.int64)
        for o, members in enumerate(self.members):
            out[list(members)] = o
        out.flags.writeable = False
        return out

    def centres(self, points: np.ndarray) -> np.ndarray:
        """(M, 2) object centres, the mean of their members; NaN where a member is missing (a biased centre
        would teach the SCN a wrong position)."""
        points = np.asarray(points, dtype=np.float64)
        return np.stack([points[list(m)].mean(axis=0) for m in self.members])

    def to_payload(self) -> dict[str, Any]:
        return {"names": list(self.names), "members": [list(m) for m in self.members]}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> LandmarkObjects:
        return cls(tuple(str(n) for n in data["names"]), tuple(tuple(int(k) for k in m) for m in data["members"]))


@dataclass(frozen=True)
class ObjectLayout:
    """Objects and where each member sits on its object: the mean shape, learned from the training labels.

    ``template[k]`` is landmark k's offset from its object's centre in the object's
    frame (network pixels; x across the structure, y along it). The frame of an object
    is the local axis of the chain of objects: the direction from the previous object's
    centre to the next one's (for a spine, along the column), so a tilted vertebra's
    corners are tilted with it. Placing the template on stage 1's centres is the
    answer when there is no stage 2 (or its heatmap has no clear peak).
    """

    objects: LandmarkObjects
    template: np.ndarray  # (N, 2)
    #: The median distance from an object's centre to the nearest other one (network px): the scale of
    #: stage 1's job (which object) and of stage 2's reach (how far off a centre it corrects).
    gap: float = 0.0
    #: How the centres follow each other along the chain, for decoding them jointly (None: each on its own).
    chain: ChainPrior | None = None
    #: The check of the chain's two ends from what lies around them (``levels.py``; None: the heatmaps decide).
    levels: LevelCheck | None = None
    #: How the model's errors go together, for what one correction implies (``error_model.py``; None: rigidly).
    errors: ErrorModel | None = None

    @classmethod
    def fit(cls, objects: LandmarkObjects, points: Sequence[np.ndarray]) -> ObjectLayout:
        """The mean shape of ``points`` (one (N, 2) array per image, network px, NaN where missing)."""
        offsets = []
        for p in points:
            centres = objects.centres(p)
            frames = chain_frames(centres)
            offsets.append(local_offsets(objects, p, centres, frames))
        stacked = np.stack(offsets) if offsets else np.full((1, objects.num_landmarks, 2), np.nan)
        with warnings.catch_warnings():  # a landmark no training image has: NaN, then zero
            warnings.simplefilter("ignore", RuntimeWarning)
            template = np.nanmean(stacked, axis=0)
        gaps = [g for g in (nearest_gap(objects.centres(p)) for p in points) if np.isfinite(g)]
        chain = ChainPrior.fit([objects.centres(p) for p in points])
        return cls(objects, np.nan_to_num(template, nan=0.0), float(np.median(gaps)) if gaps else 0.0, chain)

    @property
    def grouped(self) -> bool:
        return self.objects.grouped

    def frames(self, centres: np.ndarray) -> np.ndarray:
        """(M, 2, 2) object frames (columns: across, along) for centres (M, 2) in some isotropic pixels."""
        return chain_frames(centres)

    def size(self, centres: np.ndarray, scale: float = 1.0) -> float:
        """How large this image's objects are against the template: its steps along the chain over the learned ones.

        The template is the training set's mean shape, but patients and framings differ:
        on real spines a column's vertebrae are as much larger or smaller than the mean as
        its steps are longer or shorter. The median over the steps is robust to a skipped
        or doubled vertebra. Placing the template at this size moved the median corner
        error from 1.29 to 1.18 % of the height (benchmarks/RESULTS.md, issue 21, stop 40).
        1 without a chain's step lengths (hands; model files from before) or with
        fewer than :attr:`MIN_SIZE_STEPS` steps; ``scale``: pixels of ``centres`` per network pixel.
        """
        lengths = None if self.chain is None else self.chain.lengths
        if lengths is None:
            return 1.0
        c = np.asarray(centres, dtype=np.float64) / scale
        ratios = np.hypot(*np.diff(c, axis=0).T) / lengths
        ratios = ratios[np.isfinite(ratios)]
        if ratios.size < self.MIN_SIZE_STEPS:
            return 1.0
        return float(np.clip(np.median(ratios), *self.SIZE_RANGE))

    #: Fewer steps than this say too little about a column's size.
    MIN_SIZE_STEPS = 3
    #: An image's objects are taken as at most this much smaller or larger than the template.
    SIZE_RANGE = (0.5, 2.0)

    def place(
        self, centres: np.ndarray, frames: np.ndarray | None = None, scale: float = 1.0, size: float | None = None
    ) -> np.ndarray:
        """(N, 2) members from object centres (M, 2): each centre plus its frame times the template.

        ``scale``: pixels of ``centres`` per network pixel (the template's unit); ``size``: the
        template's size on this image (default: :meth:`size` of ``centres``).
        """
        centres = np.asarray(centres, dtype=np.float64)
        frames = self.frames(centres) if frames is None else frames
        size = self.size(centres, scale) if size is None else size
        owner = self.objects.owner
        return centres[owner] + scale * size * np.einsum("nij,nj->ni", frames[owner], self.template)

    def centre_hints(self, hints: np.ndarray, frames: np.ndarray, size: float = 1.0) -> np.ndarray:
        """(M, 2) object centres implied by confirmed members (NaN rows of ``hints`` (N, 2): not confirmed).

        Each confirmed member says where its object's centre is (itself minus its offset at
        ``size``, :meth:`size`); an object with several confirmed members takes their mean.
        NaN where none is.
        """
        hints = np.asarray(hints, dtype=np.float64)
        owner = self.objects.owner
        implied = hints - size * np.einsum("nij,nj->ni", frames[owner], self.template)
        out = np.full((len(self.objects), 2), np.nan)
        for o, members in enumerate(self.objects.members):
            rows = implied[list(members)]
            rows = rows[~np.isnan(rows).any(axis=1)]
            if len(rows):
                out[o] = rows.mean(axis=0)
        return out

    def to_payload(self) -> dict[str, Any]:
        chain = {"chain": self.chain.to_payload()} if self.chain is not None else {}
        if self.levels is not None:
            chain["levels"] = self.levels.to_payload()
        if self.errors is not None:
            chain["errors"] = self.errors.to_payload()
        return {**self.objects.to_payload(), "template": self.template.tolist(), "gap": self.gap, **chain}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> ObjectLayout:
        objects = LandmarkObjects.from_payload(data)
        template = np.asarray(data["template"], dtype=np.float64).reshape(objects.num_landmarks, 2)
        chain = ChainPrior.from_payload(data["chain"]) if data.get("chain") else None
        levels = None
        if data.get("levels"):
            from .levels import LevelCheck  # levels.py builds on this module

            levels = LevelCheck.from_payload(data["levels"])
        errors = ErrorModel.from_payload(data["errors"]) if data.get("errors") else None
        return cls(objects, template, float(data.get("gap", 0.0)), chain, levels, errors)


def crowding(objects: LandmarkObjects, points: Sequence[np.ndarray]) -> float:
    """How much closer landmarks are to another object's landmarks than centres are to other centres.

    Median over images of (median distance from a landmark to the nearest landmark of
    another object) / (median distance from a centre to the nearest other centre).
    Objects help where this is small: the corners of adjacent vertebrae, across a
    disc, are a third of a vertebra apart, their centres a whole one. Where it is
    near 1 (the generated hand's fingers: a base is as far from the next finger's
    base as the fingers are from each other) the centres are no more distinct than
    the landmarks, and the layout is learned landmark by landmark. Infinite without
    two complete objects.
    """
    owner = objects.owner
    foreign = owner[:, None] != owner[None, :]
    ratios = []
    for p in points:
        p = np.asarray(p, dtype=np.float64)
        gap = nearest_gap(objects.centres(p))
        if not np.isfinite(gap) or gap <= 0:
            continue
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)
        d = np.where(foreign & ~np.isnan(d), d, np.inf).min(axis=1)
        d = d[np.isfinite(d)]
        if d.size:
            ratios.append(float(np.median(d)) / gap)
    return float(np.median(ratios)) if ratios else math.inf


def uses_objects(objects: LandmarkObjects, points: Sequence[np.ndarray]) -> bool:
    """Is a layout with these labels (original or network px) learned by its objects, in two stages?"""
    return objects.grouped and crowding(objects, points) < CROWDED


def nearest_gap(centres: np.ndarray) -> float:
    """Median distance from each present centre to its nearest other one; infinite without two."""
    complete = centres[~np.isnan(centres).any(axis=1)]
    if len(complete) < 2:
        return math.inf
    gaps = np.linalg.norm(complete[:, None] - complete[None], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    return float(np.median(gaps.min(axis=1)))


def centre_span(centres: np.ndarray) -> float:
    """Largest distance between two present centres (the layout's extent); 0 without two."""
    complete = centres[~np.isnan(centres).any(axis=1)]
    if len(complete) < 2:
        return 0.0
    return float(np.linalg.norm(complete[:, None] - complete[None], axis=-1).max())


def chain_frames(centres: np.ndarray) -> np.ndarray:
    """(M, 2, 2) rotations whose second column is the chain's local direction at each centre.

    The direction at object ``o`` is from the nearest present centre before it to the
    nearest present one after it (one-sided at the ends); the identity where there is
    no neighbour (a single object, or all others missing).
    """
    centres = np.asarray(centres, dtype=np.float64)
    m = len(centres)
    frames = np.tile(np.eye(2), (m, 1, 1))
    present = np.flatnonzero(~np.isnan(centres).any(axis=1))
    if present.size < 2:
        return frames
    for o in range(m):
        before = present[present < o]
        after = present[present > o]
        own = None if np.isnan(centres[o]).any() else centres[o]
        a = centres[before[-1]] if before.size else own
        b = centres[after[0]] if after.size else own
        if a is None or b is None:  # a missing end of the chain: no direction to take
            continue
        d = b - a
        length = float(np.hypot(*d))
        if length < 1e-9:
            continue
        ax, ay = d / length
        frames[o] = [[ay, ax], [-ax, ay]]  # columns: across (ay, -ax), along (ax, ay)
    return frames


def local_offsets(objects: LandmarkObjects, points: np.ndarray, centres: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(N, 2) every member's offset from its object's centre, in the object's frame."""
    owner = objects.owner
    return np.einsum("nji,nj->ni", frames[owner], np.asarray(points, dtype=np.float64) - centres[owner])
