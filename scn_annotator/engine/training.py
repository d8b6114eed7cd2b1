"""Training an SCN: the entry point that runs the loop, then the local stage, in one time budget.

The loop is :class:`~.trainer.Trainer`, the local stage's training
:func:`~.refiner_training.train_refiner`; this module puts them together, as the
CLI, the project operations, the worker and the benchmarks call them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..io.images import read_image_info
from .after_training import record_object_model
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .data import LabelledImage, Sample
from .device import best_device
from .geometry import choose_input_size, fit_scale
from .level_training import level_config, train_levels
from .model_file import ModelFile
from .objects import LandmarkObjects, centre_span, nearest_gap, uses_objects
from .refiner_training import train_refiner
from .trainer import Trainer, TrainProgress, TrainResult

__all__ = ["fit_input_to_data", "train", "warm_startable"]


#: The network's fields the input rule chooses from the data (an object layout's SC pooling, LA levels and
#: full-resolution width).
#: A fine-tuning run keeps those of the model it starts from (``fit_input_to_data(start=...)``): its weights
#: fit no other levels, and a round should not change the architecture under the annotators' model. Without
#: this, a spine project's rounds never fine-tuned: the preset's SC pooling (16x) never equals a fitted one.
DATA_FITTED = ("sc_downsample", "levels", "first_filters")


def warm_startable(checkpoint: Path, cfg: TrainConfig) -> bool:
    """Do the weights in ``checkpoint`` fit the network of ``cfg``?

    Asks the checkpoint, which records the architecture it holds, not the store's
    note of how it was trained: a model trained elsewhere and registered by hand
    has no such note. Landmark count, input size and the ``DATA_FITTED`` fields may
    differ (fine-tuning keeps the checkpoint's).
    """
    payload = load_checkpoint(checkpoint)  # an unreadable file fails loudly
    try:
        held = ModelFile.from_payload(payload, checkpoint).network
    except CheckpointError:  # no or a malformed architecture record
        return False
    mine = cfg.network_for(1)
    return held.replace(num_landmarks=1, **{f: getattr(mine, f) for f in DATA_FITTED}) == mine


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
    objects: LandmarkObjects | None = None,
) -> TrainResult:
    """Train on ``train_samples``, select the best step on ``val_samples``, write ``out``.

    ``init_from`` warm-starts from another checkpoint's weights (the active-learning
    rounds); ``resume`` continues ``out``'s own interrupted run exactly where it
    stopped (same batches, same random numbers). Without validation samples the
    last step is kept. ``should_stop`` is polled before every step. ``objects``: which
    landmarks belong together (default: inferred from ``names``); a layout with
    objects learns in two stages (``objects.py``).
    """
    device = torch.device(device) if device is not None else best_device()
    trainer = Trainer(cfg, train_samples, val_samples, names, Path(out) if out else None, device, objects)
    if init_from is not None:
        trainer.warm_start(init_from)
    if resume:
        trainer.resume()
    refine = cfg.refine is not None
    checks = level_config(trainer)
    shares = (cfg.refine.share if cfg.refine is not None else 0.0) + (checks.share if checks is not None else 0.0)
    coarse_minutes = max_minutes * (1 - shares) if max_minutes else max_minutes
    result = trainer.run(progress, should_stop, coarse_minutes)
    if checks is not None and result.stopped != "cancelled":
        left = max(0.0, max_minutes - result.seconds / 60) if max_minutes else None
        minutes = min(left, max_minutes * checks.share) if left is not None and max_minutes else None
        result.levels = train_levels(trainer, should_stop=should_stop, max_minutes=minutes)
    if refine and result.stopped != "cancelled":
        spent = result.seconds + (result.levels.seconds if result.levels is not None else 0.0)
        left = max(0.0, max_minutes - spent / 60) if max_minutes else None
        result.refine = train_refiner(trainer, init_from, progress=progress, should_stop=should_stop, max_minutes=left)
    if trainer.objects is not None and result.stopped != "cancelled":
        record_object_model(trainer, template_error=not refine)
    return result


#: Object layouts: the input is sized so that neighbouring centres are about this many network pixels apart (a
#: distinct blob each, and no pixel more: the time a step costs is the time the SC does not learn), and the
#: SC pools so that they are at least ``OBJECT_SC_CELLS`` of its cells apart. Real spines, 30 CPU minutes:
#: 368 x 144 with SC 8x (centres 18.4 px, 2.3 cells apart) left 31.6 % of vertebrae on a neighbour and a
#: Cobb SMAPE of 15.5 %; 256 x 96 with SC 4x (12.8 px, 3.2 cells) 26.4 % and 10.6 % (benchmarks/RESULTS.md).
OBJECT_GAP = 13.0
OBJECT_SC_CELLS = 3.0
#: and the local-appearance net gets levels (each doubles its view, :attr:`~.config.SCNConfig.local_view`)
#: until it sees the whole layout, the cues that tell its look-alike objects apart (for a spine: the ribs,
#: the pelvis), as long as its deepest level keeps ``OBJECT_DEEPEST_CELLS`` cells across and it has at most
#: ``OBJECT_MAX_LEVELS``. Real spines, 30 CPU minutes (fp32, seeds 0 / 1): 4 levels (view 86 px of a 205-px
#: column) left 34.8 / 33.6 % of vertebrae on a neighbour, median corner 2.12 / 1.93 % of the height; 6 levels
#: (350 px) 26.7 / 28.4 % and 1.42 / 1.47 %, in the same time per radiograph (benchmarks/RESULTS.md).
OBJECT_MAX_LEVELS = 6
OBJECT_DEEPEST_CELLS = 3
#: A net given levels by the rule has its full-resolution level narrowed to this share of its width (unless
#: the user set ``first_filters``): that level is two thirds of a CPU step's convolutions, and the context that
#: tells vertebrae apart lives in the deep levels. 6 levels, fp32 CPU, 30 minutes, seeds 0 / 1: 26.7 / 28.4 ->
#: 20.6 / 26.1 % of vertebrae on a neighbour, median corner 1.42 / 1.47 -> 1.15 / 1.31 % of the height, Cobb
#: SMAPE 14.5 / 17.1 -> 13.2 / 15.8 %, from ~45 % more training steps in the same time (benchmarks/RESULTS.md).
OBJECT_FIRST_SHARE = 0.5


def fit_input_to_data(
    cfg: TrainConfig,
    items: Sequence[LabelledImage],
    objects: LandmarkObjects | None = None,
    *,
    start: str | Path | None = None,
) -> TrainConfig:
    """``cfg`` with its input chosen from the images and landmarks (unless the preset or user fixed it).

    Tall spines get a tall input, wide images a wide one; the area grows from the
    preset's until neighbouring landmarks are distinct (:func:`~.geometry.choose_input_size`).
    For a layout learned by its ``objects`` (:func:`~.objects.uses_objects`) it is the
    object centres that matter: the input shrinks until neighbouring centres are
    ``OBJECT_GAP`` network pixels apart, the local stage's resolution (``cache_factor``)
    grows by as much, so stage 2 sees what it would have, and the SC component pools
    so that neighbouring centres lie ``OBJECT_SC_CELLS`` of its cells apart, and the
    local-appearance net gets the levels it needs to see the whole layout. Reads only
    the image headers. The choice and its reasons go into the config, and so into the
    checkpoint, from which prediction takes the input size. ``start``: the model file a
    fine-tuning run starts from, whose ``DATA_FITTED`` fields the result keeps.
    """
    fitted = _fitted_input(cfg, items, objects)
    return fitted if start is None else _keeping(fitted, Path(start))


def _keeping(cfg: TrainConfig, start: Path) -> TrainConfig:
    """``cfg`` with the data-fitted architecture of the model in ``start``, the input rounded to suit it."""
    held = ModelFile.load(start).network
    kept = cfg.replace(**{f: getattr(held, f) for f in DATA_FITTED})
    if kept.network == cfg.network:
        return cfg
    size = _scaled_input(cfg.input_size, 1.0, kept.network_for(1).size_multiple)
    kept = _resized(kept, size)
    rule = dict(cfg.input_rule or {})
    rule["text"] = rule.get("text", "") + (
        f"; fine-tuning keeps its model's {held.levels} levels and SC pooling {held.sc_downsample}x,"
        f" input {size[0]} x {size[1]}, local stage at {kept.cache_factor:.2f}x"
    )
    return kept.replace(input_rule=rule)


def _fitted_input(cfg: TrainConfig, items: Sequence[LabelledImage], objects: LandmarkObjects | None) -> TrainConfig:
    """:func:`fit_input_to_data` before a fine-tuning run's start is kept."""
    if not cfg.auto_input_growth or not items:
        return cfg
    sizes = [read_image_info(item.path).size for item in items]
    points = [item.points for item in items]
    grouped = objects is not None and cfg.objects and uses_objects(objects, points)
    if grouped:
        points = [objects.centres(p) for p in points]  # type: ignore[union-attr]
    multiple = cfg.network_for(1).size_multiple
    choice = choose_input_size(sizes, points, cfg.input_size, multiple, cfg.auto_input_growth)
    rule = {**choice.to_dict(), "text": choice.describe()}
    cfg = cfg.replace(input_size=choice.input_size)
    if grouped:
        cfg, text = _fit_to_centres(cfg, sizes, points, multiple)
        rule["text"] += text
        rule["objects"] = True
    return cfg.replace(input_rule=rule)


