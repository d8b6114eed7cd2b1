"""Acquisition scores: which image should a person annotate next?

The SCN offers a signal a plain heatmap network does not have. Its local-appearance
(LA) heatmaps are sharp but ambiguous, its spatial-configuration (SC) heatmaps
coarse but unambiguous; where the two disagree, the model is confused about which
of several look-alike structures a landmark is. Three measures of that
disagreement, per landmark:

- ``sc_la_distance``: how far (mm, or px without a spacing) the LA maximum lies from
  the SC maximum;
- ``sc_la_mass``: the share of the LA response that lies where SC is low (a second
  LA peak that SC suppresses is exactly the ambiguity SCN resolves);
- ``la_ambiguity``: the height of the second-highest LA peak relative to the highest;
- ``sc_la_conflict``: how much more LA likes a place SC rejects than the chosen one;
- ``residual_ambiguity``: the second peak of LA x SC relative to the first, a
  look-alike that SC did not suppress.

On a trained hand model the first three say little (LA is ambiguous everywhere, by
design, and its sign is arbitrary: only LA x SC is fitted, so each landmark's
maps are first turned so that its peak is positive); the last two track the
error better. benchmarks/RESULTS.md has the figures that chose the default.

Baselines to compare them against: ``random``, ``least_confident`` (lowest peak of
the final heatmap) and ``mc_dropout`` (spread of the predicted positions over
several passes with dropout on, which needs the network, not only the heatmaps).

Every strategy is a small named class behind one interface, registered with
:func:`register`; a new strategy is one class and a decorator. Each returns the
image score (higher = annotate sooner) and per-landmark values, so the app can
show which landmarks are doubtful. :func:`select_batch` picks a batch from the
scores, optionally spreading it over different-looking images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from scipy import ndimage

from ..engine.geometry import InputTransform
from ..io.heatmap_cache import orient

if TYPE_CHECKING:
    from ..db.records import ScoreRecord
    from ..engine.inference import Prediction

__all__ = [
    "MC_PASSES",
    "STRATEGIES",
    "ScoreInput",
    "Scored",
    "Scoring",
    "mc_passes_for",
    "random_value",
    "Strategy",
    "register",
    "score_all",
    "select_batch",
]


@dataclass
class ScoreInput:
    """What a strategy may look at for one image."""

    image: str
    points: np.ndarray  # (N, 2) predicted, original pixels
    confidence: np.ndarray  # (N,) final heatmap peak values
    final: np.ndarray | None = None  # (N, h, w) network-resolution heatmaps
    local: np.ndarray | None = None
    spatial: np.ndarray | None = None
    transform: InputTransform | None = None
    mc_points: np.ndarray | None = None  # (T, N, 2) positions under MC dropout, original pixels
    round: int = 0

    @classmethod
    def of(cls, prediction: Prediction, round: int = 0) -> ScoreInput:
        """What a prediction (with its heatmaps, and MC passes when it has them) offers the strategies."""
        h = prediction.heatmaps
        return cls(
            prediction.image_id,
            prediction.points,
            prediction.confidence,
            final=h.final if h else None,
            local=h.local if h else None,
            spatial=h.spatial if h else None,
            transform=h.transform if h else None,
            mc_points=prediction.mc_points,
            round=round,
        )


@dataclass
class Scored:
    """An image score (higher: annotate sooner) and its per-landmark values."""

    value: float
    per_landmark: np.ndarray
    unit: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def to_record(self, strategy: str) -> ScoreRecord:
        """What the store keeps of it: per-landmark values rounded, None where not finite."""
        from ..db.records import ScoreRecord  # here: the CLI's --help lists the strategies without SQLAlchemy

        values = [None if not np.isfinite(v) else round(float(v), 5) for v in self.per_landmark]
        return ScoreRecord(strategy, float(self.value), values, self.unit, dict(self.extra))


class Strategy:
    """Base class: ``needs`` lists what :class:`ScoreInput` must carry."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()
    description: ClassVar[str] = ""

    def score(self, x: ScoreInput) -> Scored:  # pragma: no cover - interface
        raise NotImplementedError


