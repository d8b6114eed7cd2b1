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
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine.config import TrainConfig
from ..engine.data import Normalisation, Sample, build_samples, labelled_images, match_images
from ..engine.evaluation import error_unit, mean_error
from ..engine.geometry import SpacingRule
from ..engine.inference import Predictor, validation_errors
from ..engine.trainer import Trainer
from ..engine.training import fit_input_to_data
from ..errors import ScnError
from ..io.atomic import atomic_open, atomic_write_text
from ..io.images import Radiograph, find_images, read_image
from ..io.landmark_files import read_landmarks
from .effort import MODES, Tolerance, measure_effort
from .scores import STRATEGIES, Scoring, mc_passes_for

__all__ = ["Campaign", "CampaignResult", "run_campaign", "summarise"]


@dataclass
class Campaign:
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


@dataclass
class CampaignResult:
    campaign: dict[str, Any]
    config: dict[str, Any]
    unit: str
    test_images: list[str]
    curves: list[dict[str, Any]] = field(default_factory=list)  # one per (strategy, seed)
    seconds: dict[str, float] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2))  # an interrupted campaign resumes from it


def _predictor(trainer: Trainer) -> Predictor:
    """The trainer's model as the app would load it (its model file, without the disk)."""
    return Predictor.from_model_file(trainer.model_file(), trainer.device)


def _image(s: Sample) -> Radiograph:
    """The sample's image with the spacing its sample was given (a spacing rule may have set it)."""
    image = read_image(s.path)
    return image if s.spacing is None else image.with_spacing(s.spacing, s.spacing_source)


def _predict(trainer: Trainer, samples: Sequence[Sample], scoring: Scoring) -> list[tuple[np.ndarray, float]]:
    """Predict and score the unlabelled pool exactly as the worker does: ``Predictor.predict`` and ``Scoring``.

    Returns each image's points and score; its heatmaps (tens of MB for a spine) are dropped at once.
    """
    predictor = _predictor(trainer)
    (strategy,) = scoring.strategies or ["?"]
    out = []
    for s in samples:
        prediction = predictor.predict(_image(s), heatmaps=True, mc_passes=scoring.mc_passes)
        out.append((prediction.points, scoring(prediction)[strategy].value))
    return out


