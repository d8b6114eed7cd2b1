"""Does choosing by disagreement save annotations? An active-learning campaign with an oracle.

A pool of labelled images stands in for an annotator: the campaign starts from
``initial`` images chosen at random, and in every round a strategy picks ``batch``
more, whose true landmarks are "annotated" at once; the model is fine-tuned on
the grown set (warm start, as the worker does) and evaluated on held-out test
images. Every strategy of a seed starts from the same random images and the same
first model, so the curves differ only by what the strategies chose.

With ``effort`` set, the oracle also *counts its work*: every image it annotates is
first shown with the current model's proposals, and the corrections it needs
(:mod:`.effort`: proposals as they are, and conditioned on each correction) are
summed over the campaign, so a strategy is judged by the landmarks a person must
place to curate the pool, not only by the model's error; the first random images
have no model to propose and cost every landmark. The test images' corrections per
image at every budget are the same figure for models trained on that many images.

Images are decoded once for the whole campaign; training, prediction and scoring
are the engine's own functions, so what is measured is what the app does.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from ..configs import Record
from ..engine.after_training import fit_error_model
from ..engine.config import TrainConfig
from ..engine.data import Normalisation, Sample, build_samples, labelled_images, match_images
from ..engine.device import best_device
from ..engine.evaluation import error_unit, mean_error
from ..engine.geometry import SpacingRule
from ..engine.inference import Predictor, validation_errors
from ..engine.model_file import ModelFile
from ..engine.objects import LandmarkObjects
from ..engine.trainer import Trainer
from ..engine.training import fit_input_to_data
from ..errors import ScnError
from ..io.atomic import atomic_write_text
from ..io.images import Radiograph, find_images, read_image
from ..io.landmark_files import read_landmarks
from .effort import MODES, Tolerance, measure_effort
from .embeddings import FEATURES, KINDS, MODEL_FREE, PIXELS, model_free_embedding
from .pool import (
    DISAGREEMENT,
    POOL_STRATEGIES,
    PoolInput,
    doubt_threshold,
    expected_corrections,
    is_pool_strategy,
    pick,
)
from .ranking import DOUBTFUL_SHARE
from .scores import STRATEGIES, Scoring, mc_passes_for, select_batch
from .summary import StrategySummary, summarise

__all__ = [
    "Campaign",
    "CampaignResult",
    "CampaignRun",
    "Curve",
    "CurvePoint",
    "StrategySummary",
    "run_campaign",
    "split_ids",
    "summarise",
]


@dataclass(frozen=True)
class Campaign(Record):
    """The design of one simulated campaign."""

    strategies: list[str]
    seeds: list[int]
    initial: int = 8
    batch: int = 8
    budget: int = 48  # stop when this many images are labelled
    test: int = 20  # held-out images (a fixed split)
    initial_steps: int = 1000
    round_steps: int = 400
    mc_passes: int = 8
    diversity: float = 0.0
    #: labelled images after each round, the first the random start (overrides initial, batch and budget)
    schedule: list[int] | None = None
    pool: int | None = None  # draw from at most this many (seeded) pool images; None: all
    effort: str | None = None  # count the oracle's corrections within this tolerance ("2mm", "1%")
    effort_test: int | None = None  # ... on this many test images per budget (None: all, 0: none)
    group: str | None = None  # a regex whose first group names the patient: the test split keeps patients whole
    #: how the first images are chosen, before any model: "random", or a pool strategy on the pixel embeddings
    initial_strategy: str = "random"
    #: what pool strategies cluster once a model exists: "features" (the model's) or "pixels" (model-free)
    embedding: str = FEATURES
    #: the model-free embedding of the images before any model ("pixels" or "gradients")
    cold_embedding: str = PIXELS

    def budgets(self) -> list[int]:
        """The number of labelled images after each round, starting with the random images."""
        if self.schedule is not None:
            budgets = [int(b) for b in self.schedule]
            if not budgets or budgets[0] < 1 or any(b <= a for a, b in pairwise(budgets)):
                raise ScnError(f"a schedule is increasing numbers of labelled images, e.g. 8,16,32,64; not {budgets}")
            return budgets
        if self.budget <= self.initial:
            return [self.initial]
        return [*range(self.initial, self.budget, self.batch), self.budget]


@dataclass(frozen=True)
class CurvePoint(Record):
    """One budget of one curve: the test error of the model trained on ``labelled`` images, and the work."""

    labelled: int
    mean: float | None  # mean point error on the test images
    median: float
    over_4: float  # share of errors over 4 (mm or px)
    over_10: float
    picked: list[str]  # the images this round added (the random start's, for the first point)
    #: the oracle's corrections to label ``picked``, per effort mode (None: effort not counted)
    effort: dict[str, int] | None = None
    #: corrections per test image with this model's proposals, per effort mode
    test_effort: dict[str, float] | None = None


@dataclass(frozen=True)
class Curve(Record):
    strategy: str
    seed: int
    points: list[CurvePoint]


@dataclass
class CampaignResult(Record):
    """Everything a campaign measured; written after each curve, so an interrupted campaign resumes."""

    campaign: Campaign
    config: TrainConfig
    unit: str
    test_images: list[str]
    curves: list[Curve] = field(default_factory=list)  # one per (strategy, seed)
    seconds: dict[str, float] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read(cls, path: Path) -> CampaignResult:
        return cls.from_dict(json.loads(path.read_text()))

    def spend(self, what: str, started: float) -> None:
        """Add the time since ``started`` to ``what`` (loading, training, scoring, effort)."""
        self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - started


def _image(s: Sample) -> Radiograph:
    """The sample's image with the spacing its sample was given (a spacing rule may have set it)."""
    image = read_image(s.path)
    return image if s.spacing is None else image.with_spacing(s.spacing, s.spacing_source)


