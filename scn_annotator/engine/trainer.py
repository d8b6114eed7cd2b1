"""The SCN's training loop: model selection, atomic model files, exact resume.

The loop is written for three callers with different needs: the CLI (a progress
bar), the background worker (progress and cancellation through the database) and
the tests (a few seconds on a tiny data set). Hence a progress callback, a
``should_stop`` callable, a time budget (:class:`~.time_plan.TimePlan`), and nothing
global: the seed, the random generator and the device are explicit, and the loop's
draws from torch's default generator (weight init, dropout) happen inside
``torch.random.fork_rng`` from a state the trainer keeps, so a CPU run is
repeatable and the caller's random numbers are left as they were.

Two files come out. ``out`` holds the best weights by validation error and is all
inference needs. ``<out>.state`` holds the last step with the optimizer, so that a
run stopped by the user, the time budget or a crash resumes where it was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import CheckpointError, ScnError
from .augment import augment_batch, random_generator
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import BACKGROUND, Normalisation, Sample
from .device import mixed_precision, training_layout
from .evaluation import error_unit, mean_error
from .heatmaps import GaussianTargets, heatmap_loss
from .implausible import set_aside, summary
from .inference import validation_errors
from .model_file import ModelFile, TrainingMetrics
from .network import SpatialConfigurationNet
from .objects import LandmarkObjects, ObjectLayout, uses_objects
from .rng import private_rng, seeded_rng
from .time_plan import TimePlan

if TYPE_CHECKING:
    from .level_training import LevelResult
    from .refiner_training import RefineResult

__all__ = [
    "TrainProgress",
    "TrainResult",
    "Trainer",
    "model_file",
    "optimiser_step",
    "state_path",
]


@dataclass
class TrainProgress:
    """What a progress bar, the worker or the GUI shows during training."""

    step: int
    total_steps: int
    loss: float
    sigma_mean: float
    elapsed: float
    images_per_second: float
    val_error: float | None = None
    best_val_error: float | None = None
    unit: str = "px"
    stage: str = "train"


@dataclass
class TrainResult:
    """How a run ended and where its files are."""

    steps: int
    best_step: int
    best_val_error: float | None
    unit: str
    seconds: float
    stopped: str  # "finished", "early-stopping", "time", "cancelled"
    checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    planned_steps: int = 0  # the steps the schedule was laid out for (fewer than asked when time was short)
    refine: RefineResult | None = None  # the local stage, when the config has one
    levels: LevelResult | None = None  # the check of a chain's ends, when the layout has a chain
    set_aside: list[str] = field(default_factory=list)  # labels out of line with their chain, left out

    def describe(self) -> str:
        """How many steps, how long, and why it stopped where it did; then the local stage's line."""
        text = f"trained {self.steps} steps in {self.seconds / 60:.1f} min ({self.stopped})"
        if self.stopped == "time" and self.planned_steps and self.steps >= self.planned_steps:
            text += f"; the schedule was fitted to the time limit: {self.planned_steps} steps, ending converged"
        if self.set_aside:
            text += "\n" + summary(self.set_aside)
        if self.levels is not None:
            text += "\n" + self.levels.describe()
        if self.refine is not None:
            text += "\n" + self.refine.describe()
        return text


def state_path(out: Path) -> Path:
    """Where the resumable training state of ``out`` lives."""
    return out.with_name(out.name + ".state")


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module, targets: GaussianTargets) -> torch.optim.Optimizer:
    # Weight decay on convolution weights only, as the original's L2 penalty; never on sigma.
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": [targets.sigma], "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise ScnError(f"unknown optimizer {cfg.optimizer!r}; choose adam or sgd")


def model_file(
    cfg: TrainConfig,
    names: Sequence[str],
    model: torch.nn.Module,
    targets: GaussianTargets,
    metrics: TrainingMetrics,
    objects: ObjectLayout | None = None,
) -> ModelFile:
    """The model file of ``model`` as it is now (weights copied to the CPU)."""
    return ModelFile(
        network=cfg.network_for(len(objects.objects) if objects is not None else len(names)),
        landmark_names=list(names),
        input_size=cfg.input_size,
        normalisation=Normalisation(*cfg.normalisation),
        weights={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        sigmas=targets.sigmas().detach().cpu().clone(),
        train_config=cfg,
        metrics=metrics,
        objects=objects,
    )


def optimiser_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    clip: tuple[list[torch.Tensor], float] | None = None,
) -> None:
    """Backward and step through the gradient scaler (fp16 on CUDA; a no-op scaler elsewhere)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(clip[0], clip[1])
    scaler.step(optimizer)
    scaler.update()


class _Batches:
    """Epochs of a seeded permutation, cut into batches; its state resumes exactly."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator) -> None:
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.order = torch.randperm(n, generator=gen, device=gen.device)
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch_size > self.n:
            fresh = torch.randperm(self.n, generator=self.gen, device=self.gen.device)
            self.order = torch.cat([self.order[self.cursor :], fresh])
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx


