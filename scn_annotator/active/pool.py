"""Strategies that rank a whole pool at once: typical images first, coverage, and disagreement weighed by them.

The per-image strategies of :mod:`.scores` judge each image by its own prediction.
With few labels that is the wrong question (Hacohen, Dekel and Weinshall, ICML 2022:
at low budgets *typical* examples beat uncertain ones, which are often outliers; Quan
et al., CVPR 2022: representative radiographs first cut the one-shot hand error by a
third). These strategies look at the pool's embeddings (:mod:`.embeddings`) and at
what is labelled already, so they rank the pool, not an image:

- ``typical`` (TypiClust): cluster labelled and unlabelled images into as many
  clusters as there will be labelled images after this batch; from each cluster no
  labelled image covers, largest first, the densest image (the inverse of its mean
  distance to its nearest neighbours).
- ``coverage`` (k-centre greedy, Sener and Savarese 2018): each next image the one
  farthest from everything labelled or already picked.
- ``dense_disagreement`` (information density, Settles and Craven 2008): the SC/LA
  disagreement score of :mod:`.scores` times the image's typicality (scaled to the
  pool's densest), so that a doubtful outlier does not outrank a doubtful typical image.
- ``diverse_disagreement`` (diverse mini-batches, Zhdanov 2019): the ``PREFILTER`` x batch
  candidates ``dense_disagreement`` ranks highest, clustered into ``batch`` groups by
  k-means weighted with their values; the best of each group first. A large batch of the
  most doubtful images is otherwise a batch of one failure mode many times over.
- ``auto``: ``typical`` while fewer than ``switch`` images are labelled, then
  ``dense_disagreement``.
- ``cost_aware``: ``dense_disagreement`` divided by one plus the image's expected
  corrections (its doubtful landmarks), so that the batch teaches most per correction.

Every strategy is a small named class behind one interface (:class:`PoolStrategy`),
registered in :data:`POOL_STRATEGIES`; each ranked row carries the reason it is where
it is, which ``scn-annotator rank`` prints. No torch, no database here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .embeddings import project

__all__ = [
    "AUTO_SWITCH",
    "DISAGREEMENT",
    "POOL_STRATEGIES",
    "doubt_threshold",
    "expected_corrections",
    "PREFILTER",
    "PoolInput",
    "PoolStrategy",
    "Ranked",
    "is_pool_strategy",
    "kmeans",
    "pick",
    "register_pool",
    "typicality",
]

#: The per-image score ``dense_disagreement`` weighs: the project's default disagreement signal.
DISAGREEMENT = "residual_ambiguity"
#: ``auto`` turns from typical images to disagreement once this many images are labelled.
AUTO_SWITCH = 32
#: Neighbours a typicality is measured over (TypiClust's 20), fewer in a small pool.
NEIGHBOURS = 20
#: ``diverse_disagreement`` clusters this many times the batch of the highest-ranked candidates (Zhdanov's beta).
PREFILTER = 10
#: k-means runs ``diverse_disagreement`` keeps the tightest of.
RESTARTS = 8


@dataclass
class PoolInput:
    """What a pool strategy sees: the unlabelled candidates and the labelled images, as embeddings."""

    candidates: np.ndarray  # (U, D) embeddings of the images that could be asked for
    labelled: np.ndarray  # (L, D) embeddings of the images already labelled (L may be 0)
    batch: int  # how many will be asked for now (the clusters of ``typical``)
    scores: np.ndarray | None = None  # (U,) per-image disagreement (higher: more doubtful); None without a model
    seed: int = 0
    costs: np.ndarray | None = None  # (U,) corrections each image is expected to need (its doubtful landmarks)
    _joint: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.candidates = np.asarray(self.candidates, dtype=np.float64).reshape(len(self.candidates), -1)
        dims = self.candidates.shape[1]
        self.labelled = np.asarray(self.labelled, dtype=np.float64).reshape(-1, dims)
        if self.scores is not None and len(self.scores) != len(self.candidates):
            raise ValueError(f"{len(self.scores)} scores for {len(self.candidates)} candidates")

    def joint(self) -> tuple[np.ndarray, np.ndarray]:
        """(candidates, labelled) reduced together (:func:`.embeddings.project`), so distances compare;
        computed once, as strategies built on others (diverse, cost-aware) ask again."""
        if self._joint is None:
            both = project(np.concatenate([self.candidates, self.labelled]))
            self._joint = both[: len(self.candidates)], both[len(self.candidates) :]
        return self._joint


@dataclass(frozen=True)
class Ranked:
    """One candidate's place: its index in :attr:`PoolInput.candidates`, its value and why it is there."""

    index: int
    value: float
    reason: str