def split_ids(ids: Sequence[str], test: int, group: str | None = None) -> tuple[list[str], list[str]]:
    """(test, pool): a seeded shuffle; with ``group`` (a regex whose first group names the patient) whole
    patients go to the test side until it holds at least ``test`` images, so no patient is on both."""
    if group is None:
        order = np.random.default_rng(0).permutation(sorted(ids)).tolist()
        return order[:test], order[test:]
    try:
        pattern = re.compile(group)
    except re.error as exc:
        raise ScnError(f"the patient pattern {group!r} is not a regular expression: {exc}") from None

    by_patient: dict[str, list[str]] = {}
    for i in sorted(ids):
        match = pattern.match(i)
        by_patient.setdefault(match.group(1) if match and match.groups() else i, []).append(i)
    test_ids: list[str] = []
    for p in np.random.default_rng(0).permutation(sorted(by_patient)):
        if len(test_ids) >= test:
            break
        test_ids += by_patient[p]
    chosen = set(test_ids)
    pool = np.random.default_rng(1).permutation(sorted(i for i in ids if i not in chosen)).tolist()
    return test_ids, pool


def _features(points: np.ndarray) -> np.ndarray:
    """The predicted configuration, centred and scaled: what makes two hands look alike to the model."""
    pts = points - np.nanmean(points, axis=0)
    return pts / max(float(np.nanstd(pts)), 1e-9)