STRATEGIES: dict[str, Strategy] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available by its name."""
    STRATEGIES[cls.name] = cls()
    return cls


# ------------------------------------------------------------------ helpers


def _argmax_points(maps: np.ndarray) -> np.ndarray:
    """(N, h, w) -> (N, 2) integer (x, y) of each map's maximum."""
    n, _, w = maps.shape
    flat = maps.reshape(n, -1).argmax(axis=1)
    return np.stack([flat % w, flat // w], axis=1).astype(np.float64)


def _oriented(x: ScoreInput) -> tuple[np.ndarray, np.ndarray]:
    """LA and SC with each landmark's peak positive: the one sign rule, :func:`~.heatmap_cache.orient`."""
    return orient(x.final, x.local, x.spatial)


def _network_to_physical(x: ScoreInput, net_points: np.ndarray) -> tuple[np.ndarray, str]:
    """Network pixels -> mm (or original px when the spacing is unknown)."""
    if x.transform is None:
        return net_points, "net px"
    original = x.transform.from_network(net_points)
    if x.transform.spacing is None:
        return original, "px"
    return x.transform.to_mm(original), "mm"


def _second_peak_ratio(heatmap: np.ndarray, radius: int) -> float:
    """Height of the second-highest local maximum over the highest (0 when there is one)."""
    peaks = (heatmap == ndimage.maximum_filter(heatmap, size=2 * radius + 1, mode="nearest")) & (heatmap > 0)
    values = np.sort(heatmap[peaks])[::-1]
    return float(values[1] / values[0]) if len(values) > 1 and values[0] > 0 else 0.0


def _aggregate(per_landmark: np.ndarray) -> tuple[float, dict[str, float]]:
    finite = per_landmark[np.isfinite(per_landmark)]
    if finite.size == 0:
        return 0.0, {"mean": 0.0, "max": 0.0}
    return float(finite.mean()), {"mean": float(finite.mean()), "max": float(finite.max())}


# --------------------------------------------------------------- strategies


@register
class Random(Strategy):
    """A different random order every round; the baseline every strategy must beat."""

    name = "random"
    description = "random order"

    def score(self, x: ScoreInput) -> Scored:
        return Scored(random_value(x.image, x.round), np.full(len(x.points), np.nan))


def random_value(image: str, round: int) -> float:
    """A value in [0, 1) fixed by the image's name and the round: a random order nobody's RNG state changes."""
    digest = hashlib.sha256(f"{image}:{round}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


@register
class LeastConfident(Strategy):
    """Lowest peak of the final (LA x SC) heatmaps first."""

    name = "least_confident"
    description = "lowest final-heatmap peak"

    def score(self, x: ScoreInput) -> Scored:
        doubt = -np.asarray(x.confidence, dtype=np.float64)  # a lower peak is more doubtful
        value, extra = _aggregate(doubt)
        return Scored(value, doubt, "-peak", extra)


@register
class ScLaDistance(Strategy):
    """How far the local-appearance maximum is from the spatial-configuration maximum."""

    name = "sc_la_distance"
    needs = frozenset({"heatmaps"})
    description = "distance between the LA and the SC maximum"

    def score(self, x: ScoreInput) -> Scored:
        if x.spatial is None:  # the U-Net baseline has no SC
            return Scored(0.0, np.full(len(x.points), np.nan))
        local, spatial = _oriented(x)
        la, unit = _network_to_physical(x, _argmax_points(local))
        sc, _ = _network_to_physical(x, _argmax_points(spatial))
        per = np.linalg.norm(la - sc, axis=1)
        value, extra = _aggregate(per)
        return Scored(value, per, unit, extra)


@register
class ScLaMass(Strategy):
    """Share of the positive LA response that lies where SC is low."""

    name = "sc_la_mass"
    needs = frozenset({"heatmaps"})
    description = "share of the LA response outside the SC peak"

    def score(self, x: ScoreInput) -> Scored:
        if x.spatial is None:
            return Scored(0.0, np.full(len(x.points), np.nan))
        local, spatial = _oriented(x)
        la = np.clip(local, 0, None)
        sc = np.clip(spatial, 0, None)
        sc = sc / np.maximum(sc.max(axis=(1, 2), keepdims=True), 1e-12)
        total = la.sum(axis=(1, 2))
        outside = (la * (1.0 - sc)).sum(axis=(1, 2))
        per = np.where(total > 1e-12, outside / np.maximum(total, 1e-12), 1.0)
        value, extra = _aggregate(per)
        return Scored(value, per, "share", extra)


@register
class LaAmbiguity(Strategy):
    """Second-highest local maximum of the LA heatmap relative to the highest."""

    name = "la_ambiguity"
    needs = frozenset({"heatmaps"})
    description = "second LA peak / first LA peak"
    radius = 3  # network pixels: peaks closer than this are one peak

    def score(self, x: ScoreInput) -> Scored:
        local = _oriented(x)[0] if x.spatial is not None else x.local
        per = np.array([_second_peak_ratio(la, self.radius) for la in local])
        value, extra = _aggregate(per)
        return Scored(value, per, "ratio", extra)


@register
class ScLaConflict(Strategy):
    """How strongly LA prefers a place SC rejects, relative to the place the model chose.

    Below 1: LA agrees with the choice. Above 1: a look-alike outside the SC peak
    looks more like the landmark than the chosen point does, and only SC decided.
    """

    name = "sc_la_conflict"
    needs = frozenset({"heatmaps"})
    description = "strongest LA peak that SC rejects / LA at the chosen point"
    rejected = 0.5  # SC below this share of its maximum counts as rejected

    def score(self, x: ScoreInput) -> Scored:
        if x.spatial is None:
            return Scored(0.0, np.full(len(x.points), np.nan))
        local, spatial = _oriented(x)
        n = len(local)
        chosen = x.final.reshape(n, -1).argmax(axis=1)
        la = local.reshape(n, -1)
        sc = spatial.reshape(n, -1) / np.maximum(spatial.reshape(n, -1).max(axis=1, keepdims=True), 1e-12)
        outside = np.where(sc < self.rejected, la, -np.inf).max(axis=1)
        at_choice = la[np.arange(n), chosen]
        per = np.clip(outside, 0, None) / np.maximum(at_choice, 1e-6)
        value, extra = _aggregate(per)
        return Scored(value, per, "ratio", extra)


@register
class ResidualAmbiguity(Strategy):
    """Second-highest peak of the final heatmap (LA x SC) relative to the highest.

    LA finds every look-alike; SC should leave one. A second peak that survives the
    product is a look-alike SC did not suppress: the two components disagree on it.
    """

    name = "residual_ambiguity"
    needs = frozenset({"heatmaps"})
    description = "second final-heatmap peak / first"
    radius = 3

    def score(self, x: ScoreInput) -> Scored:
        per = np.array([_second_peak_ratio(np.clip(f, 0, None), self.radius) for f in x.final])
        value, extra = _aggregate(per)
        return Scored(value, per, "ratio", extra)


@register
class McDropout(Strategy):
    """Spread of the predicted positions over passes with dropout on (needs the network)."""

    name = "mc_dropout"
    needs = frozenset({"mc_dropout"})
    description = "spread of positions under MC dropout"

    def score(self, x: ScoreInput) -> Scored:
        if x.mc_points is None:
            raise ValueError("mc_dropout needs positions from several dropout passes")
        mean = x.mc_points.mean(axis=0)
        spread = np.linalg.norm(x.mc_points - mean, axis=2).mean(axis=0)  # (N,), original px
        unit = "px"
        if x.transform is not None and x.transform.spacing is not None:
            spread = spread * float(np.mean(x.transform.spacing))
            unit = "mm"
        value, extra = _aggregate(spread)
        return Scored(value, spread, unit, extra)


def score_all(x: ScoreInput, names: list[str] | None = None) -> dict[str, Scored]:
    """Every (or every named) strategy whose needs ``x`` meets."""
    have = set()
    if x.local is not None:
        have.add("heatmaps")
    if x.mc_points is not None:
        have.add("mc_dropout")
    chosen = names if names is not None else list(STRATEGIES)
    return {n: STRATEGIES[n].score(x) for n in chosen if STRATEGIES[n].needs <= have}


#: Dropout passes a strategy that needs MC dropout gets (the paper-style baseline uses 8).
MC_PASSES = 8


def mc_passes_for(strategies: Iterable[str]) -> int:
    """How many dropout passes a prediction needs so that these strategies can score it."""
    return MC_PASSES if any("mc_dropout" in STRATEGIES[name].needs for name in strategies if name in STRATEGIES) else 0


@dataclass
class Scoring:
    """Turns one prediction into every acquisition score it can feed, by strategy.

    All heatmap-based strategies are scored every time, so the app can switch
    strategy without re-running anything; MC dropout only when ``mc_passes`` > 0.
    The worker and the simulator both score through this, so a simulated campaign
    measures what the app does.
    """

    mc_passes: int = 0
    round: int = 0
    strategies: list[str] | None = None

    def __call__(self, prediction: Prediction) -> dict[str, ScoreRecord]:
        x = ScoreInput.of(prediction, self.round)
        return {name: scored.to_record(name) for name, scored in score_all(x, self.strategies).items()}


def select_batch(
    scores: dict[str, float],
    size: int,
    features: dict[str, np.ndarray] | None = None,
    diversity: float = 0.0,
) -> list[str]:
    """The ``size`` images to annotate next.

    Without diversity: the highest scores. With it, greedily: each pick maximises
    ``rank score - diversity * similarity to the images already picked`` (cosine
    similarity of ``features``, e.g. the predicted landmark configuration), so a
    batch is not five near-identical images.
    """
    names = sorted(scores, key=lambda k: -scores[k])
    if diversity <= 0 or not features:
        return names[:size]
    values = np.array([scores[n] for n in names])
    spread = values.max() - values.min()
    normalised = (values - values.min()) / spread if spread > 0 else np.zeros_like(values)
    feats = np.stack([np.nan_to_num(features[n].ravel()) for n in names])
    feats = feats - feats.mean(axis=0)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    chosen: list[int] = []
    for _ in range(min(size, len(names))):
        if chosen:  # only likeness costs; being unlike is no merit of its own
            similarity = np.clip(feats @ feats[chosen].T, 0, None).max(axis=1)
        else:
            similarity = np.zeros(len(names))
        gain = normalised - diversity * similarity
        gain[chosen] = -np.inf
        chosen.append(int(gain.argmax()))
    return [names[i] for i in chosen]