def _effort(trainer: Trainer | None, samples: Sequence[Sample], tolerance: Tolerance) -> dict[str, int]:
    """The oracle's corrections over ``samples`` in every mode; without a model every landmark is placed."""
    if trainer is None:
        placed = int(sum(s.valid.sum() for s in samples))
        return dict.fromkeys(MODES, placed)
    return measure_effort(_predictor(trainer), [(_image(s), s.points) for s in samples], tolerance).totals()


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
    from .scores import select_batch

    unknown = [s for s in campaign.strategies if s not in STRATEGIES]
    if unknown:
        raise ScnError(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    budgets = campaign.budgets()
    tolerance = Tolerance.parse(campaign.effort) if campaign.effort else None
    table = read_landmarks(labels)
    pairs, _ = match_images(find_images(images), table)
    ids = sorted(i for _, i in pairs)
    test_ids, pool_ids = split_ids(ids, campaign.test, campaign.group)
    pool_ids = pool_ids[: campaign.pool] if campaign.pool else pool_ids
    if len(pool_ids) < budgets[-1]:
        raise ScnError(
            f"{len(ids)} labelled images, {len(test_ids)} of them for testing: a pool of "
            f"{len(pool_ids)}, the campaign needs {budgets[-1]}"
        )
    by_id = {i: p for p, i in pairs}
    started = time.perf_counter()
    items = labelled_images([(by_id[i], i) for i in test_ids + pool_ids], table)
    cfg = fit_input_to_data(cfg, items)
    notes: list[str] = []
    samples = build_samples(
        items,
        cfg.input_size,
        Normalisation(*cfg.normalisation),
        cfg.cache_factor,
        spacing_rule,
        names=table.names,
        outside=outside,
        notes=notes,
    )
    for line in notes:
        log(f"note: {line}")
    by_sample = dict(zip(test_ids + pool_ids, samples))
    test = [by_sample[i] for i in test_ids]
    unit = error_unit([s.spacing for s in test])
    result = CampaignResult(asdict(campaign), cfg.to_dict(), unit, test_ids)
    result.seconds["loading"] = time.perf_counter() - started
    dev = torch.device(device) if device else None
    from ..engine.device import best_device

    dev = dev or best_device()

    def evaluate(trainer: Trainer) -> dict[str, float]:
        errors, _ = validation_errors(trainer.model, test, dev)
        errors = errors[~np.isnan(errors)]  # landmarks the test images lack are no error
        out = {
            "mean": mean_error(errors),
            "median": float(np.median(errors)),
            "over_4": float((errors > 4).mean()),
            "over_10": float((errors > 10).mean()),
        }
        if tolerance is not None and campaign.effort_test != 0:
            shown = test[: campaign.effort_test] if campaign.effort_test else test
            counts = annotate(trainer, shown)
            out["test_effort"] = {mode: n / len(shown) for mode, n in counts.items()}  # corrections per image
        return out

    def annotate(trainer: Trainer | None, shown: Sequence[Sample]) -> dict[str, int] | None:
        """What the oracle had to place to label ``shown``, given the proposals of ``trainer``."""
        if tolerance is None:
            return None
        t = time.perf_counter()
        counts = _effort(trainer, shown, tolerance)
        result.seconds["effort"] = result.seconds.get("effort", 0.0) + time.perf_counter() - t
        return counts

    def fit(labelled: list[str], steps: int, seed: int, init: dict | None) -> Trainer:
        run_cfg = cfg.replace(
            steps=steps, seed=seed, validate_every=10**9, warmup_steps=min(cfg.warmup_steps, steps // 10)
        )
        trainer = Trainer(run_cfg, [by_sample[i] for i in labelled], [], table.names, None, dev)
        if init is not None:
            trainer.model.load_state_dict(init["model"])
            trainer.targets.sigma.data.copy_(init["sigma"])
        t = time.perf_counter()
        trainer.run(None, None, None)
        result.seconds["training"] = result.seconds.get("training", 0.0) + time.perf_counter() - t
        return trainer

    def state(trainer: Trainer) -> dict:
        return {
            "model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            "sigma": trainer.targets.sigma.detach().clone(),
        }

    done = _resume(checkpoint, result, campaign.seeds, log)
    for seed in campaign.seeds:
        todo = [name for name in campaign.strategies if (name, seed) not in done]
        if not todo:
            continue
        rng = np.random.default_rng(1000 + seed)
        initial = rng.choice(pool_ids, budgets[0], replace=False).tolist()
        log(f"seed {seed}: first model on {len(initial)} random images, {campaign.initial_steps} steps")
        first = fit(initial, campaign.initial_steps, seed, None)
        start_state, start_eval = state(first), evaluate(first)
        start_effort = annotate(None, [by_sample[i] for i in initial])  # no model yet: every landmark placed
        for name in todo:
            labelled, model_state, curve = (
                list(initial),
                start_state,
                [{"labelled": len(initial), **start_eval, "picked": list(initial), "effort": start_effort}],
            )
            trainer = first
            for round_, budget in enumerate(budgets[1:], start=1):
                unlabelled = [i for i in pool_ids if i not in labelled]
                t = time.perf_counter()
                mc = campaign.mc_passes if mc_passes_for([name]) else 0
                scoring = Scoring(mc_passes=mc, round=round_ + 100 * seed, strategies=[name])
                scored = _predict(trainer, [by_sample[i] for i in unlabelled], scoring)
                scores = {i: value for i, (_, value) in zip(unlabelled, scored)}
                features = {i: _features(p) for i, (p, _) in zip(unlabelled, scored)} if campaign.diversity else None
                picked = select_batch(scores, budget - len(labelled), features, campaign.diversity)
                result.seconds["scoring"] = result.seconds.get("scoring", 0.0) + time.perf_counter() - t
                # the annotator sees the proposals of the model that chose
                effort = annotate(trainer, [by_sample[i] for i in picked])
                labelled += picked
                trainer = fit(labelled, campaign.round_steps, seed * 1000 + round_, model_state)
                model_state = state(trainer)
                point = {"labelled": len(labelled), **evaluate(trainer), "picked": picked, "effort": effort}
                curve.append(point)
                effort_text = (
                    ""
                    if effort is None
                    else (
                        f", {effort['proposals'] / len(picked):.1f} / {effort['conditioned'] / len(picked):.1f} "
                        "corrections per picked image (proposals / conditioned)"
                    )
                )
                log(
                    f"  {name} seed {seed}: {len(labelled)} labelled, test error {point['mean']:.2f} {unit}, "
                    f"{100 * point['over_4']:.1f} % > 4 {unit}{effort_text}"
                )
            result.curves.append({"strategy": name, "seed": seed, "points": curve})
            if checkpoint is not None:
                result.seconds["total"] = time.perf_counter() - started
                result.write(checkpoint)
    result.seconds["total"] = time.perf_counter() - started
    return result


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
    now = json.loads(json.dumps(asdict(result)))  # as it would be written: tuples as lists
    same = all(held.get(key) == now[key] for key in ("config", "test_images")) and (
        {k: v for k, v in held.get("campaign", {}).items() if k != "seeds"}
        == {k: v for k, v in now["campaign"].items() if k != "seeds"}
    )
    if not same:
        log(f"note: {checkpoint} holds another campaign; it is replaced")
        return set()
    result.curves = [c for c in held.get("curves", []) if c["seed"] in seeds]
    done = {(c["strategy"], c["seed"]) for c in result.curves}
    if done:
        log(f"resuming: {len(done)} finished curves taken from {checkpoint}")
    return done


def summarise(result: CampaignResult) -> dict[str, Any]:
    """Per strategy: mean (and SD over seeds) error at each budget, area under the curve, and
    how many labelled images it needs to reach the error random selection reaches at its final budget."""
    by_strategy: dict[str, list[list[dict[str, float]]]] = {}
    for curve in result.curves:
        by_strategy.setdefault(curve["strategy"], []).append(curve["points"])
    out: dict[str, Any] = {}
    for name, curves in by_strategy.items():
        budgets = [p["labelled"] for p in curves[0]]
        errors = np.array([[p["mean"] for p in c] for c in curves])  # (seeds, budgets)
        over4 = np.array([[p["over_4"] for p in c] for c in curves])
        mean = errors.mean(axis=0)
        b = np.asarray(budgets, dtype=float)
        area = float(((mean[1:] + mean[:-1]) / 2 * np.diff(b)).sum())  # trapezoids
        auc = area / (b[-1] - b[0]) if len(b) > 1 else float(mean[0])  # the curve's mean height
        out[name] = {
            "budgets": budgets,
            "mean": mean.tolist(),
            "sd": errors.std(axis=0).tolist(),
            "over_4": over4.mean(axis=0).tolist(),
            "auc": auc,
        }
        if all(p.get("effort") for c in curves for p in c):
            # landmarks placed to label the first k budgets' images, summed over rounds; mean (SD) over seeds
            totals = {m: np.cumsum([[p["effort"][m] for p in c] for c in curves], axis=1) for m in MODES}
            out[name]["corrections"] = {m: t.mean(axis=0).tolist() for m, t in totals.items()}
            out[name]["corrections_sd"] = {m: t.std(axis=0).tolist() for m, t in totals.items()}
        if all("test_effort" in p for c in curves for p in c):
            out[name]["test_effort"] = {
                m: np.mean([[p["test_effort"][m] for p in c] for c in curves], axis=0).tolist() for m in MODES
            }
    if "random" in out:
        target = out["random"]["mean"][-1]
        for s in out.values():
            s["labels_to_reach_random_final"] = _first_reaching(s["budgets"], s["mean"], target)
            reach = s["labels_to_reach_random_final"]
            final = out["random"]["budgets"][-1]
            s["saving_vs_random"] = None if reach is None else 1.0 - reach / final
    return out


def _first_reaching(budgets: list[int], errors: list[float], target: float) -> float | None:
    """The (interpolated) number of labelled images at which the curve first gets to ``target``."""
    for i, e in enumerate(errors):
        if e <= target:
            if i == 0:
                return float(budgets[0])
            b0, b1, e0, e1 = budgets[i - 1], budgets[i], errors[i - 1], errors[i]
            return float(b0 + (b1 - b0) * (e0 - target) / (e0 - e1)) if e0 != e1 else float(b1)
    return None


def plot(result: CampaignResult, summary: dict[str, Any], path: Path) -> bool:
    """Learning curves: mean point error and share of errors > 4 against labelled images, seeds shaded.

    matplotlib is optional (``pip install scn-annotator[plot]``): without it nothing is
    drawn and this returns False.
    """
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, s in summary.items():
        b = np.array(s["budgets"])
        m, sd = np.array(s["mean"]), np.array(s["sd"])
        (line,) = axes[0].plot(b, m, marker="o", label=name)
        axes[0].fill_between(b, m - sd, m + sd, color=line.get_color(), alpha=0.15)
        per_seed = np.array([[p["over_4"] for p in c["points"]] for c in result.curves if c["strategy"] == name])
        o, osd = 100 * per_seed.mean(0), 100 * per_seed.std(0)
        axes[1].plot(b, o, marker="o", color=line.get_color(), label=name)
        axes[1].fill_between(b, o - osd, o + osd, color=line.get_color(), alpha=0.15)
    axes[0].set_ylabel(f"mean point error ({result.unit})")
    axes[1].set_ylabel(f"errors > 4 {result.unit} (%)")
    for ax in axes:
        ax.set_xlabel("labelled images")
        ax.grid(alpha=0.3)
    axes[0].legend()
    seeds = len(result.campaign["seeds"])
    fig.suptitle(f"Active learning on {len(result.test_images)} held-out images ({seeds} seeds, mean ± SD)")
    fig.tight_layout()
    with atomic_open(path) as out:
        fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
    return True