def _fit_to_centres(
    cfg: TrainConfig, sizes: Sequence[tuple[int, int]], centres: Sequence[np.ndarray], multiple: int
) -> tuple[TrainConfig, str]:
    """The input, local-stage resolution, SC pooling and LA levels of an object layout (:func:`fit_input_to_data`)."""

    def median_gap(input_size: tuple[int, int]) -> float:
        scales = [fit_scale(size, input_size) for size in sizes]
        gaps = np.array([nearest_gap(c) for c in centres]) * scales
        return float(np.median(gaps[np.isfinite(gaps)]))

    gap = median_gap(cfg.input_size)
    text = ""
    if gap > OBJECT_GAP:
        new_h, new_w = _scaled_input(cfg.input_size, OBJECT_GAP / gap, multiple)
        cfg = _resized(cfg, (new_h, new_w))
        text = f"; shrunk to {new_h} x {new_w} for the object centres, local stage at {cfg.cache_factor:.2f}x"
    cfg, levels_text = _levels_for_span(cfg, sizes, centres)
    text += levels_text
    gap = median_gap(cfg.input_size)
    if cfg.network.spatial:
        pooling = cfg.network.sc_downsample
        while pooling > 4 and gap / pooling < OBJECT_SC_CELLS:
            pooling //= 2
        if pooling != cfg.network.sc_downsample:
            cfg = cfg.replace(sc_downsample=pooling)
            text += f"; SC pooling {pooling}x"
    return cfg, text + f"; object centres {gap:.1f} network px apart"