class CampaignRun:
    """One campaign on one data set: its samples decoded once, then every (strategy, seed) as a curve.

    The steps are the app's: :meth:`fit` trains (warm-started, as the worker's rounds
    are), :meth:`choose` predicts and scores the pool through ``Predictor.predict`` and
    ``Scoring`` as the worker does, :meth:`evaluate` measures the test images, and
    :meth:`annotate` counts the oracle's corrections.
    """

    def __init__(
        self,
        images: str | Path,
        labels: str | Path,
        cfg: TrainConfig,
        campaign: Campaign,
        *,
        spacing_rule: SpacingRule | None = None,
        device: str | None = None,
        log: Callable[[str], None] = print,
        outside: str = "error",
    ) -> None:
        known = [*STRATEGIES, *POOL_STRATEGIES]
        unknown = [s for s in [*campaign.strategies, campaign.initial_strategy] if s not in known]
        if unknown:
            raise ScnError(f"unknown strategies {unknown}; known: {', '.join(known)}")
        if campaign.embedding not in KINDS or campaign.cold_embedding not in MODEL_FREE:
            raise ScnError(f"unknown embedding {campaign.embedding!r} or {campaign.cold_embedding!r}")
        self._pixels: dict[str, np.ndarray] = {}
        self.campaign, self.log, self.budgets = campaign, log, campaign.budgets()
        self.tolerance = Tolerance.parse(campaign.effort) if campaign.effort else None
        self.started = time.perf_counter()
        table = read_landmarks(labels)
        self.names = table.names
        pairs, _ = match_images(find_images(images), table)
        ids = sorted(i for _, i in pairs)
        test_ids, pool_ids = split_ids(ids, campaign.test, campaign.group)
        self.pool_ids = pool_ids[: campaign.pool] if campaign.pool else pool_ids
        if len(self.pool_ids) < self.budgets[-1]:
            raise ScnError(
                f"{len(ids)} labelled images, {len(test_ids)} of them for testing: a pool of "
                f"{len(self.pool_ids)}, the campaign needs {self.budgets[-1]}"
            )
        by_id = {i: p for p, i in pairs}
        items = labelled_images([(by_id[i], i) for i in test_ids + self.pool_ids], table)
        self.cfg = fit_input_to_data(cfg, items, LandmarkObjects.infer(table.names))
        notes: list[str] = []
        samples = build_samples(
            items,
            self.cfg.input_size,
            Normalisation(*self.cfg.normalisation),
            self.cfg.cache_factor,
            spacing_rule,
            names=table.names,
            outside=outside,
            notes=notes,
        )
        for line in notes:
            log(f"note: {line}")
        self.by_id = dict(zip(test_ids + self.pool_ids, samples))
        self.test = [self.by_id[i] for i in test_ids]
        self.result = CampaignResult(campaign, self.cfg, error_unit([s.spacing for s in self.test]), test_ids)
        self.result.spend("loading", self.started)
        self.device = torch.device(device) if device else best_device()

    # -- the steps -----------------------------------------------------------------

    def fit(self, labelled: list[str], steps: int, seed: int, start: ModelFile | None) -> Trainer:
        """Train on ``labelled`` for ``steps``, from ``start``'s weights when given (a fine-tuning round)."""
        cfg = self.cfg
        run_cfg = cfg.replace(
            steps=steps, seed=seed, validate_every=10**9, warmup_steps=min(cfg.warmup_steps, steps // 10)
        )
        trainer = Trainer(run_cfg, [self.by_id[i] for i in labelled], [], self.names, None, self.device)
        if start is not None:
            trainer.model.load_state_dict(start.weights)
            trainer.targets.sigma.data.copy_(start.sigmas)  # type: ignore[arg-type]
        t = time.perf_counter()
        trainer.run(None, None, None)
        fit_error_model(trainer)  # as `train` does: the oracle's conditioned proposals are then the app's
        self.result.spend("training", t)
        return trainer

    def evaluate(self, trainer: Trainer, labelled: int, picked: list[str], effort: dict[str, int] | None) -> CurvePoint:
        """The model's errors on the test images (and the oracle's corrections per test image)."""
        errors, _ = validation_errors(trainer.model, self.test, self.device, objects=trainer.objects)
        errors = errors[~np.isnan(errors)]  # landmarks the test images lack are no error
        test_effort = None
        if self.tolerance is not None and self.campaign.effort_test != 0:
            shown = self.test[: self.campaign.effort_test] if self.campaign.effort_test else self.test
            counts = self.annotate(trainer, shown)
            test_effort = {mode: n / len(shown) for mode, n in (counts or {}).items()}  # corrections per image
        return CurvePoint(
            labelled=labelled,
            mean=mean_error(errors),
            median=float(np.median(errors)),
            over_4=float((errors > 4).mean()),
            over_10=float((errors > 10).mean()),
            picked=list(picked),
            effort=effort,
            test_effort=test_effort,
        )

    def annotate(self, trainer: Trainer | None, shown: Sequence[Sample]) -> dict[str, int] | None:
        """What the oracle places to label ``shown`` with ``trainer``'s proposals (None: no tolerance given).

        Without a model (the random start) every landmark is placed, in every mode.
        """
        if self.tolerance is None:
            return None
        t = time.perf_counter()
        if trainer is None:
            placed = int(sum(s.valid.sum() for s in shown))
            counts = {str(mode): placed for mode in MODES}
        else:
            pairs = [(_image(s), s.points) for s in shown]
            counts = {str(m): n for m, n in measure_effort(_predictor(trainer), pairs, self.tolerance).totals().items()}
        self.result.spend("effort", t)
        return counts

    def pixels(self, ids: Sequence[str]) -> np.ndarray:
        """(len(ids), D) the campaign's model-free embeddings of these images (computed once per campaign)."""
        for i in ids:
            if i not in self._pixels:
                self._pixels[i] = model_free_embedding(self.campaign.cold_embedding, _image(self.by_id[i]).pixels)
        return np.array([self._pixels[i] for i in ids])

    def first_images(self, seed: int) -> list[str]:
        """The images labelled before any model: random (seeded), or the campaign's initial pool strategy's."""
        if self.campaign.initial_strategy == "random":
            rng = np.random.default_rng(1000 + seed)
            return rng.choice(self.pool_ids, self.budgets[0], replace=False).tolist()
        x = PoolInput(self.pixels(self.pool_ids), np.empty((0, 0)), batch=self.budgets[0], seed=seed)
        ranked = pick(self.campaign.initial_strategy, x)
        return [self.pool_ids[r.index] for r in ranked[: self.budgets[0]]]

    def choose(self, trainer: Trainer, strategy: str, labelled: list[str], count: int, round_: int) -> list[str]:
        """The ``count`` pool images ``strategy`` asks for next, scored as the worker scores them."""
        unlabelled = [i for i in self.pool_ids if i not in labelled]
        if is_pool_strategy(strategy):
            return self._choose_from_pool(trainer, strategy, labelled, unlabelled, count, round_)
        t = time.perf_counter()
        mc = self.campaign.mc_passes if mc_passes_for([strategy]) else 0
        scoring = Scoring(mc_passes=mc, round=round_, strategies=[strategy])
        predictor = _predictor(trainer)
        scores, features = {}, {}
        for i in unlabelled:  # each image's heatmaps (tens of MB for a spine) are dropped at once
            prediction = predictor.predict(_image(self.by_id[i]), heatmaps=True, mc_passes=scoring.mc_passes)
            scores[i] = scoring(prediction)[strategy].value
            features[i] = _features(prediction.points)
        diversity = self.campaign.diversity
        picked = select_batch(scores, count, features if diversity else None, diversity)
        self.result.spend("scoring", t)
        return picked

    def _choose_from_pool(
        self, trainer: Trainer, strategy: str, labelled: list[str], unlabelled: list[str], count: int, round_: int
    ) -> list[str]:
        """A pool strategy's ``count`` images: the pool's embeddings and disagreement scores, as the app ranks."""
        t = time.perf_counter()
        predictor = _predictor(trainer)
        scoring = Scoring(round=round_, strategies=[DISAGREEMENT])
        features = self.campaign.embedding == FEATURES
        scores, vectors, per_landmark = [], [], []
        for i in unlabelled:
            prediction = predictor.predict(_image(self.by_id[i]), heatmaps=True, embed=features)
            scored = scoring(prediction)[DISAGREEMENT]
            scores.append(scored.value)
            per_landmark.append([v if v is not None else np.nan for v in scored.per_landmark])
            vectors.append(prediction.embedding)
        doubt = np.array(per_landmark, dtype=np.float64)
        costs = expected_corrections(doubt, doubt_threshold(doubt, DOUBTFUL_SHARE))
        if features:
            candidates = np.array(vectors)
            known = np.array([predictor.embed(_image(self.by_id[i])) for i in labelled])
        else:
            candidates, known = self.pixels(unlabelled), self.pixels(labelled)
        x = PoolInput(candidates, known, batch=count, scores=np.array(scores), seed=round_, costs=costs)
        picked = [unlabelled[r.index] for r in pick(strategy, x)[:count]]
        self.result.spend("scoring", t)
        return picked

    # -- the campaign ----------------------------------------------------------------

    def run(self, checkpoint: Path | None = None) -> CampaignResult:
        """Every (strategy, seed); ``checkpoint`` holds the result after each curve and resumes from it."""
        result, campaign = self.result, self.campaign
        done = _resume(checkpoint, result, campaign.seeds, self.log)
        for seed in campaign.seeds:
            todo = [name for name in campaign.strategies if (name, seed) not in done]
            if not todo:
                continue
            initial = self.first_images(seed)
            how = campaign.initial_strategy
            self.log(f"seed {seed}: first model on {len(initial)} {how} images, {campaign.initial_steps} steps")
            first = self.fit(initial, campaign.initial_steps, seed, None)
            start_effort = self.annotate(None, [self.by_id[i] for i in initial])  # no model yet: all placed
            start = self.evaluate(first, len(initial), initial, start_effort)
            for name in todo:
                result.curves.append(self._curve(name, seed, first, start))
                if checkpoint is not None:
                    result.seconds["total"] = time.perf_counter() - self.started
                    result.write(checkpoint)
        result.seconds["total"] = time.perf_counter() - self.started
        return result

    def _curve(self, strategy: str, seed: int, first: Trainer, start: CurvePoint) -> Curve:
        """One strategy's rounds from the seed's first model: choose, annotate, fine-tune, evaluate."""
        labelled, trainer, points = list(start.picked), first, [start]
        unit = self.result.unit
        for round_, budget in enumerate(self.budgets[1:], start=1):
            picked = self.choose(trainer, strategy, labelled, budget - len(labelled), round_ + 100 * seed)
            effort = self.annotate(trainer, [self.by_id[i] for i in picked])  # the proposals of the model that chose
            labelled += picked
            trainer = self.fit(labelled, self.campaign.round_steps, seed * 1000 + round_, trainer.model_file())
            point = self.evaluate(trainer, len(labelled), picked, effort)
            points.append(point)
            effort_text = ""
            if effort is not None:
                per = f"{effort['proposals'] / len(picked):.1f} / {effort['conditioned'] / len(picked):.1f}"
                effort_text = f", {per} corrections per picked image (proposals / conditioned)"
            self.log(
                f"  {strategy} seed {seed}: {len(labelled)} labelled, test error {point.mean:.2f} {unit}, "
                f"{100 * point.over_4:.1f} % > 4 {unit}{effort_text}"
            )
        return Curve(strategy, seed, points)


def run_campaign(
    images: str | Path,
    labels: str | Path,
    cfg: TrainConfig,
    campaign: Campaign,
    *,
    spacing_rule: SpacingRule | None = None,
    device: str | None = None,
    log: Callable[[str], None] = print,
    checkpoint: Path | None = None,
    outside: str = "error",
) -> CampaignResult:
    """Run every (strategy, seed) of ``campaign``; ``checkpoint`` saves results after each curve."""
    run = CampaignRun(images, labels, cfg, campaign, spacing_rule=spacing_rule, device=device, log=log, outside=outside)
    return run.run(checkpoint)


def _predictor(trainer: Trainer) -> Predictor:
    """The trainer's model as the app would load it (its model file, without the disk)."""
    return Predictor.from_model_file(trainer.model_file(), trainer.device)


def _resume(
    checkpoint: Path | None, result: CampaignResult, seeds: list[int], log: Callable[[str], None]
) -> set[tuple[str, int]]:
    """Take the finished curves of an interrupted run of the same campaign from ``checkpoint``.

    Same campaign means the same design (seeds aside), training config and test images;
    every curve is deterministic given those, so a finished one need not run again.
    """
    if checkpoint is None or not checkpoint.exists():
        return set()
    try:
        held = json.loads(checkpoint.read_text())
    except (OSError, ValueError):
        return set()
    now = json.loads(json.dumps(result.to_dict()))  # as it would be written: tuples as lists
    same = all(held.get(key) == now[key] for key in ("config", "test_images")) and (
        {k: v for k, v in held.get("campaign", {}).items() if k != "seeds"}
        == {k: v for k, v in now["campaign"].items() if k != "seeds"}
    )
    if not same:
        log(f"note: {checkpoint} holds another campaign; it is replaced")
        return set()
    result.curves = [Curve.from_dict(c) for c in held.get("curves", []) if c["seed"] in seeds]
    done = {(c.strategy, c.seed) for c in result.curves}
    if done:
        log(f"resuming: {len(done)} finished curves taken from {checkpoint}")
    return done
