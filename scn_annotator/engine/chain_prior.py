"""How object centres follow each other along a chain: the prior the joint decoding of a spine's vertebrae uses.

Split from ``objects.py``: the layout says which landmarks make an object and where they
sit on it; this says how one object's centre follows the previous one's, learned from
the training labels. No torch here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ChainPrior"]


@dataclass(frozen=True)
class ChainPrior:
    """How each object's centre follows the previous one in the training labels (network pixels).

    ``steps[o]``: the median displacement from centre ``o`` to centre ``o + 1``;
    ``spread[o]``: how far a step departs from it (per axis, as a Gaussian's sigma,
    from the median departure, so that one mislabelled image does not widen it).
    ``weight`` scales the step cost against the heatmap cost in the chain decoding
    (``chain.chain_peaks``).

    ``lengths[o]``, ``length_spread[o]``, ``angles[o]``, ``angle_spread[o]``: the same steps
    in polar form, the median length and direction (radians, image axes) and their robust
    sigmas. A scoliotic column bends: its steps turn from the median one by 8-14 degrees
    (robust sigma, real spines at 256 x 96) while their lengths stay within 1-3 px. A
    cost on the step vector, round as a Gaussian, charges the turn as if it were a change
    of length, so on a bent column a chain that cuts the curve (one step spanning two
    vertebrae, a run of the column shifted by one) could cost less than the true one.
    Judged by length and turn each with its own spread, a skipped or doubled vertebra
    costs what it should (real spines:
    20.6 -> 19.2 % of vertebrae on a neighbour; told the true ends, 14.0 -> 11.4 %;
    benchmarks/RESULTS.md). Model files from before have no polar steps (None) and decode
    by the vector as they did.

    ``places[o]``, ``place_spread[o]``: where centre ``o`` lies in the network input, per
    axis the median and its robust sigma, weighed by ``place_weight``. Steps alone cannot
    tell a column from the same column one vertebra further up: every step fits, and
    T1 sitting on C7 costs nothing. Where the images are framed alike (the spine set's
    are cropped to the column: T1 at 5 % of the height, give or take 2 %, while a
    vertebra is 5 % tall), the place says which end is which. Model files from before
    have no places (None): the chain is then decoded by its steps alone.

    ``ratios[o]``, ``ratio_spread[o]``, ``bends[o]``, ``bend_spread[o]``: how step ``o + 1``
    follows step ``o``, the median log ratio of their lengths and the median turn from one
    to the next (radians), with robust sigmas, weighed by ``bend_weight``. The steps' own
    spreads are mostly patients' (a tall patient's steps are all longer, a scoliotic column's
    all turned one way), so a true column far from the median pays on every step; along one
    column a step is much like the one before (real spines: a length ratio's sigma 5-12 %,
    a length's 10-15 %; a turn's 0.09-0.14 rad against a direction's 0.13-0.25), and a
    vertebra skipped or doubled breaks exactly that. Decoded with them, the chain is chosen
    over pairs of candidates (``chain._viterbi``). Model files from before have none (None).
    """

    steps: np.ndarray  # (M - 1, 2)
    spread: np.ndarray  # (M - 1,)
    weight: float = 1.0
    places: np.ndarray | None = None  # (M, 2)
    place_spread: np.ndarray | None = None  # (M, 2)
    place_weight: float = 1.0
    lengths: np.ndarray | None = None  # (M - 1,)
    length_spread: np.ndarray | None = None  # (M - 1,)
    angles: np.ndarray | None = None  # (M - 1,)
    angle_spread: np.ndarray | None = None  # (M - 1,)
    ratios: np.ndarray | None = None  # (M - 2,)
    ratio_spread: np.ndarray | None = None  # (M - 2,)
    bends: np.ndarray | None = None  # (M - 2,)
    bend_spread: np.ndarray | None = None  # (M - 2,)
    bend_weight: float = 1.0

    #: The fields of the polar steps, which a prior has all of or none of.
    POLAR = ("lengths", "length_spread", "angles", "angle_spread")
    #: The fields of how each step follows the previous one, which a prior has all of or none of.
    BENDS = ("ratios", "ratio_spread", "bends", "bend_spread")
    #: A centre is chosen on the pixel grid: the spread of a step's length ratio and turn is at least what
    #: half a pixel at each of its three centres makes of it (in units of the median step's length).
    GRID = 0.5
    #: Bends are fitted only from this many images with every pair of steps: on 360 real spines they help
    #: (told the ends, 11.4 -> 7.3 % on a neighbour), but in a campaign's rounds on 8-16 spines, whose weak
    #: heatmaps lean on the prior, spreads from so few images made the test error worse (seed 0 at 16
    #: labelled: 87.6 -> 94.7 px random, 80.6 -> 95.9 px the default). Where between they start to pay is
    #: not measured yet.
    BEND_MIN_IMAGES = 100
    #: The median distance of a 2-D Gaussian's draws from its centre, in sigmas (sqrt(2 ln 2)).
    _MEDIAN_RADIUS = 1.1774
    #: A Gaussian's median absolute deviation, in sigmas.
    _MAD_SIGMA = 0.6745
    MIN_SPREAD = 1.0
    #: A place's sigma is at least this share of the median step: a few images framed alike (or generated
    #: ones) must not pin a centre to where they had it, only tell one vertebra's place from the next one's.
    #: (At a quarter step the generated spines of the tests, 30 training images whose columns curve more
    #: than their median deviation says, had 15 of 120 vertebrae pulled onto a neighbour; at half, none.)
    PLACE_FLOOR = 0.5

    @classmethod
    def fit(cls, centres: Sequence[np.ndarray]) -> ChainPrior | None:
        """From (M, 2) centres per image (NaN where missing); None unless every step is seen in two images."""
        if not centres or len(centres[0]) < 3:
            return None
        stacked = np.stack([np.asarray(c, dtype=np.float64) for c in centres])  # (I, M, 2)
        steps = stacked[:, 1:] - stacked[:, :-1]
        if ((~np.isnan(steps).any(axis=-1)).sum(axis=0) < 2).any():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(steps, axis=0)
            departure = np.nanmedian(np.linalg.norm(steps - median, axis=-1), axis=0)
            places = np.nanmedian(stacked, axis=0)
            place_spread = np.nanmedian(np.abs(stacked - places), axis=0) / cls._MAD_SIGMA
        spread = np.maximum(departure / cls._MEDIAN_RADIUS, cls.MIN_SPREAD)
        polar = {**_polar_steps(steps, median), **_bends(steps)}
        if np.isnan(places).any():  # an object no image has: no place prior at all
            return cls(median, spread, **polar)
        floor = max(cls.MIN_SPREAD, cls.PLACE_FLOOR * float(np.median(np.linalg.norm(median, axis=-1))))
        return cls(median, spread, places=places, place_spread=np.maximum(place_spread, floor), **polar)

    def step_cost(self, steps: np.ndarray, o: int) -> np.ndarray:
        """The cost of ``steps`` (..., 2) as the step from centre ``o`` to ``o + 1``, before ``weight``:
        by length and turn where the prior has them, else by the step vector."""
        if self.lengths is None or self.length_spread is None or self.angles is None or self.angle_spread is None:
            return ((steps - self.steps[o]) ** 2).sum(-1) / (2 * self.spread[o] ** 2)
        length = np.hypot(steps[..., 0], steps[..., 1])
        turn = _wrapped(np.arctan2(steps[..., 1], steps[..., 0]) - self.angles[o])
        return ((length - self.lengths[o]) / self.length_spread[o]) ** 2 / 2 + (turn / self.angle_spread[o]) ** 2 / 2

    def bend_cost(self, log_ratio: np.ndarray, turn: np.ndarray, o: int) -> np.ndarray:
        """The cost of step ``o + 1`` following step ``o`` with the log length ratio ``log_ratio`` and the turn
        ``turn`` (radians; arrays of one shape), weight included; zero without bends."""
        if self.ratios is None or self.ratio_spread is None or self.bends is None or self.bend_spread is None:
            return np.zeros(np.broadcast_shapes(np.shape(log_ratio), np.shape(turn)))
        z_ratio = (log_ratio - self.ratios[o]) / self.ratio_spread[o]
        z_turn = _wrapped(turn - self.bends[o]) / self.bend_spread[o]
        return self.bend_weight * 0.5 * (z_ratio**2 + z_turn**2)

    def place_cost(self, xy: np.ndarray) -> np.ndarray | None:
        """(M, P) the cost of each candidate place (P, 2) for each object; None without places."""
        if self.places is None or self.place_spread is None or self.place_weight == 0:
            return None
        z = (xy[None, :, :] - self.places[:, None, :]) / self.place_spread[:, None, :]
        return self.place_weight * 0.5 * (z**2).sum(-1)

    def to_payload(self) -> dict[str, Any]:
        places = {}
        if self.places is not None and self.place_spread is not None:
            places = {
                "places": self.places.tolist(),
                "place_spread": self.place_spread.tolist(),
                "place_weight": self.place_weight,
            }
        polar = {}
        if self.lengths is not None:
            polar = {name: getattr(self, name).tolist() for name in self.POLAR}
        if self.ratios is not None:
            polar |= {name: getattr(self, name).tolist() for name in self.BENDS} | {"bend_weight": self.bend_weight}
        return {"steps": self.steps.tolist(), "spread": self.spread.tolist(), "weight": self.weight, **places, **polar}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> ChainPrior:
        steps = np.asarray(data["steps"], dtype=np.float64).reshape(-1, 2)
        places = place_spread = None
        if data.get("places") is not None:
            places = np.asarray(data["places"], dtype=np.float64).reshape(-1, 2)
            place_spread = np.asarray(data["place_spread"], dtype=np.float64).reshape(-1, 2)
        polar: dict[str, Any] = {}
        for fields in (cls.POLAR, cls.BENDS):
            if all(data.get(name) is not None for name in fields):
                polar |= {name: np.asarray(data[name], dtype=np.float64) for name in fields}
        if "ratios" in polar:
            polar["bend_weight"] = float(data.get("bend_weight", 1.0))
        return cls(
            steps,
            np.asarray(data["spread"], dtype=np.float64),
            float(data.get("weight", 1.0)),
            places,
            place_spread,
            float(data.get("place_weight", 1.0)),
            **polar,
        )


def _wrapped(angle: np.ndarray) -> np.ndarray:
    """Angles (radians) brought into [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _polar_steps(steps: np.ndarray, median: np.ndarray) -> dict[str, np.ndarray]:
    """The polar fields of :class:`ChainPrior` from (I, M - 1, 2) steps (NaN where missing) and their (M - 1, 2)
    median: per step the median length and direction, and their sigmas from the median absolute deviation. A
    length's sigma is at least ``MIN_SPREAD``, a direction's at least the turn that moves the step's end by as
    much."""
    length = np.hypot(steps[..., 0], steps[..., 1])
    angle = np.arctan2(steps[..., 1], steps[..., 0])
    angles = np.arctan2(median[:, 1], median[:, 0])  # the median step's direction: no wrap-around at +-pi
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lengths = np.nanmedian(length, axis=0)
        length_spread = np.nanmedian(np.abs(length - lengths), axis=0) / ChainPrior._MAD_SIGMA
        angle_spread = np.nanmedian(np.abs(_wrapped(angle - angles)), axis=0) / ChainPrior._MAD_SIGMA
    return {
        "lengths": lengths,
        "length_spread": np.maximum(length_spread, ChainPrior.MIN_SPREAD),
        "angles": angles,
        "angle_spread": np.maximum(angle_spread, ChainPrior.MIN_SPREAD / np.maximum(lengths, ChainPrior.MIN_SPREAD)),
    }


def _bends(steps: np.ndarray) -> dict[str, np.ndarray]:
    """The bend fields of :class:`ChainPrior` from (I, M - 1, 2) steps (NaN where missing); none (empty) for a
    chain of two objects or where some pair of steps is seen in fewer than ``BEND_MIN_IMAGES`` images."""
    if steps.shape[1] < 2:
        return {}
    length = np.maximum(np.hypot(steps[..., 0], steps[..., 1]), ChainPrior.GRID)
    angle = np.arctan2(steps[..., 1], steps[..., 0])
    log_ratio = np.log(length[:, 1:] / length[:, :-1])
    turn = _wrapped(angle[:, 1:] - angle[:, :-1])
    if ((~np.isnan(log_ratio)).sum(axis=0) < max(2, ChainPrior.BEND_MIN_IMAGES)).any():
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ratios, bends = np.nanmedian(log_ratio, axis=0), np.nanmedian(turn, axis=0)
        ratio_spread = np.nanmedian(np.abs(log_ratio - ratios), axis=0) / ChainPrior._MAD_SIGMA
        bend_spread = np.nanmedian(np.abs(_wrapped(turn - bends)), axis=0) / ChainPrior._MAD_SIGMA
        floor = ChainPrior.GRID / np.nanmedian(length)
    return {
        "ratios": ratios,
        "ratio_spread": np.maximum(ratio_spread, floor),
        "bends": bends,
        "bend_spread": np.maximum(bend_spread, floor),
    }
