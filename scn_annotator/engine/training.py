"""Training an SCN: presets, the loop, model selection, atomic checkpoints, resume.

The loop is written for three callers with different needs: the CLI (a progress
bar), the background worker (progress and cancellation through the database) and
the tests (a few seconds on a tiny data set). Hence a progress callback, a
``should_stop`` callable, a time budget, and nothing global: the seed, the random
generator and the device are all explicit, so a CPU run is repeatable.

Two files come out. ``out`` holds the best weights by validation error and is all
inference needs. ``<out>.state`` holds the last step with the optimizer, so that a
run stopped by the user, the time budget or a crash resumes where it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import CheckpointError, ScnError
from ..io.images import read_image_info
from .augment import AugmentConfig, augment_batch, random_generator
from .checkpoint import load_checkpoint, save_checkpoint
from .data import BACKGROUND, LabelledImage, Normalisation, Sample, cache_size
from .device import best_device, mixed_precision, training_layout
from .evaluation import mean_error, point_errors
from .geometry import choose_input_size
from .heatmaps import GaussianTargets, decode_peaks, heatmap_loss
from .network import SCNConfig, SpatialConfigurationNet
from .refinement import RefineConfig, Refiner, random_patches

__all__ = [
    "PRESETS",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "RefineResult",
    "auto_preset",
    "predict_samples",
    "train_refiner",
    "preset",
    "state_path",
    "train",
    "validation_errors",
]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run learns."""

    input_size: tuple[int, int] = (256, 192)  # (height, width)
    filters: int = 128
    levels: int = 4
    dropout: float = 0.5
    dropout_mode: str = "element"
    spatial: bool = True  # False: the U-Net baseline (LA alone)
    sc_filters: int = 128
    sc_kernel: int = 11
    sc_downsample: int = 16
    heatmap_init_std: float = 1e-4
    sigma: float = 2.5  # initial sigma, network pixels
    learn_sigma: bool = True
    heatmap_scale: float = 100.0
    sigma_alpha: float = 100.0
    optimizer: str = "adam"  # "adam" or "sgd" (Nesterov)
    lr: float = 1e-3
    momentum: float = 0.99
    weight_decay: float = 1e-3
    grad_clip: float = 1e4
    steps: int = 2000
    batch_size: int = 4
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" or "constant"
    validate_every: int = 100
    patience: int = 0  # validations without improvement before stopping; 0: never
    cache_factor: float = 2.0
    normalisation: tuple[float, float] = (0.5, 99.5)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    amp: bool = True  # mixed precision: fp16 on CUDA, bf16 on CPUs that have it (device.mixed_precision)
    #: Choose the input's aspect and size from the training images and landmarks (``fit_input_to_data``),
    #: growing the area at most this many times; 0 keeps ``input_size`` as given.
    auto_input_growth: float = 0.0
    input_rule: dict[str, Any] | None = None  # how the input size was chosen, when it was
    #: The local stage that re-finds each landmark at the cache's resolution (``refine.py``); None: none.
    refine: RefineConfig | None = None
    #: Train the SC component with hint channels (confirmed landmarks): each image gets hints with this
    #: probability, each landmark then with a random share in (0, 1) (hint dropout); 0: no hint channels.
    hint_rate: float = 0.0

    def network(self, num_landmarks: int) -> SCNConfig:
        return SCNConfig(
            num_landmarks=num_landmarks,
            filters=self.filters,
            levels=self.levels,
            dropout=self.dropout,
            dropout_mode=self.dropout_mode,
            spatial=self.spatial,
            sc_filters=self.sc_filters,
            sc_kernel=self.sc_kernel,
            sc_downsample=self.sc_downsample,
            heatmap_init_std=self.heatmap_init_std,
            hint_channels=self.hint_rate > 0,
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if isinstance(known.get("augment"), dict):
            known["augment"] = AugmentConfig.from_dict(known["augment"])
        if isinstance(known.get("refine"), dict):
            known["refine"] = RefineConfig.from_dict(known["refine"])
        for key in ("input_size", "normalisation"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


#: ``paper``: the published settings, for a GPU. ``cpu``: a useful model in minutes on
#: two cores, chosen by measurement on the hand radiographs (benchmarks/RESULTS.md).
#: ``gpu``: the cpu preset's recipe at four times the area and twice the filters, from
#: a measurement on an H100 (benchmarks/RESULTS.md); ``auto`` picks cpu or gpu.
PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(
        input_size=(512, 512),
        filters=128,
        sc_filters=128,
        optimizer="sgd",
        lr=1e-6,
        momentum=0.99,
        weight_decay=1e-3,
        steps=30_000,
        batch_size=1,
        warmup_steps=0,
        schedule="constant",
        validate_every=1000,
        cache_factor=1.5,
    ),
    # Each choice below was measured on the hand radiographs (benchmarks/RESULTS.md):
    # 256 x 192 with 32 filters is ~0.65 s per step of 4 on two cores; channel dropout
    # is 10x cheaper than element dropout; heatmap heads initialised at 1e-3 leave the
    # "everything is zero" plateau in half the steps; and with only ~2,800 steps milder
    # augmentation than the paper's (tuned for 30,000+) converges faster and further.
    "cpu": TrainConfig(
        input_size=(256, 192),
        filters=32,
        sc_filters=32,
        dropout_mode="channel",
        heatmap_init_std=1e-3,
        optimizer="adam",
        lr=1e-3,
        weight_decay=1e-5,
        steps=2800,
        batch_size=4,
        warmup_steps=100,
        validate_every=100,
        augment=AugmentConfig(translate=0.05, rotate=0.15, scale=(0.9, 1.1), scale_axis=(0.95, 1.05), elastic=0.02),
        auto_input_growth=1.0,  # aspect of the data, area of the preset: 1.46x area cost hands 0.8 mm in 30 CPU-min
        refine=RefineConfig(),  # hands: median 0.62 -> 0.56 mm, mean 1.07 -> 1.03 mm for 1.7 more minutes
        hint_rate=0.5,  # trained conditioning: spines 45.4 -> 34.0 corrections per image (oracle, 1 %)
    ),
}
# Not yet measured on a GPU by this project: chosen from the H100 figures of issue 14 (``--preset cpu
# --input-size 512x384 --filters 64 --steps 6000``: 0.73 mm, 94 % within 2 mm in ~7 minutes); the
# input keeps that area and takes the data's aspect.
PRESETS["gpu"] = PRESETS["cpu"].replace(
    input_size=(512, 384), filters=64, sc_filters=64, steps=6000, validate_every=250
)


def auto_preset(device: torch.device | str | None = None) -> str:
    """``gpu`` where CUDA or Apple's MPS computes, ``cpu`` otherwise: what ``--preset auto`` means."""
    device = torch.device(device) if device is not None else best_device()
    return "gpu" if device.type in ("cuda", "mps") else "cpu"


def preset(name: str, **changes: Any) -> TrainConfig:
    """A preset by name (``auto``: the one for this machine's device), with ``changes`` applied."""
    if name == "auto":
        name = auto_preset()
    try:
        base = PRESETS[name]
    except KeyError:
        raise ScnError(f"unknown preset {name!r}; choose auto or one of {', '.join(PRESETS)}") from None
    return base.replace(**changes) if changes else base


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

    def describe(self) -> str:
        """How many steps, how long, and why it stopped where it did; then the local stage's line."""
        text = f"trained {self.steps} steps in {self.seconds / 60:.1f} min ({self.stopped})"
        if self.stopped == "time" and self.planned_steps and self.steps >= self.planned_steps:
            text += f"; the schedule was fitted to the time limit: {self.planned_steps} steps, ending converged"
        if self.refine is not None:
            text += "\n" + self.refine.describe()
        return text


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


def state_path(out: Path) -> Path:
    """Where the resumable training state of ``out`` lives."""
    return out.with_name(out.name + ".state")


def _lr_factor(cfg: TrainConfig, step: int, total: int | None = None) -> float:
    """Warm-up, then cosine decay to 1 % at ``total`` (the planned steps; ``cfg.steps`` by default)."""
    total = cfg.steps if total is None else total
    warmup = min(cfg.warmup_steps, max(0, total // 10)) if total < cfg.steps else cfg.warmup_steps
    if warmup and step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


#: Steps measured before a time limit lays out the schedule; from then on it is re-planned after every step.
_PLAN_AFTER = 10


def _planned_total(cfg: TrainConfig, step: int, first_step: int, elapsed: float, left: float) -> int:
    """The steps that fit the time left at the pace so far (validation included), never more than asked.

    ``step`` itself when no further step fits: the run ends there.
    """
    done = step - first_step
    per_step = elapsed / max(done, 1)
    return min(cfg.steps, step + max(0, int(left / max(per_step, 1e-9))))


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


def predict_samples(
    model: SpatialConfigurationNet,
    samples: Sequence[Sample],
    device: torch.device,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """The coarse SCN's points (N, 2) of every sample, in its original pixels."""
    predicted = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            inputs = torch.stack([s.input for s in chunk])[:, None].to(device)
            points, _ = decode_peaks(model(inputs).heatmaps.float())
            for sample, pts in zip(chunk, points.cpu().double().numpy()):
                predicted.append(sample.transform.from_network(pts))
    model.train(was_training)
    return predicted


def _sample_errors(samples: Sequence[Sample], predicted: Sequence[np.ndarray]) -> tuple[np.ndarray, str]:
    unit = "mm" if all(s.spacing is not None for s in samples) else "px"
    errors = [point_errors(p, s.points, s.spacing if unit == "mm" else None) for s, p in zip(samples, predicted)]
    return np.array(errors), unit


def validation_errors(
    model: SpatialConfigurationNet,
    samples: Sequence[Sample],
    device: torch.device,
    batch_size: int = 8,
) -> tuple[np.ndarray, str]:
    """Point errors (images, landmarks) on ``samples``, in mm when every spacing is known."""
    return _sample_errors(samples, predict_samples(model, samples, device, batch_size))


def _checkpoint_payload(
    cfg: TrainConfig,
    names: Sequence[str],
    model: torch.nn.Module,
    targets: GaussianTargets,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    return {
        "network": cfg.network(len(names)).to_dict(),
        "train_config": cfg.to_dict(),
        "landmark_names": list(names),
        "input_size": list(cfg.input_size),
        "normalisation": Normalisation(*cfg.normalisation).to_dict(),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "sigma": targets.sigmas().detach().cpu().clone(),
        "metrics": metrics,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
    }


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
    ) -> None:
        if not train_samples:
            raise ScnError("no training images: nothing to train on")
        if any(s.cache is None for s in train_samples):
            raise ValueError("training samples need a cache (build_samples with cache_factor)")
        for s in [*train_samples, *val_samples]:
            if s.points.shape[0] != len(names):
                raise ScnError(f"image {s.id} has {s.points.shape[0]} landmarks, the model {len(names)}")
        net_cfg = cfg.network(len(names))
        if cfg.input_size[0] % net_cfg.size_multiple or cfg.input_size[1] % net_cfg.size_multiple:
            raise ScnError(f"input size {cfg.input_size} must be a multiple of {net_cfg.size_multiple}")
        self.cfg, self.names, self.out, self.device = cfg, list(names), out, device
        self.val_samples = list(val_samples)
        torch.manual_seed(cfg.seed)
        self.layout = training_layout(device)
        self.model = SpatialConfigurationNet(net_cfg).to(device, memory_format=self.layout)
        self.targets = GaussianTargets(len(names), cfg.sigma, cfg.heatmap_scale, cfg.learn_sigma).to(device)
        self.optimizer = _make_optimizer(cfg, self.model, self.targets)
        self.amp_dtype = mixed_precision(device) if cfg.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.gen = random_generator(cfg.seed, device)
        self.caches = torch.stack([s.cache for s in train_samples])[:, None].to(device)
        self.cache_points = torch.stack([s.cache_points for s in train_samples]).to(device)
        self.cache_valid = torch.from_numpy(np.stack([s.valid for s in train_samples])).to(device)
        self.batches = _Batches(len(train_samples), cfg.batch_size, self.gen)
        self.unit = "mm" if val_samples and all(s.spacing is not None for s in val_samples) else "px"
        self.step, self.best_step, self.best_error, self.stale = 0, 0, math.inf, 0
        self.total = cfg.steps  # the steps the schedule is laid out for: fewer when a time limit needs it
        self.history: list[dict[str, float]] = []

    # -- starting points ---------------------------------------------------------

    def warm_start(self, path: str | Path) -> None:
        """Start from another model's weights and sigmas (a fine-tuning round)."""
        start = load_checkpoint(path)
        if list(start.get("landmark_names", [])) != self.names:
            raise CheckpointError(f"{path}: its landmarks differ from this data set's")
        self._load_weights(path, start, "start from it")

    def _load_weights(self, path: Path, payload: dict[str, Any], what: str) -> None:
        """Weights and sigmas from a checkpoint payload; one clear line when they do not fit this network."""
        try:
            self.model.load_state_dict(payload["model"])
            self.targets.sigma.data.copy_(payload["sigma"].to(self.device))
        except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
            held = payload.get("network") if isinstance(payload, dict) else None
            arch = ", ".join(
                f"{k}={held[k]}"
                for k in ("filters", "sc_filters", "sc_kernel", "spatial")
                if isinstance(held, dict) and k in held
            )
            mine = self.cfg.network(len(self.names))
            raise CheckpointError(
                f"{path}: cannot {what}: it holds another network ({arch or 'unknown architecture'}) than the one "
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
        self._load_weights(path, state, "resume from it")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            self.batches.order = state["order"].to(self.device)
            self.batches.cursor = int(state["cursor"])
            self.step, self.best_step, self.stale = int(state["step"]), int(state["best_step"]), int(state["stale"])
            self.best_error = float(state["best_error"])
            self.history = list(state["history"])
            self.total = int(state.get("planned_steps", self.cfg.steps))
        except (ValueError, TypeError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(
                f"{path}: the training state does not fit this run ({exc}); delete it to train from the start"
            ) from None
        return True

    # -- files -------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        metrics = {
            "step": self.best_step,
            "val_error": self.best_error if math.isfinite(self.best_error) else None,
            "unit": self.unit,
            "train_images": self.batches.n,
            "val_images": len(self.val_samples),
        }
        return _checkpoint_payload(self.cfg, self.names, self.model, self.targets, metrics)

    def save_best(self) -> None:
        if self.out is not None:
            save_checkpoint(self.out, self._payload())

    def save_state(self) -> None:
        if self.out is None:
            return
        payload = self._payload()
        payload.update(
            optimizer=self.optimizer.state_dict(),
            generator=self.gen.get_state(),
            torch_rng=torch.get_rng_state(),
            order=self.batches.order.cpu(),
            cursor=self.batches.cursor,
            step=self.step,
            best_step=self.best_step,
            best_error=self.best_error,
            stale=self.stale,
            history=self.history,
            planned_steps=self.total,
        )
        save_checkpoint(state_path(self.out), payload)

    # -- the loop ----------------------------------------------------------------

    def train_step(self) -> float:
        """One optimisation step; returns the heatmap loss."""
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
            group["lr"] = cfg.lr * _lr_factor(cfg, self.step, self.total)
        target = self.targets(points, valid, cfg.input_size)
        hints = self._random_hints(target, valid) if cfg.hint_rate > 0 else None
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            output = self.model(images.contiguous(memory_format=self.layout), hints)
        sigmas = self.targets.sigmas()
        heat, sig = heatmap_loss(output.heatmaps.float(), target, valid, sigmas, cfg.sigma_alpha)
        loss = heat + sig
        if not torch.isfinite(loss):
            raise ScnError(f"training diverged at step {self.step} (loss {loss.item()}); lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_([*self.model.parameters(), self.targets.sigma], cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
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
        cfg = self.cfg
        timings = {"data_and_step": 0.0, "validation": 0.0}
        first_step, started = self.step, time.perf_counter()
        deadline = started + max_minutes * 60 if max_minutes else math.inf
        stopped, loss = "finished", math.nan
        self.model.train()
        while self.step < self.total:
            if should_stop is not None and should_stop():
                stopped = "cancelled"
                break
            if time.perf_counter() > deadline and self.step - first_step < _PLAN_AFTER:
                stopped = "time"  # out of time before the pace was known; after that the plan ends the run
                break
            t0 = time.perf_counter()
            loss = self.train_step()
            t1 = time.perf_counter()
            timings["data_and_step"] += t1 - t0
            done = self.step - first_step
            if max_minutes and done >= _PLAN_AFTER:
                # lay the schedule out for the time, not the step count: the run ends converged when no
                # further step fits, however the pace changes on the way
                now = time.perf_counter()
                self.total = _planned_total(cfg, self.step, first_step, now - started, deadline - now)
            val_error = None
            if self.val_samples and (self.step % cfg.validate_every == 0 or self.step == self.total):
                val_error = self.validate()
                self.history.append({"step": self.step, "val_error": val_error, "loss": loss})
                timings["validation"] += time.perf_counter() - t1
            if progress is not None:
                progress(
                    TrainProgress(
                        step=self.step,
                        total_steps=self.total,
                        loss=loss,
                        sigma_mean=float(self.targets.sigmas().detach().mean()),
                        elapsed=time.perf_counter() - started,
                        images_per_second=(self.step - first_step)
                        * cfg.batch_size
                        / max(timings["data_and_step"], 1e-9),
                        val_error=val_error,
                        best_val_error=self.best_error if math.isfinite(self.best_error) else None,
                        unit=self.unit,
                    )
                )
            if cfg.patience and self.stale >= cfg.patience:
                stopped = "early-stopping"
                break
        if stopped == "finished" and self.total < cfg.steps:
            stopped = "time"  # the schedule was shortened to fit the time limit, and completed
        last_validated = self.history[-1]["step"] if self.history else None
        if self.val_samples and last_validated != self.step:
            # the last steps (all of them, when time ran out before the first validation) compete too
            val_error = self.validate()
            self.history.append({"step": self.step, "val_error": val_error, "loss": loss})
        if not math.isfinite(self.best_error):  # no validation image with a landmark: keep the last step
            self.best_step = self.step
            self.save_best()
        self.save_state()
        return TrainResult(
            steps=self.step,
            best_step=self.best_step,
            best_val_error=self.best_error if math.isfinite(self.best_error) else None,
            unit=self.unit,
            seconds=time.perf_counter() - started,
            stopped=stopped,
            checkpoint=self.out,
            history=self.history,
            timings=timings,
            planned_steps=self.total,
        )


def fit_input_to_data(cfg: TrainConfig, items: Sequence[LabelledImage]) -> TrainConfig:
    """``cfg`` with its input chosen from the images and landmarks (unless the preset or user fixed it).

    Tall spines get a tall input, wide images a wide one; the area grows from the
    preset's until neighbouring landmarks are distinct (:func:`~.geometry.choose_input_size`).
    Reads only the image headers. The choice and its reasons go into the config, and
    so into the checkpoint, from which prediction takes the input size.
    """
    if not cfg.auto_input_growth or not items:
        return cfg
    sizes = [read_image_info(item.path).size for item in items]
    multiple = cfg.network(1).size_multiple
    choice = choose_input_size(sizes, [item.points for item in items], cfg.input_size, multiple, cfg.auto_input_growth)
    return cfg.replace(input_size=choice.input_size, input_rule={**choice.to_dict(), "text": choice.describe()})


def warm_startable(checkpoint: Path, cfg: TrainConfig) -> bool:
    """Do the weights in ``checkpoint`` fit the network of ``cfg``?

    Asks the checkpoint, which records the architecture it holds, not the store's
    note of how it was trained: a model trained elsewhere and registered by hand
    has no such note. Landmark count and input size may differ.
    """
    network = load_checkpoint(checkpoint).get("network")  # an unreadable file fails loudly
    try:
        held = SCNConfig.from_dict(network)
    except (AttributeError, TypeError, ValueError):  # no or a malformed architecture record
        return False
    return dataclasses.replace(held, num_landmarks=1) == cfg.network(1)


def train(
    cfg: TrainConfig,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    names: Sequence[str],
    out: str | Path | None = None,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_minutes: float | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train on ``train_samples``, select the best step on ``val_samples``, write ``out``.

    ``init_from`` warm-starts from another checkpoint's weights (the active-learning
    rounds); ``resume`` continues ``out``'s own interrupted run exactly where it
    stopped (same batches, same random numbers). Without validation samples the
    last step is kept. ``should_stop`` is polled before every step.
    """
    device = torch.device(device) if device is not None else best_device()
    trainer = Trainer(cfg, train_samples, val_samples, names, Path(out) if out else None, device)
    if init_from is not None:
        trainer.warm_start(init_from)
    if resume:
        trainer.resume()
    refine = cfg.refine is not None
    coarse_minutes = max_minutes * (1 - cfg.refine.share) if refine and max_minutes else max_minutes
    result = trainer.run(progress, should_stop, coarse_minutes)
    if refine and result.stopped != "cancelled":
        left = max(0.0, max_minutes - result.seconds / 60) if max_minutes else None
        result.refine = train_refiner(trainer, init_from, progress=progress, should_stop=should_stop, max_minutes=left)
    return result


def train_refiner(
    trainer: Trainer,
    init_from: str | Path | None = None,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_minutes: float | None = None,
) -> RefineResult:
    """Train ``trainer``'s local refinement stage on its caches; keep it if it helps on validation.

    Its schedule is fitted to ``max_minutes`` as the coarse one is. The coarse
    model compared against is the selected (best) one; the refiner goes into the
    same checkpoint, with both validation errors in its metrics.
    """
    cfg, device = trainer.cfg, trainer.device
    rc = cfg.refine
    assert rc is not None
    torch.manual_seed(cfg.seed + 1)
    refiner = Refiner(rc, len(trainer.names)).to(device, memory_format=trainer.layout)
    if init_from is not None:
        held = load_checkpoint(init_from).get("refiner")
        if isinstance(held, dict) and held.get("config") == rc.to_dict():
            with contextlib.suppress(KeyError, RuntimeError):  # another landmark count: it starts afresh
                refiner.load_state_dict(held["model"])
    # the coarse stage's caches, already on the device: no second copy (on a GPU, the largest memory there is)
    caches, points, valid = list(trainer.caches[:, 0]), list(trainer.cache_points), list(trainer.cache_valid)
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=rc.lr, weight_decay=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=trainer.amp_dtype == torch.float16)
    asked = min(rc.steps, max(10, round(rc.per_step * trainer.total)))  # in proportion to the coarse run
    schedule = cfg.replace(steps=asked, warmup_steps=min(50, asked // 10), schedule="cosine")
    gen = random_generator(cfg.seed + 1, device)
    started = time.perf_counter()
    deadline = started + max_minutes * 60 if max_minutes is not None else math.inf
    step, total = 0, asked
    while step < total:
        if should_stop is not None and should_stop():
            break
        if time.perf_counter() > deadline and step < _PLAN_AFTER:
            break
        patches, landmarks, target = random_patches(caches, points, valid, rc, gen)
        for group in optimizer.param_groups:
            group["lr"] = rc.lr * _lr_factor(schedule, step, total)
        with torch.autocast(device.type, dtype=trainer.amp_dtype, enabled=trainer.amp_dtype is not None):
            heat = refiner(patches.contiguous(memory_format=trainer.layout), landmarks)
        loss = 0.5 * ((heat.float() - target) ** 2).sum() / landmarks.numel()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        now = time.perf_counter()
        if max_minutes is not None and step >= _PLAN_AFTER:
            total = _planned_total(schedule, step, 0, now - started, deadline - now)
        if progress is not None:
            progress(
                TrainProgress(
                    step=step,
                    total_steps=total,
                    loss=float(loss.detach()),
                    sigma_mean=rc.sigma,
                    elapsed=now - started,
                    images_per_second=step * landmarks.numel() / max(now - started, 1e-9),
                    unit=trainer.unit,
                    stage="refine",
                )
            )
    refiner.eval()
    payload = load_checkpoint(trainer.out) if trainer.out is not None and trainer.out.exists() else None
    coarse_error, refined_error = _compare_refinement(trainer, refiner, payload)
    kept = coarse_error is None or refined_error is None or refined_error < coarse_error
    result = RefineResult(step, time.perf_counter() - started, kept, coarse_error, refined_error, trainer.unit, refiner)
    if kept and payload is not None:
        payload["refiner"] = {
            "config": rc.to_dict(),
            "input_size": list(cache_size(cfg.input_size, cfg.cache_factor)),
            "model": {k: v.detach().cpu().contiguous() for k, v in refiner.state_dict().items()},
        }
        payload["metrics"] = {
            **payload.get("metrics", {}),
            "val_error_coarse": coarse_error,
            "val_error": refined_error if refined_error is not None else coarse_error,
        }
        save_checkpoint(trainer.out, payload)
    return result


def _compare_refinement(
    trainer: Trainer, refiner: Refiner, selected: dict[str, Any] | None
) -> tuple[float | None, float | None]:
    """Mean validation error of the selected coarse model, without and with ``refiner``.

    ``selected`` is the checkpoint of the selected step (None without an output file: the last step).
    """
    samples = [s for s in trainer.val_samples if s.cache is not None and s.cache_transform is not None]
    if not samples:
        return None, None
    model = trainer.model
    if selected is not None:  # the selected step, not the last one
        model = SpatialConfigurationNet(trainer.cfg.network(len(trainer.names))).to(trainer.device)
        model.load_state_dict(selected["model"])
    coarse = predict_samples(model, samples, trainer.device)
    refined = [
        refiner.refine_image(s.cache, s.cache_transform, points)  # type: ignore[arg-type]
        for s, points in zip(samples, coarse)
    ]
    return mean_error(_sample_errors(samples, coarse)[0]), mean_error(_sample_errors(samples, refined)[0])
