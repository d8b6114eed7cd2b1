"""Training, prediction and evaluation on a project instead of on loose files.

The bridge between the engine and the store: the images an annotator marked done
become training samples (their annotations the targets: placed and occluded
landmarks count, absent ones are missing), a trained checkpoint becomes a model
version, and a model's output becomes predictions and heatmap caches, never
annotations. The CLI uses these functions directly; the background worker uses
them for its rounds.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..active.embeddings import FEATURES
from ..active.scores import Scoring
from ..db.records import ImageRecord, ModelRecord, TrainingSet, VersionMetrics
from ..db.store import Project
from ..engine.config import TrainConfig
from ..engine.data import LabelledImage, Normalisation, Sample, build_samples, split_samples
from ..engine.evaluation import EvaluationReport, evaluate
from ..engine.inference import Predictor, checkpoint_error
from ..engine.trainer import TrainProgress, TrainResult
from ..engine.training import fit_input_to_data, train
from ..errors import ImageReadError, ScnError
from ..io.heatmap_cache import save_heatmaps
from ..io.images import SpacingSource

__all__ = [
    "ProjectTrainResult",
    "evaluate_project",
    "labelled_images",
    "predict_project",
    "train_project",
]


def labelled_images(project: Project, statuses: Sequence[str] = ("done",)) -> list[tuple[ImageRecord, LabelledImage]]:
    """The project's images of these statuses with their annotations as training targets."""
    out = []
    for image in project.images(list(statuses)):
        points = project.annotations.points(image.id)  # absent and unannotated landmarks are NaN: no loss
        if np.isnan(points).all():
            continue
        source = SpacingSource(image.spacing_source) if image.spacing else SpacingSource.UNKNOWN
        item = LabelledImage(project.resolve(image), points, f"project image {image.name!r}", image.spacing, source)
        out.append((image, item))
    return out


@dataclass
class ProjectTrainResult:
    """A registered model version and the one comparison that decided whether it is current.

    Both errors come from the inference path (the same predictor, local stage and
    all) on the same validation images, those neither model was trained on.
    """

    version_id: int
    made_current: bool
    result: TrainResult
    val_error: float | None  # the new model, through the inference path, on the images compared
    previous_error: float | None  # the model that was current, on the same images
    unit: str = "px"
    compared_on: int = 0  # validation images both errors are measured on

    def verdict(self) -> str:
        """One line for the CLI, the worker's log and the panel."""
        if self.val_error is None:
            figures = "no validation image to measure it on"
        else:
            figures = f"validation error {self.val_error:.2f} {self.unit}"
            if self.previous_error is not None:
                figures += (
                    f" against the current model's {self.previous_error:.2f} {self.unit} on the same "
                    f"{self.compared_on} images"
                )
        state = "is now the current model" if self.made_current else "is worse and was kept, not made current"
        return f"{figures}; model version {self.version_id} {state}"


def train_project(
    project: Project,
    cfg: TrainConfig,
    *,
    val_fraction: float = 0.15,
    init_from: Path | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    loading: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_minutes: float | None = None,
    device: str | None = None,
    note: str = "",
) -> ProjectTrainResult:
    """Train on the done images, register the model, and make it current unless it is worse.

    "Worse" is one rule: the new model and the current one are both run through the
    inference path on this run's validation images that the current model was not
    trained on (the split keeps the current model's validation images in validation),
    and the new one is current unless its mean error there is higher. That figure is
    what the version stores and the panel and ``status`` show; the training loop's
    own validation (the coarse stage, before the local one) is kept beside it.
    """
    pairs = labelled_images(project)
    if len(pairs) < 2:
        raise ScnError(f"training needs at least 2 images marked done with landmarks; the project has {len(pairs)}")
    current = project.models.current()
    held_out = [str(i) for i, _ in current.training_set.val] if current else []
    trained = [str(i) for i in current.trained_on] if current else []
    ids = [str(r.id) for r, _ in pairs]
    train_ids, val_ids = split_samples(ids, val_fraction, cfg.seed, held_out=held_out, trained=trained)
    items = {str(r.id): item for r, item in pairs}
    norm = Normalisation(*cfg.normalisation)
    ordered = [items[i] for i in train_ids + val_ids]
    objects = project.objects()
    cfg = fit_input_to_data(cfg, ordered, objects, start=init_from)
    samples = build_samples(ordered, cfg.input_size, norm, cfg.cache_factor, progress=loading)
    train_s, val_s = samples[: len(train_ids)], samples[len(train_ids) :]
    folder = project.checkpoint_dir
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".training-") as tmp:
        out = Path(tmp) / "model.pt"
        result = train(
            cfg,
            train_s,
            val_s,
            project.landmark_names,
            out,
            progress=progress,
            should_stop=should_stop,
            max_minutes=max_minutes,
            init_from=init_from,
            device=device,
            objects=objects,
        )
        if result.stopped == "cancelled":
            raise ScnError("training was cancelled; no model version was registered")
        unseen = {i for i in val_ids if current is None or int(i) not in current.trained_on}
        compared = [s for i, s in zip(val_ids, val_s) if i in unseen] or list(val_s)
        metrics = _compare(project, out, current, compared, result, device)
        better = current is None or metrics.previous_val_error is None or metrics.val_error is None
        better = better or metrics.val_error <= metrics.previous_val_error  # type: ignore[operator]
        history = project.annotations.history
        last_event = {r.id: max((e.id for e in history(r.id, limit=1)), default=0) for r, _ in pairs}
        version = project.models.register(
            out,
            config=cfg,
            training_set=TrainingSet(
                train=[(int(i), last_event[int(i)]) for i in train_ids],
                val=[(int(i), last_event[int(i)]) for i in val_ids],
            ),
            metrics=metrics,
            parent_id=current.id if current else None,
            make_current=better,
            note=note,
        )
    return ProjectTrainResult(
        version, better, result, metrics.val_error, metrics.previous_val_error, metrics.unit, metrics.compared_on
    )


