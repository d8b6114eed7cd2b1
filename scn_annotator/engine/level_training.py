"""Training a chain's level check in the same run as the SCN, and keeping it only where it helps.

Between stage 1 and stage 2 of a training run: the check learns from the training
images' network inputs and their labels' object centres (``levels.py``), in a share
of the run's minutes; then the validation images' centres are decoded with and
without it, and the model file gets the check unless the mean centre error rises by
more than ``TIE`` (a column one vertebra off is a large error, so that is what the mean
sees). A tie keeps it: on some twenty validation spines one column fixed or broken moves
the mean by about a tenth, so a change of a few hundredths is no evidence either way,
while on held-out test spines the check helped in every run measured both ways (real
spines: stop 31's two seeds, 23.7 -> 21.5 and 26.2 -> 24.2 % of vertebrae on a neighbour;
seed 0 of stop 39, whose validation went 6.97 -> 7.02 px, a tie the strict rule refused,
27.1 -> 23.8 %; benchmarks/RESULTS.md). The trainer's layout takes it too, so that stage 2 is trained
and judged on the centres prediction will give it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .after_training import selected_model
from .config import LevelCheckConfig
from .inference import predict_samples
from .levels import train_level_check
from .model_file import ModelFile
from .objects import ObjectLayout
from .trainer import Trainer

__all__ = ["TIE", "LevelResult", "keeps_check", "level_config", "train_levels"]

#: A validation centre error this much higher with the check than without it still keeps the check.
TIE = 0.02


@dataclass(frozen=True)
class LevelResult:
    """What the level check did on the validation images (mean centre error, network px)."""

    steps: int
    seconds: float
    kept: bool
    val_error_without: float | None
    val_error_with: float | None
    accuracy: float | None  # on the validation images' true ends and their neighbours

    def describe(self) -> str:
        verdict = "kept" if self.kept else "not kept"
        errors = ""
        if self.val_error_without is not None and self.val_error_with is not None:
            errors = f": validation centres {self.val_error_without:.2f} -> {self.val_error_with:.2f} px"
        named = f", {100 * self.accuracy:.0f} % of ends named right" if self.accuracy is not None else ""
        return f"level check ({self.steps} steps, {self.seconds / 60:.1f} min){errors}{named}; {verdict}"


def level_config(trainer: Trainer) -> LevelCheckConfig | None:
    """The check ``trainer``'s run trains: its config's, where the layout is a chain of four or more objects."""
    layout = trainer.objects
    if layout is None or layout.chain is None or len(layout.objects) < 4:
        return None
    return trainer.cfg.level_check


def train_levels(
    trainer: Trainer,
    *,
    should_stop: Callable[[], bool] | None = None,
    max_minutes: float | None = None,
) -> LevelResult | None:
    """Train the check of ``trainer``'s chain; None where its layout has no chain or its config no check."""
    cfg, layout = level_config(trainer), trainer.objects
    if cfg is None or layout is None:
        return None
    start = time.perf_counter()
    deadline = None if max_minutes is None else start + 60 * max_minutes

    def stop() -> bool:
        return (should_stop is not None and should_stop()) or (deadline is not None and time.perf_counter() > deadline)

    steps = min(cfg.steps, max(20, round(cfg.per_step * trainer.plan.total)))
    train_inputs = [s.input.cpu() for s in trainer.member_samples]
    train_centres = [layout.objects.centres(s.transform.to_network(s.points)) for s in trainer.member_samples]
    val = trainer.member_val_samples
    val_inputs = [s.input.cpu() for s in val]
    val_centres = [layout.objects.centres(s.transform.to_network(s.points)) for s in val]
    check = train_level_check(
        train_inputs,
        train_centres,
        cfg,
        val_images=val_inputs,
        val_centres=val_centres,
        generator=np.random.default_rng(trainer.cfg.seed + 2),
        should_stop=stop,
        steps=steps,
    )
    if check is None:
        return None
    check.to(trainer.device)
    selected = ModelFile.load(trainer.out) if trainer.out is not None and trainer.out.exists() else None
    model = selected_model(trainer, selected)
    with_check = dataclasses.replace(layout, levels=check)
    without = _centre_error(model, trainer, layout)
    with_it = _centre_error(model, trainer, with_check)
    kept = keeps_check(without, with_it)
    if kept:
        trainer.objects = with_check
        if selected is not None and trainer.out is not None:
            selected.objects = with_check
            selected.save(trainer.out)
    return LevelResult(steps, time.perf_counter() - start, kept, without, with_it, check.accuracy)


def keeps_check(without: float | None, with_it: float | None) -> bool:
    """Whether a check whose validation centre error is ``with_it`` (``without`` it) is kept: unless worse by
    more than ``TIE``, or unmeasured."""
    return with_it is not None and without is not None and with_it <= without * (1 + TIE)


def _centre_error(model: torch.nn.Module, trainer: Trainer, layout: ObjectLayout) -> float | None:
    """The mean distance of the validation images' decoded centres from their labels' (network px)."""
    samples = trainer.member_val_samples
    if not samples:
        return None
    predicted = predict_samples(model, samples, trainer.device, objects=layout, as_centres=True)
    errors = []
    for sample, centres in zip(samples, predicted):
        truth = layout.objects.centres(sample.transform.to_network(sample.points))
        errors.append(np.linalg.norm(sample.transform.to_network(centres) - truth, axis=1))
    stacked = np.concatenate(errors)
    stacked = stacked[~np.isnan(stacked)]
    return float(stacked.mean()) if stacked.size else None
