"""The headless pipeline on plain files: folder + CSV in, model / predictions / report out.

These are the functions behind ``scn-annotator train | predict | evaluate`` and the
benchmarks; the project store and the worker build on the same pieces. Each one
checks its input completely before the slow part starts, so that a typo in a CSV
fails in a second, not after twenty minutes of training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.config import TrainConfig
from ..engine.data import Normalisation, Sample, build_samples, labelled_images, match_images, split_samples
from ..engine.evaluation import EvaluationReport, align_tables, evaluate
from ..engine.geometry import SpacingRule
from ..engine.inference import Prediction, Predictor
from ..engine.objects import LandmarkObjects
from ..engine.training import fit_input_to_data
from ..errors import ImageReadError, ScnError
from ..io.images import SpacingSource, find_images, image_id, read_image_info
from ..io.landmark_files import LandmarkTable, default_names, read_landmarks, write_landmarks

__all__ = ["TrainingData", "evaluate_files", "in_model_order", "load_training_data", "predict_folder", "read_hints"]

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Decoded, split training data and what was left out on the way."""

    names: list[str]
    train: list[Sample]
    val: list[Sample]
    unlabelled_images: list[Path] = field(default_factory=list)
    labels_without_image: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # landmarks outside their image, treated as missing
    config: TrainConfig | None = None  # the configuration to train with: the input size fitted to the data


def load_training_data(
    images: str | Path,
    labels: str | Path,
    cfg: TrainConfig,
    *,
    val_fraction: float = 0.1,
    spacing_rule: SpacingRule | None = None,
    progress: Callable[[int, int], None] | None = None,
    outside: str = "error",
    start: str | Path | None = None,
) -> TrainingData:
    """Read a label CSV, match it to the images of a folder, decode and split them.

    ``outside="missing"`` treats landmarks outside their image as missing and lists
    each in ``TrainingData.outside``; by default they are an error naming file and row.
    ``start``: the model file training will fine-tune (it keeps that model's architecture).
    """
    table = read_landmarks(labels)
    paths = find_images(images)
    if not paths:
        raise ScnError(f"{images}: no image files found")
    pairs, missing = match_images(paths, table)
    if not pairs:
        raise ScnError(f"{labels}: none of its {len(table.points)} image ids matches a file in {images}")
    labelled = {p for p, _ in pairs}
    train_ids, val_ids = split_samples([i for _, i in pairs], val_fraction, cfg.seed)
    notes: list[str] = []
    items = labelled_images(pairs, table)
    cfg = fit_input_to_data(cfg, items, LandmarkObjects.infer(table.names), start=start)
    samples = build_samples(
        items,
        cfg.input_size,
        Normalisation(*cfg.normalisation),
        cache_factor=cfg.cache_factor,
        spacing_rule=spacing_rule,
        progress=progress,
        names=table.names,
        outside=outside,
        notes=notes,
    )
    by_label = dict(zip([i for _, i in pairs], samples))
    return TrainingData(
        names=list(table.names),
        train=[by_label[i] for i in train_ids],
        val=[by_label[i] for i in val_ids],
        unlabelled_images=[p for p in paths if p not in labelled],
        labels_without_image=missing,
        outside=notes,
        config=cfg,
    )


def predict_folder(
    predictor: Predictor,
    images: str | Path,
    out: str | Path,
    progress: Callable[[int, int], None] | None = None,
    hints: str | Path | None = None,
) -> tuple[list[Prediction], list[ImageReadError]]:
    """Predict every image of a folder into a wide CSV (px, with confidences).

    Unreadable files are returned as errors and skipped; the CSV holds the rest.
    ``hints``: a landmark file (any layout, px) with the landmarks a person confirmed
    filled in and the others empty; those come back as given, and the others are
    predicted consistently with them.
    """
    paths = find_images(images)
    if not paths:
        raise ScnError(f"{images}: no image files found")
    confirmed = read_hints(hints, predictor.names) if hints is not None else None
    done: list[Prediction] = []
    failed: list[ImageReadError] = []
    report = (lambda i: progress(i, len(paths))) if progress else None
    for result in predictor.predict_files(paths, progress=report, hints=confirmed):
        (failed if isinstance(result, ImageReadError) else done).append(result)
    if done:
        write_landmarks(
            out,
            predictor.names,
            {p.image_id: p.points for p in done},
            confidence={p.image_id: p.confidence for p in done},
        )
    return done, failed


