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
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .data import LabelledImage, Sample
from .device import best_device
from .geometry import choose_input_size
from .level_training import level_config, train_levels
from .model_file import ModelFile
from .objects import LandmarkObjects, nearest_gap, uses_objects
from .refiner_training import record_template_error, train_refiner
from .trainer import Trainer, TrainProgress, TrainResult

__all__ = ["fit_input_to_data", "train", "warm_startable"]


def warm_startable(checkpoint: Path, cfg: TrainConfig) -> bool:
    """Do the weights in ``checkpoint`` fit the network of ``cfg``?

    Asks the checkpoint, which records the architecture it holds, not the store's
    note of how it was trained: a model trained elsewhere and registered by hand
    has no such note. Landmark count and input size may differ.
    """
    payload = load_checkpoint(checkpoint)  # an unreadable file fails loudly
    try:
        held = ModelFile.from_payload(payload, checkpoint).network
    except CheckpointError:  # no or a malformed architecture record
        return False
    return held.replace(num_landmarks=1) == cfg.network_for(1)


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
    elif trainer.objects is not None:
        record_template_error(trainer)
    return result


#: Object layouts: the input is sized so that neighbouring centres are about this many network pixels apart (a
#: distinct blob each, and no pixel more: the time a step costs is the time the SC does not learn), and the
#: SC pools so that they are at least ``OBJECT_SC_CELLS`` of its cells apart. Real spines, 30 CPU minutes:
#: 368 x 144 with SC 8x (centres 18.4 px, 2.3 cells apart) left 31.6 % of vertebrae on a neighbour and a
#: Cobb SMAPE of 15.5 %; 256 x 96 with SC 4x (12.8 px, 3.2 cells) 26.4 % and 10.6 % (benchmarks/RESULTS.md).
OBJECT_GAP = 13.0
OBJECT_SC_CELLS = 3.0


def fit_input_to_data(
    cfg: TrainConfig, items: Sequence[LabelledImage], objects: LandmarkObjects | None = None
) -> TrainConfig:
    """``cfg`` with its input chosen from the images and landmarks (unless the preset or user fixed it).

    Tall spines get a tall input, wide images a wide one; the area grows from the
    preset's until neighbouring landmarks are distinct (:func:`~.geometry.choose_input_size`).
    For a layout learned by its ``objects`` (:func:`~.objects.uses_objects`) it is the
    object centres that matter: the input shrinks until neighbouring centres are
    ``OBJECT_GAP`` network pixels apart, the local stage's resolution (``cache_factor``)
    grows by as much, so stage 2 sees what it would have, and the SC component pools
    so that neighbouring centres lie ``OBJECT_SC_CELLS`` of its cells apart. Reads only
    the image headers. The choice and its reasons go into the config, and so into the
    checkpoint, from which prediction takes the input size.
    """
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
    """The input, local-stage resolution and SC pooling of an object layout (see :func:`fit_input_to_data`)."""

    def median_gap(input_size: tuple[int, int]) -> float:
        scales = [min(input_size[1] / w, input_size[0] / h) for w, h in sizes]
        gaps = np.array([nearest_gap(c) for c in centres]) * scales
        return float(np.median(gaps[np.isfinite(gaps)]))

    height, width = cfg.input_size
    gap = median_gap(cfg.input_size)
    text = ""
    if gap > OBJECT_GAP:
        shrink = OBJECT_GAP / gap
        new_h = max(multiple, round(height * shrink / multiple) * multiple)
        new_w = max(multiple, round(width * new_h / height / multiple) * multiple)
        cfg = cfg.replace(input_size=(new_h, new_w), cache_factor=cfg.cache_factor * height / new_h)
        gap = median_gap(cfg.input_size)
        text = f"; shrunk to {new_h} x {new_w} for the object centres, local stage at {cfg.cache_factor:.2f}x"
    if cfg.network.spatial:
        pooling = cfg.network.sc_downsample
        while pooling > 4 and gap / pooling < OBJECT_SC_CELLS:
            pooling //= 2
        if pooling != cfg.network.sc_downsample:
            cfg = cfg.replace(sc_downsample=pooling)
            text += f"; SC pooling {pooling}x"
    return cfg, text + f"; object centres {gap:.1f} network px apart"
