"""What the annotator works with, without any Qt: the queue, one open image, and every edit.

The napari plugin is a thin layer over :class:`AnnotationSession`: it turns layer
events into calls here and shows what this returns. Every edit goes straight to
the store (so nothing is lost when napari is closed or killed), and the state
shown is always re-read from the store afterwards (so the screen never shows a
point the database does not have). Keeping this free of Qt makes it testable
headless and reusable by another front end.

A landmark on screen is one of:

- an *annotation* (placed, occluded) made by a person, accepted from a
  prediction, or imported;
- a *prediction* of the current model, shown for every landmark that has no
  annotation yet; moving it makes it an annotation that records which
  prediction it started from;
- nothing, when the landmark is marked absent or nothing is known.

With a :class:`~scn_annotator.app.conditioning.ConditioningClient`, the predictions
shown *follow the annotator*: after every edit the landmarks not yet confirmed are
re-predicted given the confirmed ones (:meth:`AnnotationSession.repropose`), and
those proposals, stored as a conditioned run, are what a correction refers to and
what *accept* accepts. They are a function of the confirmed set, so an undo brings
the earlier proposals back with the earlier annotations.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..active.ranking import RankedQueue, ranked_queue
from ..configs import TextEnum
from ..db.records import AnnotationRecord, ImageRecord, LandmarkInfo, PredictionRecord
from ..db.store import Project
from ..engine.geometry import clamp_to_image
from ..errors import ImageReadError, ScnError
from ..io.heatmap_cache import Heatmaps, load_heatmaps
from ..io.images import Radiograph, read_image
from .conditioning import ConditionedProposals, ConditioningClient

__all__ = ["AnnotationSession", "ImageView", "LandmarkView", "Shown"]


class Shown(TextEnum):
    """What a landmark of the open image shows: a person's (or an import's) annotation, a proposal, nothing."""

    ANNOTATION = "annotation"
    PREDICTION = "prediction"
    NONE = "none"


@dataclass
class LandmarkView:
    """One landmark of the open image, as the viewer should show it."""

    info: LandmarkInfo
    x: float | None  # original pixels; None: nothing to show
    y: float | None
    kind: Shown
    state: str  # placed, occluded, absent, predicted, missing
    source: str  # human, model_accepted, imported, model, ""
    confidence: float | None
    doubt: float | None  # the strategy's per-landmark value
    doubtful: bool
    prediction_id: int | None
    author: str | None = None


@dataclass
class ImageView:
    """Everything the viewer shows of one image."""

    record: ImageRecord
    pixels: np.ndarray
    spacing: tuple[float, float]  # (x, y) mm per pixel, 1.0 when unknown
    spacing_known: bool
    contrast: tuple[float, float]
    landmarks: list[LandmarkView]
    heatmaps: Heatmaps | None
    model_version: int | None
    score: float | None
    strategy: str
    extra: dict[str, Any] = field(default_factory=dict)

    def points(self) -> tuple[np.ndarray, list[int]]:
        """(K, 2) positions as (row, col) and the landmark index of each, for a Points layer."""
        shown = [lm for lm in self.landmarks if lm.x is not None]
        data = np.array([[lm.y, lm.x] for lm in shown], dtype=float).reshape(-1, 2)
        return data, [lm.info.index for lm in shown]


def contrast_limits(pixels: np.ndarray) -> tuple[float, float]:
    """Readable limits for 8- and 16-bit radiographs: the 0.5 and 99.5 percentiles of a subsample."""
    sample = pixels.ravel()[:: max(1, pixels.size // 250_000)]
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (float(pixels.min()), float(pixels.max()) + 1.0)


class AnnotationSession:
    """The annotator's session on one project; see the module docstring."""

    def __init__(
        self,
        project: Project,
        strategy: str | None = None,
        prefetch: bool = True,
        conditioning: ConditioningClient | None = None,
    ) -> None:
        self.project = project
        self.store: Any = project.annotations  # what edits go to: the consensus (a reading: reading_session)
        self.measurements = project.measurements()  # shown live while points move
        self.conditioning = conditioning
        self.follow = conditioning is not None  # re-place the proposals after each edit (the app's switch)
        self.proposals: ConditionedProposals | None = None  # the open image's, when they follow the annotator
        self._asked = 0  # the latest proposal request; older replies are stale
        self._heatmaps_of: tuple[int | None, Heatmaps | None] = (None, None)  # (run id, its heatmaps)
        self.strategy = strategy
        self.queue: RankedQueue = ranked_queue(project, strategy)
        self.strategy = self.queue.strategy
        self.current: ImageView | None = None
        self.landmark = 0  # the landmark new points get
        self._last_done: tuple[int, str, int, int] | None = None  # (image, its status before, accepted, next)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scn-prefetch") if prefetch else None
        self._prefetched: dict[int, Future] = {}

    # -- the queue --------------------------------------------------------------

    def refresh_queue(self) -> RankedQueue:
        self.queue = ranked_queue(self.project, self.strategy)
        return self.queue

    def set_strategy(self, strategy: str) -> None:
        self.strategy = strategy
        self.refresh_queue()
        if self.current is not None:
            self.reload()

    def resume_image(self) -> int | None:
        """Where this annotator left off (stored per user), else the top of the queue."""
        last = self.project.settings().get(f"resume:{self.project.user}")
        known = {r.image_id for r in self.queue.rows}
        if last in known:
            return int(last)
        row = self.queue.next_after(None)
        return row.image_id if row else (self.queue.rows[0].image_id if self.queue.rows else None)

    def next_image(self, step: int = 1, include_done: bool = True) -> int | None:
        """The image after (or before, ``step`` -1) the open one in queue order."""
        rows = [
            r
            for r in self.queue.rows
            if include_done or r.status != "done" or (self.current and r.image_id == self.current.record.id)
        ]
        if not rows:
            return None
        ids = [r.image_id for r in rows]
        if self.current is None or self.current.record.id not in ids:
            return ids[0]
        return ids[(ids.index(self.current.record.id) + step) % len(ids)]

    # -- opening ----------------------------------------------------------------

    def _read(self, record: ImageRecord) -> Radiograph:
        return read_image(self.project.resolve(record))

    def _prefetch(self, image_id: int | None) -> None:
        if self._pool is None or image_id is None or image_id in self._prefetched:
            return
        record = self.project.image(image_id)
        self._prefetched = {k: v for k, v in self._prefetched.items() if k == image_id}
        self._prefetched[image_id] = self._pool.submit(self._read, record)

    def open(self, image_id: int) -> ImageView:
        """Load an image with its annotations, predictions and heatmaps (decoded ahead when prefetched)."""
        record = self.project.image(image_id)
        future = self._prefetched.pop(image_id, None)
        try:
            image = future.result() if future is not None else self._read(record)
        except ImageReadError as exc:
            raise ScnError(f"cannot open image {record.name}: {exc}") from None
        self.proposals = None
        if self._last_done is not None and self._last_done[3] != image_id:
            self._last_done = None  # another image than the one D went on to: Ctrl+Z is about this one
        self.current = self._view(record, image)
        self.project.set_setting(f"resume:{self.project.user}", record.id)
        if self.follow and self.conditioning is not None:
            self.conditioning.open(record.id)  # the LA pass, ahead of the first correction
        self._prefetch(self.next_image(include_done=False))
        return self.current

    def reload(self) -> ImageView:
        """Re-read the open image's landmarks from the store (the pixels are kept)."""
        if self.current is None:
            raise ScnError("no image is open")
        record = self.project.image(self.current.record.id)
        image = Radiograph(self.current.pixels, self.project.resolve(record))
        self.current = self._view(record, image, self.current.contrast)
        self.queue.set_status(record.id, record.status)  # a first correction, an undo: the queue follows
        return self.current

    def _view(self, record: ImageRecord, image: Radiograph, contrast: tuple[float, float] | None = None) -> ImageView:
        annotations = self.store.of(record.id)
        prediction = self._prediction(record)
        heatmaps = None
        per_landmark: list[float | None] = []
        score = None
        if prediction is not None:
            heatmaps = self._heatmaps(prediction)
            scored = prediction.scores.get(self.strategy)
            if scored is not None:
                score, per_landmark = scored.value, scored.per_landmark
        threshold = self.queue.threshold  # the same rule as the queue's doubtful landmarks
        following = self.proposals
        if following is not None and (
            following.image_id != record.id or prediction is None or following.model_version != prediction.model_version
        ):
            following = self.proposals = None  # another image, or the model changed since
        landmarks = []
        for lm in self.project.landmarks():
            doubt = per_landmark[lm.index] if lm.index < len(per_landmark) else None
            doubt = doubt if doubt is not None and math.isfinite(doubt) else None
            view = self._landmark_view(lm, annotations.get(lm.index), prediction, doubt, threshold)
            if (
                following is not None
                and view.kind == Shown.PREDICTION
                and following.prediction_ids[lm.index] is not None
            ):
                x, y = following.points[lm.index]
                view.x, view.y, view.source = float(x), float(y), "conditioned"
                view.prediction_id = following.prediction_ids[lm.index]
                view.confidence = float(following.confidence[lm.index])
            landmarks.append(view)
        spacing = record.spacing or (1.0, 1.0)
        return ImageView(
            record=record,
            pixels=image.pixels,
            spacing=spacing,
            spacing_known=record.spacing is not None,
            contrast=contrast or contrast_limits(image.pixels),
            landmarks=landmarks,
            heatmaps=heatmaps,
            model_version=prediction.model_version if prediction else None,
            score=score,
            strategy=self.strategy,
        )

    def _prediction(self, record: ImageRecord) -> PredictionRecord | None:
        """The proposals shown on an image: the current model's latest."""
        return self.project.predictions.latest(record.id)

    def _heatmaps(self, prediction: PredictionRecord) -> Heatmaps | None:
        """The run's heatmaps, read once per run: a correction re-reads the view, not the cache file."""
        if self._heatmaps_of[0] != prediction.run_id:
            cache = self.project.predictions.heatmap_file(prediction)
            self._heatmaps_of = (prediction.run_id, load_heatmaps(cache) if cache is not None else None)
        return self._heatmaps_of[1]

    @staticmethod
    def _landmark_view(
        lm: LandmarkInfo,
        annotation: AnnotationRecord | None,
        prediction: PredictionRecord | None,
        doubt: float | None,
        threshold: float,
    ) -> LandmarkView:
        confidence = pid = None
        if prediction is not None:
            confidence = float(prediction.confidence[lm.index])
            pid = prediction.prediction_ids[lm.index]
        doubtful = doubt is not None and doubt >= threshold
        if annotation is not None:
            return LandmarkView(
                lm,
                annotation.x,
                annotation.y,
                Shown.ANNOTATION,
                annotation.state,
                annotation.source,
                confidence,
                doubt,
                doubtful,
                annotation.prediction_id,
                annotation.author,
            )
        if prediction is not None and not np.isnan(prediction.points[lm.index]).any():
            x, y = prediction.points[lm.index]
            return LandmarkView(
                lm, float(x), float(y), Shown.PREDICTION, "predicted", "model", confidence, doubt, doubtful, pid
            )
        return LandmarkView(lm, None, None, Shown.NONE, "missing", "", confidence, doubt, doubtful, pid)

    # -- editing ----------------------------------------------------------------

    def _image(self) -> ImageView:
        if self.current is None:
            raise ScnError("no image is open")
        return self.current

    def move(self, landmark: int, x: float, y: float) -> ImageView:
        """Place or move a landmark (a dragged prediction becomes a correction that remembers it)."""
        self._last_done = None  # Ctrl+Z is about this change now
        view = self._image()
        lm = view.landmarks[landmark]
        x, y = clamp_to_image(x, y, (view.record.width, view.record.height))  # dropped off the edge
        state = lm.state if lm.kind == Shown.ANNOTATION and lm.state == "occluded" else "placed"
        # the prediction a correction started from stays recorded however often it is moved
        self.store.set(view.record.id, landmark, x, y, state=state, prediction_id=lm.prediction_id)
        return self.reload()

    def mark(self, landmark: int, state: str) -> ImageView:
        """Mark a landmark occluded (keeps or takes the shown position) or absent (no position)."""
        self._last_done = None  # Ctrl+Z is about this change now
        view = self._image()
        lm = view.landmarks[landmark]
        if state == "absent":
            self.store.set(view.record.id, landmark, None, None, state="absent")
        elif state in ("occluded", "placed"):
            if lm.x is None:
                raise ScnError(f"{lm.info.name} has no position to mark {state}; place it first")
            x, y = clamp_to_image(lm.x, lm.y, (view.record.width, view.record.height))  # as a drag would
            self.store.set(
                view.record.id,
                landmark,
                x,
                y,
                state=state,
                prediction_id=lm.prediction_id if lm.kind == Shown.PREDICTION else None,
            )
        else:
            raise ScnError(f"unknown landmark state {state!r}")
        return self.reload()

    def clear(self, landmark: int) -> ImageView:
        self._last_done = None  # Ctrl+Z is about this change now
        self.store.clear(self._image().record.id, landmark)
        return self.reload()

    def accept_all(self) -> int:
        """Accept the proposal shown for every landmark without an annotation."""
        self._last_done = None  # Ctrl+Z is about this change now
        count = self.store.accept_predictions(self._image().record.id, run_id=self._shown_run())
        self.reload()
        return count

    def _shown_run(self) -> int | None:
        """The conditioned run on screen, or None when the model's own proposals are shown."""
        return self.proposals.run_id if self.proposals is not None else None

    # -- proposals that follow the annotator -----------------------------------------

    def confirmed(self) -> dict[int, tuple[float, float]]:
        """The open image's landmarks a person confirmed (placed, occluded, accepted), index -> (x, y)."""
        return {
            lm.info.index: (lm.x, lm.y)
            for lm in self._image().landmarks
            if lm.kind == Shown.ANNOTATION and lm.x is not None and lm.y is not None
        }

    def repropose(self) -> Future | None:
        """Ask for proposals given the confirmed landmarks; a Future of ``(token, proposals)`` for :meth:`apply`.

        None when there is nothing to ask: following is off, or nothing is confirmed
        (then the model's own proposals are shown again).
        """
        view = self._image()
        hints = self.confirmed() if self.follow and self.conditioning is not None else {}
        if not hints or all(lm.kind == Shown.ANNOTATION for lm in view.landmarks if lm.x is not None):
            if self.proposals is not None:
                self.proposals = None
                self.reload()
            return None
        self._asked += 1
        token = self._asked
        result: Future = Future()

        def done(asked: Future) -> None:
            try:
                result.set_result((token, asked.result()))
            except Exception as exc:
                result.set_exception(exc)

        self.conditioning.propose(view.record.id, hints).add_done_callback(done)  # type: ignore[union-attr]
        return result

    def apply(self, token: int, proposals: ConditionedProposals) -> ImageView | None:
        """Show ``proposals`` if they answer the latest request for the open image; None when stale."""
        if token != self._asked or self.current is None or proposals.image_id != self.current.record.id:
            return None
        self.proposals = proposals
        return self.reload()

    def set_follow(self, on: bool) -> None:
        """Switch the following proposals on or off (off: the model's own proposals)."""
        self.follow = bool(on) and self.conditioning is not None
        if not self.follow and self.proposals is not None:
            self.proposals = None
            if self.current is not None:
                self.reload()

    def undo(self) -> int:
        """Undo this person's last change to the open image (see :meth:`undo_done` for a D just pressed)."""
        self._last_done = None
        count = self.store.undo(self._image().record.id)
        self.reload()
        return count

    def redo(self) -> int:
        self._last_done = None
        count = self.store.redo(self._image().record.id)
        self.reload()
        return count

    @property
    def can_undo_done(self) -> bool:
        """Whether the open image is the one a D went on to, with nothing changed on it since."""
        return self._last_done is not None and self.current is not None and self._last_done[3] == self.current.record.id

    def undo_done(self) -> int:
        """Take back the D just pressed: the image's status as it was, and the proposals it accepted.

        Returns that image's id, for the caller to open again. A mistaken D costs one
        key, not a search through the queue and a landmark-by-landmark repair.
        """
        if not self.can_undo_done:
            raise ScnError("no image was just marked done")
        image_id, status, accepted, _ = self._last_done  # type: ignore[misc]
        self._last_done = None
        self.project.set_status(image_id, status)
        if accepted:
            self.store.undo(image_id)  # the one step that accepted them
        self.refresh_queue()
        return image_id

    def set_status(self, status: str) -> None:
        self.project.set_status(self._image().record.id, status)
        self.refresh_queue()
        self.reload()

    def mark_done(self) -> tuple[int | None, int]:
        """Mark the open image done: what is on screen is what is right.

        Done means every landmark shown is confirmed, so the proposals not yet
        confirmed are accepted first (one undoable step, recorded as accepted from the
        model); an image with nothing to confirm (no annotation, no proposal) is
        refused rather than entering training empty. Returns (the next image to
        annotate or None when all are done, proposals accepted).
        """
        view = self._image()
        pending = [lm for lm in view.landmarks if lm.kind == Shown.PREDICTION]
        if not pending and not any(lm.kind == Shown.ANNOTATION for lm in view.landmarks):
            raise ScnError(
                f"image {view.record.name} has no landmark to confirm: place them (or mark them absent) "
                "before marking it done"
            )
        accepted = self.store.accept_predictions(view.record.id, run_id=self._shown_run()) if pending else 0
        before = view.record.status
        self.project.set_status(view.record.id, "done")
        self.refresh_queue()
        self.reload()
        row = self.queue.next_after(view.record.id)
        following = row.image_id if row else None
        # the image D goes on to (or this one, when every image is done) is where Ctrl+Z takes it back
        self._last_done = (view.record.id, before, accepted, following if following is not None else view.record.id)
        return following, accepted

    def export(self, path: str | Path, include_all: bool = False) -> dict[str, Any]:
        """Write the curated landmarks as CSV with a manifest (see ``db.exports.export``); returns the manifest."""
        from ..db.exports import export

        return export(self.project, path, include_all=include_all)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.conditioning is not None:
            self.conditioning.close()