def _compare(
    project: Project,
    out: Path,
    current: ModelRecord | None,
    compared: Sequence[Sample],
    result: TrainResult,
    device: str | None,
) -> VersionMetrics:
    """The new model's error and the current one's on the same images, through the inference path."""
    new_error, unit, previous = None, result.unit, None
    if compared:
        new_error, unit = checkpoint_error(out, compared, device=device)
        if current is not None:
            previous, _ = checkpoint_error(project.models.file(current), compared, device=device)
    return VersionMetrics(
        val_error=new_error,
        unit=unit,
        previous_val_error=previous,
        compared_on=len(compared),
        training_val_error=result.best_val_error,  # the coarse stage, at the cache's resolution
        steps=result.steps,
        best_step=result.best_step,
        seconds=result.seconds,
        stopped=result.stopped,
    )


def predict_project(
    project: Project,
    *,
    version_id: int | None = None,
    statuses: Sequence[str] = ("new", "in_progress", "skipped"),
    heatmaps: bool = True,
    scorer: Scoring | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
    embed: bool = False,
) -> tuple[int, list[tuple[str, str]]]:
    """Predict every image of these statuses with a model version (the current one by default).

    Stores landmarks, scores and heatmap caches; annotations are not touched.
    ``embed``: also store what every image of the project (done ones too) looks like to
    this model, for the pool strategies (``active/pool.py``).
    Returns (images predicted, [(image, reason) for unreadable ones]).
    """
    model = project.models.get(version_id)
    version_id = model.id
    predictor = Predictor.from_checkpoint(project.models.file(model), device=device)
    if predictor.names != project.landmark_names:
        raise ScnError(f"model version {version_id} predicts other landmarks than this project has")
    images = project.images(list(statuses))
    done, failed = 0, []
    vectors: dict[int, np.ndarray] = {}
    for i, image in enumerate(images):
        if should_stop is not None and should_stop():
            break
        try:
            mc = scorer.mc_passes if scorer is not None else 0
            prediction = predictor.predict(project.resolve(image), heatmaps=True, mc_passes=mc, embed=embed)
        except ImageReadError as exc:
            failed.append((image.name, exc.reason))
            continue
        cache = None
        if heatmaps and prediction.heatmaps is not None:
            path = save_heatmaps(project.predictions.cache_path(version_id, image.id), prediction.heatmaps)
            cache = project.relative_to_data(path)
        scores = list(scorer(prediction).values()) if scorer is not None else []
        project.predictions.store(
            version_id, image.id, prediction.points, prediction.confidence, heatmaps=cache, scores=scores
        )
        if prediction.embedding is not None:
            vectors[image.id] = prediction.embedding
        done += 1
        if progress:
            progress(i + 1, len(images))
    if embed and not (should_stop is not None and should_stop()):
        for image in project.images([s for s in ("new", "in_progress", "skipped", "done") if s not in statuses]):
            with contextlib.suppress(ImageReadError):  # an unreadable image has no place in a ranking anyway
                vector = predictor.embed(project.resolve(image))
                if vector is not None:
                    vectors[image.id] = vector
        project.embeddings.put(FEATURES, version_id, vectors)
    return done, failed


def evaluate_project(
    project: Project, *, version_id: int | None = None, held_out_only: bool = True
) -> EvaluationReport:
    """A model's error on the done images, by default only on those it was not trained on."""
    version = project.models.get(version_id)
    trained = version.trained_on if held_out_only else set()
    pairs = [(r, item) for r, item in labelled_images(project) if r.id not in trained]
    if not pairs:
        raise ScnError("no done image outside the model's training set to evaluate on")
    predictor = Predictor.from_checkpoint(project.models.file(version))
    predicted, truth, spacing, sources, heights = {}, {}, {}, {}, {}
    for record, item in pairs:
        predicted[record.name] = predictor.predict(item.path).points
        truth[record.name] = item.points
        spacing[record.name] = item.spacing
        sources[record.name] = item.spacing_source.value
        heights[record.name] = float(record.height)
    return evaluate(predicted, truth, spacing, project.landmark_names, sources, heights)