def _levels_for_span(
    cfg: TrainConfig, sizes: Sequence[tuple[int, int]], centres: Sequence[np.ndarray]
) -> tuple[TrainConfig, str]:
    """The local-appearance net's levels for an object layout, and the input rounded to what they need."""
    scales = [fit_scale(size, cfg.input_size) for size in sizes]
    span = float(np.median([centre_span(c) * s for c, s in zip(centres, scales)]))
    network = cfg.network
    while (
        network.local_view < span
        and network.levels < OBJECT_MAX_LEVELS
        and min(cfg.input_size) >= OBJECT_DEEPEST_CELLS * 2**network.levels
    ):
        network = network.replace(levels=network.levels + 1)
    if network.levels == cfg.network.levels:
        return cfg, ""
    first = network.first_filters or max(1, round(network.filters * OBJECT_FIRST_SHARE))
    size = _scaled_input(cfg.input_size, 1.0, network.size_multiple)
    cfg = _resized(cfg.replace(levels=network.levels, first_filters=first), size)
    return cfg, (
        f"; local-appearance net of {network.levels} levels (sees {network.local_view} px"
        f" of the layout's {span:.0f}; {first} filters at full resolution), input {size[0]} x {size[1]},"
        f" local stage at {cfg.cache_factor:.2f}x"
    )


def _scaled_input(size: tuple[int, int], factor: float, multiple: int) -> tuple[int, int]:
    """``size`` times ``factor``, its height rounded to ``multiple`` and its width to keep the aspect."""
    height, width = size
    new_h = max(multiple, round(height * factor / multiple) * multiple)
    return new_h, max(multiple, round(width * new_h / height / multiple) * multiple)


def _resized(cfg: TrainConfig, size: tuple[int, int]) -> TrainConfig:
    """``cfg`` with the input ``size``, the local stage's resolution scaled so that it sees the same pixels."""
    return cfg.replace(input_size=size, cache_factor=cfg.cache_factor * cfg.input_size[0] / size[0])