def read_hints(path: str | Path, names: list[str]) -> dict[str, np.ndarray]:
    """Confirmed landmarks per image id, in the model's landmark order (NaN: not confirmed).

    Any supported landmark layout; matched to the model's landmarks by name, or by
    position when the file names none. Pixels only.
    """
    return in_model_order(read_landmarks(path), names)


def in_model_order(table: LandmarkTable, names: list[str]) -> dict[str, np.ndarray]:
    """A pixel landmark table's points per image id, re-ordered to ``names`` (NaN for landmarks it lacks)."""
    path = table.path
    if table.unit != "px":
        raise ScnError(f"{path}: landmarks must be in pixels here, this file has {table.unit}")
    if set(table.names) <= set(names):
        order = [table.names.index(n) if n in table.names else None for n in names]
    elif table.names == default_names(table.num_landmarks) and table.num_landmarks == len(names):
        order = list(range(len(names)))
    else:
        unknown = [n for n in table.names if n not in names]
        raise ScnError(f"{path}: landmarks {', '.join(map(repr, unknown[:3]))} are not the model's")
    out = {}
    for image, points in table.points.items():
        hints = np.full((len(names), 2), np.nan)
        for j, k in enumerate(order):
            if k is not None:
                hints[j] = points[k]
        out[image] = hints
    return out


def _spacings(
    truth: LandmarkTable,
    ids: list[str],
    spacing_rule: SpacingRule | None,
    images: str | Path | None,
    user_spacing: float | None,
) -> tuple[dict[str, tuple[float, float] | None], dict[str, str], dict[str, float]]:
    """Each image's spacing and its source, and its height where the image file was found (px)."""
    spacing: dict[str, tuple[float, float] | None] = {i: None for i in ids}
    source = {i: SpacingSource.UNKNOWN.value for i in ids}
    heights: dict[str, float] = {}
    if images is not None:
        files = {image_id(p): p for p in find_images(images)}
        for i in ids:
            if image_id(i) in files:
                info = read_image_info(files[image_id(i)])
                spacing[i], source[i] = info.spacing, info.spacing_source.value
                heights[i] = float(info.size[1])
    for i in ids:
        if user_spacing is not None:
            spacing[i], source[i] = (user_spacing, user_spacing), SpacingSource.USER.value
        elif spacing_rule is not None:
            value = spacing_rule.spacing(truth.points[i])
            if value is not None:
                spacing[i], source[i] = (value, value), SpacingSource.LANDMARKS.value
    return spacing, source, heights


def evaluate_files(
    pred: str | Path,
    truth: str | Path,
    *,
    spacing_rule: SpacingRule | None = None,
    images: str | Path | None = None,
    user_spacing: float | None = None,
) -> EvaluationReport:
    """Compare a prediction CSV with a truth CSV; spacing from a rule, image headers or the user."""
    pred_table, truth_table = read_landmarks(pred), read_landmarks(truth)
    for table in (pred_table, truth_table):
        if table.unit != "px":
            raise ScnError(f"{table.path}: evaluation expects pixel coordinates, the file has {table.unit}")
    predicted, names = align_tables(pred_table, truth_table)
    pred_ids = {image_id(i): i for i in predicted}
    matched = {i: predicted[pred_ids[image_id(i)]] for i in truth_table.points if image_id(i) in pred_ids}
    if not matched:
        raise ScnError(f"no image of {truth} appears in {pred}")
    ids = list(matched)
    spacing, sources, heights = _spacings(truth_table, ids, spacing_rule, images, user_spacing)
    truth_points = {i: truth_table.points[i] for i in ids}
    return evaluate(matched, truth_points, spacing, names, sources, heights)
