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
    coarse_minutes = max_minutes * (1 - cfg.refine.share) if refine and max_minutes else max_minutes
    result = trainer.run(progress, should_stop, coarse_minutes)
    if refine and result.stopped != "cancelled":
        left = max(0.0, max_minutes - result.seconds / 60) if max_minutes else None
        result.refine = train_refiner(trainer, init_from, progress=progress, should_stop=should_stop, max_minutes=left)
    elif trainer.objects is not None:
        record_template_error(trainer)
    return result


def fit_input_to_data(
    cfg: TrainConfig, items: Sequence[LabelledImage], objects: LandmarkObjects | None = None
) -> TrainConfig:
    """``cfg`` with its input chosen from the images and landmarks (unless the preset or user fixed it).

    Tall spines get a tall input, wide images a wide one; the area grows from the
    preset's until neighbouring landmarks are distinct (:func:`~.geometry.choose_input_size`).
    For a layout learned by its ``objects`` (:func:`~.objects.uses_objects`) it is the
    object centres that must be distinct, and the SC component's pooling is chosen
    so that neighbouring centres lie at least two SC cells apart (a vertebra per
    cell at 16x pooling is one the SC cannot order). Reads only the image headers.
    The choice and its reasons go into the config, and so into the checkpoint, from
    which prediction takes the input size.
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
    if grouped and cfg.network.spatial:
        scales = [min(choice.input_size[1] / w, choice.input_size[0] / h) for w, h in sizes]
        gaps = np.array([nearest_gap(p) for p in points]) * scales
        gap = float(np.median(gaps[np.isfinite(gaps)]))
        pooling = cfg.network.sc_downsample
        while pooling > 4 and gap / pooling < 2:
            pooling //= 2
        if pooling != cfg.network.sc_downsample:
            cfg = cfg.replace(sc_downsample=pooling)
            rule["text"] += f"; SC pooling {pooling}x: object centres {gap:.1f} network px apart"
        rule["objects"] = True
    return cfg.replace(input_rule=rule)
