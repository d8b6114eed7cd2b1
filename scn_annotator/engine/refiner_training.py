"""Training the local refinement stage on the coarse run's caches, and keeping it only if it helps.

It runs after the SCN's loop, in what is left of the same time budget, on the
caches already on the device (no second copy: on a GPU they are the largest
memory there is). Its schedule is fitted to the time by the same
:class:`~.time_plan.TimePlan` as the coarse loop's, and its random numbers come
from its own seed (``seed + 1``) without touching the caller's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .after_training import selected_model
from .augment import random_generator
from .config import RefineConfig
from .data import cache_size
from .evaluation import cobb_report, mean_error
from .inference import predict_samples, sample_errors
from .measurements import spine_corners
from .model_file import LocalStage, ModelFile
from .refinement import Refiner, object_patch_size, random_object_patches, random_patches, within_reach
from .rng import private_rng, seeded_rng
from .time_plan import TimePlan
from .trainer import Trainer, TrainProgress, optimiser_step

__all__ = [
    "RefineResult",
    "train_refiner",
]


@dataclass
class RefineResult:
    """How the local refinement stage went, and whether the model keeps it."""

    steps: int
    seconds: float
    kept: bool
    val_error_coarse: float | None
    val_error_refined: float | None
    unit: str
    refiner: Refiner | None = field(default=None, repr=False)

    def describe(self) -> str:
        text = f"local refinement: {self.steps} steps in {self.seconds / 60:.1f} min"
        if self.val_error_coarse is None or self.val_error_refined is None:
            return text + "; kept (no validation image to compare on)"
        compare = f"validation {self.val_error_coarse:.2f} -> {self.val_error_refined:.2f} {self.unit}"
        return text + (f"; kept ({compare})" if self.kept else f"; not kept, it did not help ({compare})")


def train_refiner(
    trainer: Trainer,
    init_from: str | Path | None = None,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_minutes: float | None = None,
) -> RefineResult:
    """Train ``trainer``'s local refinement stage on its caches; keep it if it helps on validation.

    The coarse model compared against is the selected (best) one; the refiner goes
    into the same model file, with both validation errors in its metrics.
    """
    cfg, device, rc = trainer.cfg, trainer.device, trainer.cfg.refine
    assert rc is not None
    if trainer.objects is not None:  # stage 2: a crop that holds a whole object
        rc = rc.replace(patch=object_patch_size(trainer.objects, cfg.cache_factor, rc))
    rng = seeded_rng(cfg.seed + 1, device)
    with private_rng(rng, device):
        refiner = Refiner(rc, len(trainer.names)).to(device, memory_format=trainer.layout)
    if init_from is not None:
        _warm_start(refiner, rc, ModelFile.load(init_from))
    asked = min(rc.steps, max(10, round(rc.per_step * trainer.plan.total)))  # in proportion to the coarse run
    plan = TimePlan(asked, warmup_steps=min(50, asked // 10), schedule="cosine", max_minutes=max_minutes)
    with private_rng(rng, device):
        step = _loop(trainer, refiner, rc, plan, progress, should_stop)
    refiner.eval()
    selected = ModelFile.load(trainer.out) if trainer.out is not None and trainer.out.exists() else None
    coarse_error, refined_error = _compare_refinement(trainer, refiner, selected)
    kept = coarse_error is None or refined_error is None or refined_error < coarse_error
    result = RefineResult(step, plan.elapsed, kept, coarse_error, refined_error, trainer.unit, refiner)
    if kept and selected is not None and trainer.out is not None:
        selected.local_stage = LocalStage(
            refiner.config,  # with what validation chose (an object's own turn or the chain's)
            cache_size(cfg.input_size, cfg.cache_factor),
            {k: v.detach().cpu().contiguous() for k, v in refiner.state_dict().items()},
        )
        selected.metrics = selected.metrics.replace(
            val_error_coarse=coarse_error, val_error=refined_error if refined_error is not None else coarse_error
        )
        selected.save(trainer.out)
    return result


def _warm_start(refiner: Refiner, rc: RefineConfig, start: ModelFile) -> None:
    """The previous round's local stage, when it has the same config (another landmark count: afresh)."""
    held = start.local_stage
    if held is not None and held.config.replace(object_turn=rc.object_turn) == rc:  # validation's choice aside
        with contextlib.suppress(RuntimeError):
            refiner.load_state_dict(held.weights)