#: What ``<out>.state`` must hold to resume a run exactly.
_STATE_KEYS = (
    "model",
    "sigma",
    "optimizer",
    "generator",
    "torch_rng",
    "order",
    "cursor",
    "step",
    "best_step",
    "best_error",
    "stale",
    "history",
)


class Trainer:
    """One training run; :func:`train` is the way to use it."""

    def __init__(
        self,
        cfg: TrainConfig,
        train_samples: Sequence[Sample],
        val_samples: Sequence[Sample],
        names: Sequence[str],
        out: Path | None,
        device: torch.device,
        objects: LandmarkObjects | None = None,
    ) -> None:
        """``objects``: which landmarks belong together (default: from the names, when ``cfg.objects``)."""
        if not train_samples:
            raise ScnError("no training images: nothing to train on")
        if any(s.cache is None for s in train_samples):
            raise ValueError("training samples need a cache (build_samples with cache_factor)")
        for s in [*train_samples, *val_samples]:
            if s.points.shape[0] != len(names):
                raise ScnError(f"image {s.id} has {s.points.shape[0]} landmarks, the model {len(names)}")
        if objects is None or not cfg.objects:
            objects = LandmarkObjects.infer(names) if cfg.objects else LandmarkObjects.singles(names)
        #: Stage 1 of an object layout learns the objects' centres; the full samples stay for stage 2.
        self.objects: ObjectLayout | None = None
        grouped = uses_objects(objects, [s.transform.to_network(s.points) for s in train_samples])
        train_samples, val_samples, self.set_aside = set_aside(train_samples, val_samples, objects if grouped else None)
        self.member_samples, self.member_val_samples = list(train_samples), list(val_samples)
        if grouped:
            self.objects = ObjectLayout.fit(objects, [s.transform.to_network(s.points) for s in train_samples])
            train_samples = [s.of_objects(objects) for s in train_samples]
            val_samples = [s.of_objects(objects) for s in val_samples]
        self.channels = len(objects) if self.objects is not None else len(names)
        net_cfg = cfg.network_for(self.channels)
        if cfg.input_size[0] % net_cfg.size_multiple or cfg.input_size[1] % net_cfg.size_multiple:
            raise ScnError(f"input size {cfg.input_size} must be a multiple of {net_cfg.size_multiple}")
        self.cfg, self.names, self.out, self.device = cfg, list(names), out, device
        self.val_samples = list(val_samples)
        self.rng = seeded_rng(cfg.seed, device)
        self.layout = training_layout(device)
        with private_rng(self.rng, device):
            self.model = SpatialConfigurationNet(net_cfg).to(device, memory_format=self.layout)
        self.targets = GaussianTargets(self.channels, cfg.sigma, cfg.heatmap_scale, cfg.learn_sigma).to(device)
        self.optimizer = _make_optimizer(cfg, self.model, self.targets)
        self.amp_dtype = mixed_precision(device) if cfg.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.gen = random_generator(cfg.seed, device)
        self.caches = torch.stack([s.cache for s in train_samples])[:, None].to(device)
        self.cache_points = torch.stack([s.cache_points for s in train_samples]).to(device)
        self.cache_valid = torch.from_numpy(np.stack([s.valid for s in train_samples])).to(device)
        #: Every landmark in cache pixels, for stage 2 (the same as ``cache_points`` without objects).
        self.member_points, self.member_valid = self.cache_points, self.cache_valid
        if self.objects is not None:
            self.member_points = torch.stack([s.cache_points for s in self.member_samples]).to(device)
            self.member_valid = torch.from_numpy(np.stack([s.valid for s in self.member_samples])).to(device)
        self.batches = _Batches(len(train_samples), cfg.batch_size, self.gen)
        self.unit = error_unit([s.spacing for s in val_samples])
        self.step, self.best_step, self.best_error, self.stale = 0, 0, math.inf, 0
        #: the steps the schedule is laid out for: fewer when a time limit needs it (re-made by ``run``)
        self.plan = TimePlan(cfg.steps, warmup_steps=cfg.warmup_steps, schedule=cfg.schedule)
        self.history: list[dict[str, float]] = []

    # -- starting points ---------------------------------------------------------

    def warm_start(self, path: str | Path) -> None:
        """Start from another model's weights and sigmas (a fine-tuning round)."""
        start = ModelFile.load(path)
        if start.landmark_names != self.names:
            raise CheckpointError(f"{path}: its landmarks differ from this data set's")
        self._load_weights(path, start, "start from it")

    def _load_weights(self, path: Path, held: ModelFile, what: str) -> None:
        """Weights and sigmas from a model file; one clear line when they do not fit this network."""
        try:
            self.model.load_state_dict(held.weights)
            self.targets.sigma.data.copy_(held.sigmas.to(self.device))  # type: ignore[union-attr]
        except (RuntimeError, TypeError, AttributeError) as exc:
            net = held.network
            arch = (
                f"filters={net.filters}, sc_filters={net.sc_filters}, sc_kernel={net.sc_kernel}, spatial={net.spatial}"
            )
            mine = self.cfg.network_for(self.channels)
            raise CheckpointError(
                f"{path}: cannot {what}: it holds another network ({arch}) than the one "
                f"being trained (filters={mine.filters}, sc_filters={mine.sc_filters}, sc_kernel={mine.sc_kernel}, "
                f"spatial={mine.spatial})" + ("" if isinstance(exc, RuntimeError) else f" ({type(exc).__name__})")
            ) from None

    def resume(self) -> bool:
        """Continue from ``<out>.state``; False when there is none."""
        if self.out is None or not state_path(self.out).exists():
            return False
        path = state_path(self.out)
        state = load_checkpoint(path)
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise CheckpointError(
                f"{path}: not a resumable training state (it lacks {', '.join(missing)}); "
                "delete it to train from the start"
            )
        self._load_weights(path, ModelFile.from_payload(state, path), "resume from it")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.gen.set_state(state["generator"])
            self.rng["cpu"] = state["torch_rng"]
            self.batches.order = state["order"].to(self.device)
            self.batches.cursor = int(state["cursor"])
            self.step, self.best_step, self.stale = int(state["step"]), int(state["best_step"]), int(state["stale"])
            self.best_error = float(state["best_error"])
            self.history = list(state["history"])
            self.plan.total = int(state.get("planned_steps", self.cfg.steps))
        except (ValueError, TypeError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(
                f"{path}: the training state does not fit this run ({exc}); delete it to train from the start"
            ) from None
        return True

    # -- files -------------------------------------------------------------------

    def model_file(self) -> ModelFile:
        metrics = TrainingMetrics(
            step=self.best_step,
            val_error=self.best_error if math.isfinite(self.best_error) else None,
            unit=self.unit,
            train_images=self.batches.n,
            val_images=len(self.val_samples),
        )
        return model_file(self.cfg, self.names, self.model, self.targets, metrics, self.objects)

    def save_best(self) -> None:
        if self.out is not None:
            self.model_file().save(self.out)

    def save_state(self) -> None:
        """``<out>.state``: the model file of the last step, with what resuming exactly needs."""
        if self.out is None:
            return
        payload = self.model_file().to_payload()
        payload.update(
            optimizer=self.optimizer.state_dict(),
            generator=self.gen.get_state(),
            torch_rng=self.rng["cpu"],
            order=self.batches.order.cpu(),
            cursor=self.batches.cursor,
            step=self.step,
            best_step=self.best_step,
            best_error=self.best_error,
            stale=self.stale,
            history=self.history,
            planned_steps=self.plan.total,
        )
        save_checkpoint(state_path(self.out), payload)

    # -- the loop ----------------------------------------------------------------

    def train_step(self) -> float:
        """One optimisation step; returns the heatmap loss."""
        with private_rng(self.rng, self.device):  # dropout draws from torch's default generator
            return self._train_step()

    def _train_step(self) -> float:
        cfg = self.cfg
        idx = self.batches.next()
        images, points, valid = augment_batch(
            self.caches[idx],
            self.cache_points[idx],
            self.cache_valid[idx],
            cfg.input_size,
            cfg.augment,
            self.gen,
            BACKGROUND,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * self.plan.lr_factor(self.step)
        target = self.targets(points, valid, cfg.input_size)
        hints = self._random_hints(target, valid) if cfg.hint_rate > 0 else None
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            output = self.model(images.contiguous(memory_format=self.layout), hints)
        sigmas = self.targets.sigmas()
        heat, sig = heatmap_loss(output.heatmaps.float(), target, valid, sigmas, cfg.sigma_alpha)
        loss = heat + sig
        if not torch.isfinite(loss):
            raise ScnError(f"training diverged at step {self.step} (loss {loss.item()}); lower the learning rate")
        optimiser_step(
            loss, self.optimizer, self.scaler, ([*self.model.parameters(), self.targets.sigma], cfg.grad_clip)
        )
        self.step += 1
        return float(heat.detach())

    def _random_hints(self, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Hint channels for a batch: the targets (peak 1) of a random subset of each image's landmarks.

        Some images get none (so the net stays good without hints), the others a share
        drawn anew per image, so that at inference any subset of confirmed landmarks works.
        """
        b, n = valid.shape
        gen = self.gen
        hinted = torch.rand(b, 1, generator=gen, device=gen.device) < self.cfg.hint_rate
        share = torch.rand(b, 1, generator=gen, device=gen.device)
        chosen = (torch.rand(b, n, generator=gen, device=gen.device) < share) & hinted
        peak = target.detach().flatten(2).amax(dim=2).clamp(min=1e-12)  # (B, N)
        mask = (chosen.to(target.device) & valid).to(target.dtype)
        return target.detach() / peak[..., None, None] * mask[..., None, None]

    def validate(self) -> float:
        """Mean point error on the validation images (landmarks they lack are skipped); keeps the best."""
        errors, self.unit = validation_errors(self.model, self.val_samples, self.device)
        error = mean_error(errors)
        if error is None:  # no validation image has a landmark: nothing to select by
            return math.nan
        if error < self.best_error:
            self.best_error, self.best_step, self.stale = error, self.step, 0
            self.save_best()
        else:
            self.stale += 1
        return error

    def run(
        self,
        progress: Callable[[TrainProgress], None] | None,
        should_stop: Callable[[], bool] | None,
        max_minutes: float | None,
    ) -> TrainResult:
        """Train until the plan's last step, a stop, early stopping or the time limit (0 or None: none)."""
        max_minutes = max_minutes or None
        cfg = self.cfg
        timings = {"data_and_step": 0.0, "validation": 0.0}
        plan = self.plan = TimePlan(
            cfg.steps,
            warmup_steps=cfg.warmup_steps,
            schedule=cfg.schedule,
            max_minutes=max_minutes,
            first_step=self.step,
            total=self.plan.total,
        )
        stopped, loss = "finished", math.nan
        self.model.train()
        while self.step < plan.total:
            if should_stop is not None and should_stop():
                stopped = "cancelled"
                break
            if plan.out_of_time(self.step):
                stopped = "time"  # out of time before the pace was known; after that the plan ends the run
                break
            t0 = time.perf_counter()
            loss = self.train_step()
            t1 = time.perf_counter()
            timings["data_and_step"] += t1 - t0
            plan.replan(self.step)  # the schedule laid out for the time, so the run ends converged
            val_error = None
            if self.val_samples and (self.step % cfg.validate_every == 0 or self.step == plan.total):
                val_error = self.validate()
                self.history.append({"step": self.step, "val_error": val_error, "loss": loss})
                timings["validation"] += time.perf_counter() - t1
            if progress is not None:
                progress(self._progress(loss, val_error, timings["data_and_step"]))
            if cfg.patience and self.stale >= cfg.patience:
                stopped = "early-stopping"
                break
        if stopped == "finished" and plan.shortened:
            stopped = "time"  # the schedule was shortened to fit the time limit, and completed
        self._finish(loss)
        return TrainResult(
            steps=self.step,
            best_step=self.best_step,
            best_val_error=self.best_error if math.isfinite(self.best_error) else None,
            unit=self.unit,
            seconds=plan.elapsed,
            stopped=stopped,
            checkpoint=self.out,
            history=self.history,
            timings=timings,
            planned_steps=plan.total,
            set_aside=self.set_aside,
        )

    def _progress(self, loss: float, val_error: float | None, step_seconds: float) -> TrainProgress:
        done = self.step - self.plan.first_step
        return TrainProgress(
            step=self.step,
            total_steps=self.plan.total,
            loss=loss,
            sigma_mean=float(self.targets.sigmas().detach().mean()),
            elapsed=self.plan.elapsed,
            images_per_second=done * self.cfg.batch_size / max(step_seconds, 1e-9),
            val_error=val_error,
            best_val_error=self.best_error if math.isfinite(self.best_error) else None,
            unit=self.unit,
        )

    def _finish(self, loss: float) -> None:
        """The last steps compete too; without validation images the last step is the model."""
        last_validated = self.history[-1]["step"] if self.history else None
        if self.val_samples and last_validated != self.step:
            val_error = self.validate()
            self.history.append({"step": self.step, "val_error": val_error, "loss": loss})
        if not math.isfinite(self.best_error):  # no validation image with a landmark: keep the last step
            self.best_step = self.step
            self.save_best()
        self.save_state()
