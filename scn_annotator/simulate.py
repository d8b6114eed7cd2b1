"""Does choosing by disagreement save annotations? An active-learning campaign with an oracle.

A pool of labelled images stands in for an annotator: the campaign starts from
``initial`` images chosen at random, and in every round a strategy picks ``batch``
more, whose true landmarks are "annotated" at once; the model is fine-tuned on
the grown set (warm start, as the worker does) and evaluated on held-out test
images. Every strategy of a seed starts from the same random images and the same
first model, so the curves differ only by what the strategies chose.

Images are decoded once for the whole campaign; training, prediction and scoring
are the engine's own functions, so what is measured is what the app does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Normalisation, Sample, build_samples, labelled_images, match_images
from .errors import ScnError
from .evaluation import mean_error
from .geometry import SpacingRule
from .imageio import find_images, read_image
from .inference import Prediction, Predictor
from .labels import read_landmarks
from .scores import STRATEGIES, Scoring, mc_passes_for
from .training import TrainConfig, Trainer, fit_input_to_data, validation_errors

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


@dataclass
class CampaignResult:
    campaign: dict[str, Any]
    config: dict[str, Any]
    unit: str
    test_images: list[str]
    curves: list[dict[str, Any]] = field(default_factory=list)  # one per (strategy, seed)
    seconds: dict[str, float] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


def _predict(trainer: Trainer, samples: Sequence[Sample], scoring: Scoring) -> list[tuple[Prediction, float]]:
    """Predict and score the unlabelled pool exactly as the worker does: ``Predictor.predict`` and ``Scoring``.

    Each image keeps the spacing its sample was given (a spacing rule may have set it).
    """
    norm = Normalisation(*trainer.cfg.normalisation)
    predictor = Predictor(trainer.model, trainer.names, trainer.cfg.input_size, norm, trainer.device)
    (strategy,) = scoring.strategies or ["?"]
    out = []
    for s in samples:
        image = read_image(s.path)
        if s.spacing is not None:
            image = image.with_spacing(s.spacing, s.spacing_source)
        prediction = predictor.predict(image, heatmaps=True, mc_passes=scoring.mc_passes)
        out.append((prediction, scoring(prediction)[strategy][0]))
    return out


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
    table = read_landmarks(labels)
    pairs, _ = match_images(find_images(images), table)
    ids = sorted(i for _, i in pairs)
    if len(ids) < campaign.test + campaign.budget:
        raise ScnError(f"{len(ids)} labelled images; the campaign needs {campaign.test} + {campaign.budget}")
    order = np.random.default_rng(0).permutation(ids).tolist()
    test_ids, pool_ids = order[: campaign.test], order[campaign.test :]
    by_id = {i: p for p, i in pairs}
    started = time.perf_counter()
    items = labelled_images([(by_id[i], i) for i in test_ids + pool_ids], table)
    cfg = fit_input_to_data(cfg, items)
    notes: list[str] = []
    samples = build_samples(items, cfg.input_size, Normalisation(*cfg.normalisation), cfg.cache_factor, spacing_rule,
                            names=table.names, outside=outside, notes=notes)  # fmt: skip
    for line in notes:
        log(f"note: {line}")
    by_sample = dict(zip(test_ids + pool_ids, samples))
    test = [by_sample[i] for i in test_ids]
    unit = "mm" if all(s.spacing is not None for s in test) else "px"
    result = CampaignResult(asdict(campaign), cfg.to_dict(), unit, test_ids)
    result.seconds["loading"] = time.perf_counter() - started
    dev = torch.device(device) if device else None
    from .device import best_device

    dev = dev or best_device()

    def evaluate(trainer: Trainer) -> dict[str, float]:
        errors, _ = validation_errors(trainer.model, test, dev)
        errors = errors[~np.isnan(errors)]  # landmarks the test images lack are no error
        return {"mean": mean_error(errors), "median": float(np.median(errors)),
                "over_4": float((errors > 4).mean()), "over_10": float((errors > 10).mean())}  # fmt: skip

    def fit(labelled: list[str], steps: int, seed: int, init: dict | None) -> Trainer:
        run_cfg = cfg.replace(steps=steps, seed=seed, validate_every=10**9,
                              warmup_steps=min(cfg.warmup_steps, steps // 10))  # fmt: skip
        trainer = Trainer(run_cfg, [by_sample[i] for i in labelled], [], table.names, None, dev)
        if init is not None:
            trainer.model.load_state_dict(init["model"])
            trainer.targets.sigma.data.copy_(init["sigma"])
        t = time.perf_counter()
        trainer.run(None, None, None)
        result.seconds["training"] = result.seconds.get("training", 0.0) + time.perf_counter() - t
        return trainer

    def state(trainer: Trainer) -> dict:
        return {"model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                "sigma": trainer.targets.sigma.detach().clone()}  # fmt: skip

    for seed in campaign.seeds:
        rng = np.random.default_rng(1000 + seed)
        initial = rng.choice(pool_ids, campaign.initial, replace=False).tolist()
        log(f"seed {seed}: first model on {len(initial)} random images, {campaign.initial_steps} steps")
        first = fit(initial, campaign.initial_steps, seed, None)
        start_state, start_eval = state(first), evaluate(first)
        for name in campaign.strategies:
            labelled, model_state, curve = list(initial), start_state, [
                {"labelled": len(initial), **start_eval, "picked": list(initial)}]  # fmt: skip
            trainer = first
            for round_ in range(1, 10**6):
                if len(labelled) >= campaign.budget:
                    break
                unlabelled = [i for i in pool_ids if i not in labelled]
                t = time.perf_counter()
                mc = campaign.mc_passes if mc_passes_for([name]) else 0
                scoring = Scoring(mc_passes=mc, round=round_ + 100 * seed, strategies=[name])
                scored = _predict(trainer, [by_sample[i] for i in unlabelled], scoring)
                scores = {i: value for i, (_, value) in zip(unlabelled, scored)}
                features = (
                    {i: _features(p.points) for i, (p, _) in zip(unlabelled, scored)} if campaign.diversity else None
                )
                take = min(campaign.batch, campaign.budget - len(labelled))
                picked = select_batch(scores, take, features, campaign.diversity)
                result.seconds["scoring"] = result.seconds.get("scoring", 0.0) + time.perf_counter() - t
                labelled += picked
                trainer = fit(labelled, campaign.round_steps, seed * 1000 + round_, model_state)
                model_state = state(trainer)
                point = {"labelled": len(labelled), **evaluate(trainer), "picked": picked}
                curve.append(point)
                log(f"  {name} seed {seed}: {len(labelled)} labelled, test error {point['mean']:.2f} {unit}, "
                    f"{100 * point['over_4']:.1f} % > 4 {unit}")  # fmt: skip
            result.curves.append({"strategy": name, "seed": seed, "points": curve})
            if checkpoint is not None:
                result.seconds["total"] = time.perf_counter() - started
                result.write(checkpoint)
    result.seconds["total"] = time.perf_counter() - started
    return result


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
        out[name] = {"budgets": budgets, "mean": mean.tolist(), "sd": errors.std(axis=0).tolist(),
                     "over_4": over4.mean(axis=0).tolist(), "auc": auc}  # fmt: skip
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