class PoolStrategy:
    """Base class: :meth:`rank` orders every candidate, the first ``batch`` the ones to ask for now."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def rank(self, x: PoolInput) -> list[Ranked]:  # pragma: no cover - interface
        raise NotImplementedError


POOL_STRATEGIES: dict[str, PoolStrategy] = {}


def register_pool(cls: type[PoolStrategy]) -> type[PoolStrategy]:
    POOL_STRATEGIES[cls.name] = cls()
    return cls


def is_pool_strategy(name: str) -> bool:
    return name in POOL_STRATEGIES


def typicality(points: np.ndarray, among: np.ndarray | None = None, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """(P,) the inverse mean distance of each of ``points`` to its nearest ``neighbours`` in ``among``
    (default: the points themselves, each without itself). Dense regions are typical."""
    among = points if among is None else among
    d = np.linalg.norm(points[:, None, :] - among[None, :, :], axis=-1)
    if among is points:
        np.fill_diagonal(d, np.inf)
    k = max(1, min(neighbours, d.shape[1] - (1 if among is points else 0)))
    nearest = np.sort(d, axis=1)[:, :k]
    nearest = np.where(np.isfinite(nearest), nearest, 0.0)
    return 1.0 / np.maximum(nearest.mean(axis=1), 1e-12)


def kmeans(
    points: np.ndarray,
    k: int,
    seed: int = 0,
    iterations: int = 50,
    weights: np.ndarray | None = None,
    restarts: int = 1,
) -> np.ndarray:
    """(P,) cluster labels: k-means with k-means++ seeding, deterministic for a seed; ``weights``
    (non-negative, per point) pull the centres towards the heavy points; of ``restarts`` runs the
    one with the least weighted squared distance to its centres (one seeding can split a tight cluster)."""
    n = len(points)
    k = max(1, min(k, n))
    w = np.ones(n) if weights is None else np.maximum(np.asarray(weights, dtype=np.float64), 0.0) + 1e-12
    rng = np.random.default_rng(seed)
    best, best_cost = np.zeros(n, dtype=int), np.inf
    for _ in range(max(1, restarts)):
        labels, cost = _lloyd(points, k, w, rng, iterations, weighted=weights is not None)
        if cost < best_cost:
            best, best_cost = labels, cost
    return best


def _lloyd(
    points: np.ndarray, k: int, w: np.ndarray, rng: np.random.Generator, iterations: int, weighted: bool
) -> tuple[np.ndarray, float]:
    n = len(points)
    centres = [points[rng.choice(n, p=w / w.sum()) if weighted else rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((points[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1) * w
        total = d2.sum()
        centres.append(points[rng.choice(n, p=d2 / total)] if total > 0 else points[rng.integers(n)])
    c = np.array(centres)
    labels = np.zeros(n, dtype=int)
    for step in range(iterations):
        labels_new = ((points[:, None, :] - c[None]) ** 2).sum(-1).argmin(axis=1)
        if step and (labels_new == labels).all():
            break
        labels = labels_new
        for j in range(k):
            if (labels == j).any():
                c[j] = np.average(points[labels == j], axis=0, weights=w[labels == j])
    cost = float((w * ((points - c[labels]) ** 2).sum(-1)).sum())
    return labels, cost


@register_pool
class Typical(PoolStrategy):
    """TypiClust: one typical image from each cluster the labelled images do not cover yet, largest first."""

    name = "typical"
    description = "the densest image of each uncovered cluster (TypiClust)"

    def rank(self, x: PoolInput) -> list[Ranked]:
        cand, lab = x.joint()
        if len(cand) == 0:
            return []
        everything = np.concatenate([cand, lab])
        dense = typicality(cand, everything if len(lab) else None)
        clusters = kmeans(everything, len(lab) + max(1, x.batch), seed=x.seed)
        own, covered = clusters[: len(cand)], set(clusters[len(cand) :].tolist())
        sizes = np.bincount(clusters, minlength=clusters.max() + 1)
        uncovered = sorted({int(c) for c in own} - covered, key=lambda c: (-sizes[c], c))
        out: list[Ranked] = []
        taken: set[int] = set()
        for c in uncovered:
            members = np.flatnonzero(own == c)
            best = int(members[np.argmax(dense[members])])
            reason = f"typical: the densest of a cluster of {sizes[c]} images that no labelled image covers"
            out.append(Ranked(best, float(dense[best]), reason))
            taken.add(best)
        rest = sorted((i for i in range(len(cand)) if i not in taken), key=lambda i: -dense[i])
        out += [Ranked(i, float(dense[i]), "typical: by density, its cluster covered") for i in rest]
        return out


@register_pool
class Coverage(PoolStrategy):
    """k-centre greedy: each next image the farthest from every labelled or already chosen one."""

    name = "coverage"
    description = "farthest from everything labelled (k-centre greedy)"

    def rank(self, x: PoolInput) -> list[Ranked]:
        cand, lab = x.joint()
        if len(cand) == 0:
            return []
        if len(lab):
            nearest = np.linalg.norm(cand[:, None] - lab[None], axis=-1).min(axis=1)
            first_reason = None
        else:  # nothing labelled: start from the image nearest the pool's centre (its medoid)
            nearest = np.full(len(cand), np.inf)
            first_reason = "coverage: the pool's most central image (nothing labelled yet)"
        out: list[Ranked] = []
        chosen = np.zeros(len(cand), dtype=bool)
        for _ in range(len(cand)):
            if first_reason is not None:
                i = int(np.linalg.norm(cand - cand.mean(axis=0), axis=1).argmin())
                out.append(Ranked(i, 0.0, first_reason))
                first_reason = None
            else:
                gap = np.where(chosen, -np.inf, nearest)
                i = int(gap.argmax())
                out.append(Ranked(i, float(gap[i]), f"coverage: {gap[i]:.2f} from the nearest labelled or chosen"))
            chosen[i] = True
            nearest = np.minimum(nearest, np.linalg.norm(cand - cand[i], axis=1))
        return out


@register_pool
class DenseDisagreement(PoolStrategy):
    """Information density: the SC/LA disagreement of an image times how typical it is."""

    name = "dense_disagreement"
    description = f"{DISAGREEMENT} x typicality (information density)"

    def rank(self, x: PoolInput) -> list[Ranked]:
        if x.scores is None:  # no model yet: nothing disagrees; the typical images are what to ask for
            return [Ranked(r.index, r.value, f"{r.reason} (no model yet)") for r in Typical().rank(x)]
        cand, lab = x.joint()
        dense = typicality(cand, np.concatenate([cand, lab]) if len(lab) else None)
        weight = dense / max(float(dense.max()), 1e-12)
        scores = np.nan_to_num(np.asarray(x.scores, dtype=np.float64), nan=0.0)
        value = scores * weight
        order = np.argsort(-value, kind="stable")
        return [
            Ranked(int(i), float(value[i]), f"disagreement {scores[i]:.2f} x typicality {weight[i]:.2f}") for i in order
        ]


@register_pool
class DiverseDisagreement(PoolStrategy):
    """``dense_disagreement``'s best candidates spread over ``batch`` groups: one image per way of failing."""

    name = "diverse_disagreement"
    description = f"dense_disagreement's top {PREFILTER} x batch, the best of each of batch weighted clusters"

    def rank(self, x: PoolInput) -> list[Ranked]:
        dense = DenseDisagreement().rank(x)
        if x.scores is None or len(dense) <= x.batch:
            return dense
        top = dense[: PREFILTER * max(1, x.batch)]
        cand, _ = x.joint()
        values = np.array([r.value for r in top])
        groups = kmeans(cand[[r.index for r in top]], x.batch, seed=x.seed, weights=values, restarts=RESTARTS)
        first: list[Ranked] = []
        for g in np.unique(groups):
            members = np.flatnonzero(groups == g)
            best = top[int(members[np.argmax(values[members])])]  # the group's most doubtful typical image
            reason = f"{best.reason}, the best of a group of {len(members)} alike doubtful images"
            first.append(Ranked(best.index, best.value, reason))
        first.sort(key=lambda r: -r.value)
        chosen = {r.index for r in first}
        return first + [r for r in dense if r.index not in chosen]