def _loop(
    trainer: Trainer,
    refiner: Refiner,
    rc: RefineConfig,
    plan: TimePlan,
    progress: Callable[[TrainProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> int:
    device = trainer.device
    caches, points, valid = list(trainer.caches[:, 0]), list(trainer.member_points), list(trainer.member_valid)
    scale = trainer.cfg.cache_factor  # cache px per network px
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=rc.lr, weight_decay=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=trainer.amp_dtype == torch.float16)
    gen = random_generator(trainer.cfg.seed + 1, device)
    step = 0
    while step < plan.total:
        if (should_stop is not None and should_stop()) or plan.out_of_time(step):
            break
        if trainer.objects is None:
            patches, landmarks, target = random_patches(caches, points, valid, rc, gen)
            real = torch.ones_like(landmarks, dtype=torch.bool)
        else:
            patches, landmarks, target, real = random_object_patches(
                caches, points, valid, trainer.objects.objects, rc, gen, rc.object_reach * trainer.objects.gap * scale
            )
        for group in optimizer.param_groups:
            group["lr"] = rc.lr * plan.lr_factor(step)
        with torch.autocast(device.type, dtype=trainer.amp_dtype, enabled=trainer.amp_dtype is not None):
            heat = refiner(patches.contiguous(memory_format=trainer.layout), landmarks)
        squared = (heat.float() - target) ** 2
        if trainer.objects is not None:  # only where inference looks for each member
            layout, scale = trainer.objects, trainer.cfg.cache_factor
            offsets = scale * layout.template[landmarks.cpu().numpy()]
            inside = within_reach(rc.patch, offsets, 0.5 * scale * layout.gap, device) if layout.gap > 0 else True
            squared = squared * (real[..., None, None] & inside)
        loss = 0.5 * squared.sum() / real.sum()
        optimiser_step(loss, optimizer, scaler)
        step += 1
        plan.replan(step)
        if progress is not None:
            elapsed = plan.elapsed
            progress(
                TrainProgress(
                    step=step,
                    total_steps=plan.total,
                    loss=float(loss.detach()),
                    sigma_mean=rc.sigma,
                    elapsed=elapsed,
                    images_per_second=step * landmarks.numel() / max(elapsed, 1e-9),
                    unit=trainer.unit,
                    stage="refine",
                )
            )
    return step


def _compare_refinement(
    trainer: Trainer, refiner: Refiner, selected: ModelFile | None
) -> tuple[float | None, float | None]:
    """Mean validation error of the selected coarse model, without and with ``refiner``.

    ``selected`` is the model file of the selected step (None without an output file: the last step).
    """
    samples = [s for s in trainer.member_val_samples if s.cache is not None and s.cache_transform is not None]
    if not samples:
        return None, None
    model = selected_model(trainer, selected)
    layout = trainer.objects
    if layout is None:
        coarse = predict_samples(model, samples, trainer.device)
        refined = [
            refiner.refine_image(s.cache, s.cache_transform, points)  # type: ignore[arg-type]
            for s, points in zip(samples, coarse)
        ]
    else:  # one network pass: the centres, and the template on them
        centres = predict_samples(model, samples, trainer.device, objects=layout, as_centres=True)
        coarse = [s.transform.from_network(layout.place(s.transform.to_network(c))) for s, c in zip(samples, centres)]
        scale = trainer.cfg.cache_factor
        errors, judged = {}, {}
        for turn in (False, True):  # does a found object's own turn beat the chain's? (the config keeps the answer)
            refiner.config = refiner.config.replace(object_turn=turn)
            refined = [
                refiner.place_image(s.cache, s.cache_transform, layout, scale, c, template)  # type: ignore[arg-type]
                for s, c, template in zip(samples, centres, coarse)
            ]
            errors[turn] = mean_error(sample_errors(samples, refined)[0])
            judged[turn] = _turn_judgement(trainer.names, samples, refined, errors[turn])
        best = min(judged, key=lambda k: math.inf if judged[k] is None else judged[k])  # type: ignore[arg-type]
        refiner.config = refiner.config.replace(object_turn=best)
        return mean_error(sample_errors(samples, coarse)[0]), errors[best]
    return mean_error(sample_errors(samples, coarse)[0]), mean_error(sample_errors(samples, refined)[0])


def _turn_judgement(
    names: list[str], samples: list, refined: list[np.ndarray], point_error: float | None
) -> float | None:
    """What the turn of the shape fit is chosen by: a spine's Cobb SMAPE, any other layout's point error.

    A vertebra's own turn, from its four corners found one by one, follows each corner's
    error; the chain's tilt is smoother. On real spines the own turn lowered the point
    error a little and cost Cobb SMAPE (15.2 -> 16.9 % on 82 test spines): the angles are
    what a spine's landmarks are for.
    """
    order = spine_corners(names)
    if order is None:
        return point_error
    truth = {s.id: s.points for s in samples}
    report = cobb_report(dict(zip(truth, refined)), truth, {s.id: s.transform.image_size[1] for s in samples}, order)
    return report.smape if report.image_ids else point_error