@register_pool
class Auto(PoolStrategy):
    """``typical`` while few images are labelled, ``dense_disagreement`` from ``switch`` on."""

    name = "auto"
    description = f"typical below {AUTO_SWITCH} labelled images, then dense_disagreement"

    def __init__(self, switch: int = AUTO_SWITCH) -> None:
        self.switch = switch

    def rank(self, x: PoolInput) -> list[Ranked]:
        if len(x.labelled) < self.switch or x.scores is None:
            why = f"auto, {len(x.labelled)} labelled (< {self.switch})" if x.scores is not None else "auto, no model"
            return [Ranked(r.index, r.value, f"{why} -> {r.reason}") for r in Typical().rank(x)]
        ranked = DenseDisagreement().rank(x)
        return [Ranked(r.index, r.value, f"auto, {len(x.labelled)} labelled -> {r.reason}") for r in ranked]


@register_pool
class CostAware(PoolStrategy):
    """``dense_disagreement`` per expected correction: what an image teaches, divided by what it costs to label.

    The doubtful images are the ones whose proposals are worst, so choosing by doubt
    alone costs more corrections (the campaigns measured 6-8 % more); dividing by the
    corrections the model's own per-landmark doubt predicts puts an image that
    teaches as much for fewer corrections first.
    """

    name = "cost_aware"
    description = "dense_disagreement / (1 + the image's doubtful landmarks)"

    def rank(self, x: PoolInput) -> list[Ranked]:
        dense = DenseDisagreement().rank(x)
        if x.scores is None or x.costs is None:
            return dense
        costs = np.asarray(x.costs, dtype=np.float64)
        value = {r.index: r.value / (1.0 + costs[r.index]) for r in dense}
        reason = {r.index: r.reason for r in dense}
        order = sorted(value, key=lambda i: -value[i])
        return [Ranked(i, value[i], f"{reason[i]} / (1 + {costs[i]:.0f} expected corrections)") for i in order]


def expected_corrections(per_landmark: np.ndarray, threshold: float) -> np.ndarray:
    """(U,) each image's landmarks whose doubt reaches ``threshold``: the corrections its proposals will need."""
    values = np.nan_to_num(np.asarray(per_landmark, dtype=np.float64), nan=-np.inf)
    return (values >= threshold).sum(axis=1).astype(np.float64)


def doubt_threshold(per_landmark: np.ndarray, share: float) -> float:
    """The per-landmark value from which a landmark is doubtful: the top ``share`` of all of them."""
    values = np.asarray(per_landmark, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    return float(np.quantile(values, 1 - share)) if values.size else float("inf")


def pick(name: str, x: PoolInput, switch: int | None = None) -> list[Ranked]:
    """Rank ``x`` with the pool strategy ``name`` (``switch`` overrides ``auto``'s)."""
    strategy = POOL_STRATEGIES[name]
    if isinstance(strategy, Auto) and switch is not None:
        strategy = Auto(switch)
    return strategy.rank(x)
