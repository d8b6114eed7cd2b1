"""The project store: every image, landmark, correction, model and prediction of a project.

A project is a folder (``project.sqlite`` beside ``checkpoints/`` and ``heatmaps/``)
or, for a team, a PostgreSQL URL plus a data folder that the worker and the
annotators share. :class:`Project` is the only way the app, the CLI and the
worker touch it, and it keeps these promises:

- A correction is durable when :meth:`Project.set_landmark` returns: one short
  write transaction, committed with ``synchronous=FULL`` on SQLite.
- Nothing is overwritten without trace: every change appends an event with the
  old and new values; undo and redo are events too.
- A model never changes an annotation: predictions live in their own table, and
  only a person (accepting a prediction) or an import moves them over. An import
  that would change a human correction is refused unless asked to overwrite.
- A landmark file is imported whole or not at all, and every bad row is named.
- DICOM patient identifiers are never stored: only the reader's whitelist of
  technical tags reaches the ``meta`` column.

Image paths are stored relative to the project's image root, so that each
machine of a team can resolve them against its own copy (``image_root``).
"""

from __future__ import annotations

import colorsys
import getpass
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from scn_annotator import __version__
from scn_annotator.engine.geometry import clamp_to_image, inside_image
from scn_annotator.errors import ScnError
from scn_annotator.io.atomic import atomic_copy, atomic_write_text

from . import artifacts, migrate
from .jobs import JobQueue
from .models import (
    Annotation,
    Event,
    Image,
    ImagePrediction,
    ImageStatus,
    Landmark,
    LandmarkState,
    ModelVersion,
    Prediction,
    Score,
    Setting,
    Source,
    utcnow,
)
from .records import AnnotationRecord, ImageRecord, JobRecord, LandmarkInfo, ModelRecord, PredictionRecord, ScoreRecord
from .session import Database

__all__ = [
    "AnnotationRecord",
    "ImageRecord",
    "JobRecord",
    "LandmarkInfo",
    "ModelRecord",
    "PredictionRecord",
    "Project",
    "ScoreRecord",
    "apply_change",
    "record_event",
    "landmark_colors",
]

PROJECT_FILE = "project.json"
SQLITE_FILE = "project.sqlite"
UNDOABLE = ("edit", "import", "undo", "redo")


# ----------------------------------------------------------------------------- helpers


def landmark_colors(count: int) -> list[str]:
    """Distinct, stable colours: the same landmark gets the same colour in every view.

    Hues step by the golden angle so neighbours differ; two lightness levels
    alternate so that 37 landmarks stay distinguishable on a gray radiograph.
    """
    colors = []
    for i in range(count):
        hue = (i * 0.618033988749895) % 1.0
        light = 0.55 if i % 2 == 0 else 0.7
        r, g, b = colorsys.hls_to_rgb(hue, light, 0.95)
        colors.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colors


def user_name(user: str | None) -> str:
    if user:
        return user
    try:
        return os.environ.get("SCN_USER") or getpass.getuser()
    except (KeyError, OSError):  # no user name in containers without a passwd entry
        return "unknown"


def _is_url(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


_LOOK_UP = object()


def record_event(s: Session, kind: str, image_id: int, group_id: int | None = None, **values: Any) -> Event:
    """Append one event; the first event of an action (``group_id`` None) names the group."""
    event = Event(kind=kind, image_id=image_id, group_id=group_id or 0, **values)
    s.add(event)
    if group_id is None:
        s.flush()  # the id is needed now: it names the group
        event.group_id = event.id
    return event


def apply_change(
    s: Session,
    image: Image,
    landmark_id: int,
    new: tuple[float | None, float | None, str | None, str | None],
    *,
    kind: str,
    author: str,
    group_id: int | None,
    prediction_id: int | None = None,
    reverts: int | None = None,
    current: Annotation | object | None = _LOOK_UP,
) -> Event | None:
    """Set one annotation to ``(x, y, state, source)`` (state None: remove) with its event.

    ``current`` may hand over the annotation already loaded (or None), saving a query
    per landmark when a whole file is imported.
    """
    if current is _LOOK_UP:
        current = s.scalar(
            select(Annotation).where(Annotation.image_id == image.id, Annotation.landmark_id == landmark_id)
        )
    old = (current.x, current.y, current.state.value, current.source.value) if current else (None,) * 4
    if old == new:
        return None
    event = record_event(
        s,
        kind,
        image.id,
        group_id,
        landmark_id=landmark_id,
        reverts=reverts,
        author=author,
        old_x=old[0],
        old_y=old[1],
        old_state=old[2],
        old_source=old[3],
        new_x=new[0],
        new_y=new[1],
        new_state=new[2],
        new_source=new[3],
        prediction_id=prediction_id,
    )
    if new[2] is None:
        if current is not None:
            s.delete(current)
    elif current is None:
        s.add(
            Annotation(
                image_id=image.id,
                landmark_id=landmark_id,
                x=new[0],
                y=new[1],
                state=LandmarkState(new[2]),
                source=Source(new[3]),
                author=author,
                prediction_id=prediction_id,
                updated_at=utcnow(),
            )
        )
    else:
        current.x, current.y = new[0], new[1]
        current.state, current.source = LandmarkState(new[2]), Source(new[3])
        current.author, current.prediction_id, current.updated_at = author, prediction_id, utcnow()
    image.last_author, image.updated_at = author, utcnow()
    if image.status == ImageStatus.NEW:
        image.status = ImageStatus.IN_PROGRESS
    return event


# ----------------------------------------------------------------------------- project


class Project:
    """An open project. Create one with :meth:`create`, open one with :meth:`open`."""

    def __init__(self, db: Database, data_dir: Path, image_root: Path | None, user: str) -> None:
        self.db = db
        self.data_dir = data_dir
        self._image_root = image_root
        self.user = user
        self.jobs = JobQueue(db)
        self._landmarks: list[LandmarkInfo] | None = None

    # -- opening -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        location: str | Path,
        landmark_names: Sequence[str],
        *,
        database: str | None = None,
        descriptions: Sequence[str] | None = None,
        name: str | None = None,
        user: str | None = None,
    ) -> Project:
        """A new project folder (SQLite inside, or ``database`` a PostgreSQL URL)."""
        if _is_url(location):
            raise ScnError("create a project in a folder; give the database URL with --db")
        folder = Path(location).resolve()
        if (folder / PROJECT_FILE).exists() or (folder / SQLITE_FILE).exists():
            raise ScnError(f"{folder} is already a project")
        names = [str(n).strip() for n in landmark_names]
        if not names or any(not n for n in names):
            raise ScnError("a project needs at least one landmark, and every landmark a name")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ScnError(f"landmark name {dup!r} is given twice")
        folder.mkdir(parents=True, exist_ok=True)
        url = database or str(folder / SQLITE_FILE)
        db = Database(url)
        migrate.upgrade(db)
        with db.write() as s:
            if s.scalar(select(func.count()).select_from(Landmark)):
                raise ScnError(f"the database {db.url.render_as_string(hide_password=True)} already holds a project")
            colors = landmark_colors(len(names))
            for i, n in enumerate(names):
                desc = descriptions[i] if descriptions and i < len(descriptions) else ""
                s.add(Landmark(index=i, name=n, color=colors[i], description=desc))
            for key, value in {
                "name": name or folder.name,
                "created_at": utcnow().isoformat(timespec="seconds"),
                "created_with": __version__,
                "data_dir": str(folder),
            }.items():
                s.add(Setting(key=key, value=value))
        config = {"database": database, "created_with": __version__}
        atomic_write_text(folder / PROJECT_FILE, json.dumps(config, indent=2) + "\n")
        for sub in ("checkpoints", "heatmaps", "exports"):
            (folder / sub).mkdir(exist_ok=True)
        return cls(db, folder, None, user_name(user))

    @classmethod
    def open(
        cls,
        location: str | Path,
        *,
        image_root: str | Path | None = None,
        data_dir: str | Path | None = None,
        user: str | None = None,
    ) -> Project:
        """Open a project folder or database URL, upgrading an older schema in place.

        ``image_root`` and ``data_dir`` (or ``SCN_IMAGE_ROOT`` / ``SCN_DATA_DIR``)
        override where this machine finds the images and the shared files.
        """
        if _is_url(location):
            db, folder = Database(str(location)), None
        else:
            folder = Path(location).resolve()
            config_file = folder / PROJECT_FILE
            if not config_file.exists():
                raise ScnError(f"{folder} is not a project (no {PROJECT_FILE}); create one with scn-annotator init")
            try:
                config = json.loads(config_file.read_text())
            except (OSError, ValueError) as exc:
                raise ScnError(f"{config_file}: unreadable ({exc})") from None
            db = Database(config.get("database") or str(folder / SQLITE_FILE))
        try:
            migrate.upgrade(db)
        except Exception as exc:
            if isinstance(exc, ScnError):
                raise
            raise ScnError(f"cannot open the project database {db!r}: {exc}") from exc
        project = cls(db, folder or Path("."), None, user_name(user))
        settings = project.settings()
        if "data_dir" not in settings:
            raise ScnError(f"{location}: the database holds no project")
        chosen = data_dir or os.environ.get("SCN_DATA_DIR") or folder or settings["data_dir"]
        project.data_dir = Path(chosen).resolve()
        root = image_root or os.environ.get("SCN_IMAGE_ROOT") or settings.get("image_root")
        project._image_root = Path(root).resolve() if root else None
        return project

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- settings and landmarks ----------------------------------------------

    def settings(self) -> dict[str, Any]:
        with self.db.read() as s:
            return {row.key: row.value for row in s.scalars(select(Setting))}

    def set_setting(self, key: str, value: Any) -> None:
        with self.db.write() as s:
            s.merge(Setting(key=key, value=value))

    def landmarks(self) -> list[LandmarkInfo]:
        if self._landmarks is None:  # fixed at creation: safe to cache
            with self.db.read() as s:
                rows = s.scalars(select(Landmark).order_by(Landmark.index))
                self._landmarks = [LandmarkInfo(r.id, r.index, r.name, r.color, r.description) for r in rows]
        return self._landmarks

    @property
    def landmark_names(self) -> list[str]:
        return [lm.name for lm in self.landmarks()]

    def _landmark(self, landmark: int | str) -> LandmarkInfo:
        for lm in self.landmarks():
            if (isinstance(landmark, str) and lm.name == landmark) or lm.index == landmark:
                return lm
        raise ScnError(f"no landmark {landmark!r} in this project")

    # -- images --------------------------------------------------------------

    @property
    def image_root(self) -> Path | None:
        return self._image_root

    def set_image_root(self, folder: Path) -> None:
        """Record where this project's images live (the first import sets it)."""
        self._image_root = folder.resolve()
        self.set_setting("image_root", str(self._image_root))

    def relative_path(self, path: Path) -> str:
        path = path.resolve()
        if self._image_root is not None:
            try:
                return path.relative_to(self._image_root).as_posix()
            except ValueError:
                pass
        return path.as_posix()

    def resolve(self, image: ImageRecord) -> Path:
        """The image file on this machine."""
        path = Path(image.path)
        if path.is_absolute() or self._image_root is None:
            return path
        return self._image_root / path

    def images(self, status: str | Iterable[str] | None = None) -> list[ImageRecord]:
        with self.db.read() as s:
            query = select(Image).order_by(Image.id)
            if status is not None:
                wanted = [status] if isinstance(status, str) else list(status)
                query = query.where(Image.status.in_([ImageStatus(w) for w in wanted]))
            return [ImageRecord.of(row) for row in s.scalars(query)]

    def image(self, image: int | str) -> ImageRecord:
        with self.db.read() as s:
            return ImageRecord.of(self._image_row(s, image))

    def _image_row(self, s: Session, image: int | str) -> Image:
        row = s.get(Image, image) if isinstance(image, int) else s.scalar(select(Image).where(Image.name == image))
        if row is None:
            raise ScnError(f"no image {image!r} in this project")
        return row

    def counts(self) -> dict[str, int]:
        """Images per status."""
        with self.db.read() as s:
            rows = s.execute(select(Image.status, func.count()).group_by(Image.status)).all()
        counts = {status.value: 0 for status in ImageStatus}
        counts.update({status.value: n for status, n in rows})
        return counts

    def set_status(self, image: int | str, status: str, author: str | None = None) -> None:
        new = ImageStatus(status)
        with self.db.write() as s:
            row = self._image_row(s, image)
            if row.status == new:
                return
            record_event(
                s,
                "status",
                row.id,
                author=user_name(author or self.user),
                old_status=row.status.value,
                new_status=new.value,
            )
            row.status, row.last_author, row.updated_at = new, user_name(author or self.user), utcnow()

    def set_spacing(self, image: int | str, spacing: tuple[float, float], source: str) -> None:
        with self.db.write() as s:
            row = self._image_row(s, image)
            row.spacing_x, row.spacing_y, row.spacing_source = float(spacing[0]), float(spacing[1]), source

    # -- annotations ---------------------------------------------------------

    def annotations(self, image: int | str) -> dict[int, AnnotationRecord]:
        """The current annotation of every annotated landmark, by landmark index."""
        index = {lm.id: lm.index for lm in self.landmarks()}
        with self.db.read() as s:
            row = self._image_row(s, image)
            return {
                index[a.landmark_id]: AnnotationRecord(
                    index[a.landmark_id],
                    a.x,
                    a.y,
                    a.state.value,
                    a.source.value,
                    a.author,
                    a.updated_at,
                    a.prediction_id,
                )
                for a in s.scalars(select(Annotation).where(Annotation.image_id == row.id))
            }

    def points(self, image: int | str) -> np.ndarray:
        """(N, 2) pixel positions, NaN where a landmark has none (unannotated or absent)."""
        out = np.full((len(self.landmarks()), 2), np.nan)
        for i, a in self.annotations(image).items():
            if a.x is not None:
                out[i] = (a.x, a.y)
        return out

    def _check_position(self, image: Image, x: float | None, y: float | None, state: str) -> None:
        if state == LandmarkState.ABSENT.value:
            if x is not None or y is not None:
                raise ScnError("an absent landmark has no position")
            return
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            raise ScnError(f"a {state} landmark needs a finite position, not ({x}, {y})")
        if not inside_image(x, y, (image.width, image.height)):
            raise ScnError(f"({x:.1f}, {y:.1f}) lies outside image {image.name} ({image.width} x {image.height})")

    def set_landmark(
        self,
        image: int | str,
        landmark: int | str,
        x: float | None,
        y: float | None,
        *,
        state: str = "placed",
        author: str | None = None,
        prediction_id: int | None = None,
        source: str = "human",
    ) -> int | None:
        """Place, move or mark one landmark; durable when this returns. Returns the event id.

        ``prediction_id`` records the prediction the correction started from.
        """
        lm = self._landmark(landmark)
        state = LandmarkState(state).value
        source = Source(source).value
        with self.db.write() as s:
            row = self._image_row(s, image)
            self._check_position(row, x, y, state)
            author = user_name(author or self.user)
            prediction_id = self._provenance(s, prediction_id, row.id, lm.id)
            event = apply_change(
                s,
                row,
                lm.id,
                (x, y, state, source),
                kind="edit",
                author=author,
                group_id=None,
                prediction_id=prediction_id,
            )
            return event.id if event else None

    @staticmethod
    def _provenance(s: Session, prediction_id: int | None, image_id: int, landmark_id: int) -> int | None:
        """``prediction_id`` if it is a prediction of this image and landmark, else None.

        A correction is saved whatever the worker did meanwhile; provenance that does
        not name a proposal of this very landmark (a caller's stale or wrong id) is
        dropped rather than attached to the wrong prediction or refused.
        """
        if prediction_id is None:
            return None
        found = s.execute(
            select(Prediction.landmark_id, ImagePrediction.image_id)
            .join(ImagePrediction, Prediction.run_id == ImagePrediction.id)
            .where(Prediction.id == prediction_id)
        ).first()
        return prediction_id if found is not None and tuple(found) == (landmark_id, image_id) else None

    def clear_landmark(self, image: int | str, landmark: int | str, author: str | None = None) -> int | None:
        """Remove a landmark's annotation (back to unannotated), with its event."""
        lm = self._landmark(landmark)
        with self.db.write() as s:
            row = self._image_row(s, image)
            event = apply_change(
                s,
                row,
                lm.id,
                (None, None, None, None),
                kind="edit",
                author=user_name(author or self.user),
                group_id=None,
            )
            return event.id if event else None

    def accept_predictions(self, image: int | str, author: str | None = None, run_id: int | None = None) -> int:
        """Copy the current model's predictions to every landmark that has no annotation yet.

        ``run_id`` accepts another run of this image instead: the conditioned
        proposals the annotator was shown. Annotated landmarks, human or not, are
        left as they are. One undo step. Returns how many landmarks were set.
        """
        author = user_name(author or self.user)
        with self.db.write() as s:
            row = self._image_row(s, image)
            run = self._current_run(s, row.id) if run_id is None else s.get(ImagePrediction, run_id)
            if run is None or run.image_id != row.id:
                raise ScnError(f"no prediction of the current model for image {row.name}")
            annotated = set(s.scalars(select(Annotation.landmark_id).where(Annotation.image_id == row.id)))
            group, count = None, 0
            for p in sorted(run.points, key=lambda p: p.landmark_id):
                if p.landmark_id in annotated:
                    continue
                x, y = clamp_to_image(p.x, p.y, (row.width, row.height))
                event = apply_change(
                    s,
                    row,
                    p.landmark_id,
                    (x, y, "placed", "model_accepted"),
                    kind="edit",
                    author=author,
                    group_id=group,
                    prediction_id=p.id,
                )
                if event is not None:
                    group = group or event.group_id
                    count += 1
            return count

    # -- history, undo, redo ---------------------------------------------------

    def history(self, image: int | str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Events, newest first, as plain dictionaries."""
        names = {lm.id: lm.name for lm in self.landmarks()}
        with self.db.read() as s:
            query = select(Event, Image.name).join(Image, Event.image_id == Image.id).order_by(Event.id.desc())
            if image is not None:
                query = query.where(Event.image_id == self._image_row(s, image).id)
            if limit:
                query = query.limit(limit)
            out = []
            for e, image_name in s.execute(query):
                item = {c.name: getattr(e, c.name) for c in Event.__table__.columns}
                item["image"] = image_name
                item["landmark"] = names.get(e.landmark_id)
                out.append(item)
            return out

    @staticmethod
    def _stacks(s: Session, image_id: int, author: str) -> tuple[list[int], list[int]]:
        """(done, undone) group stacks of one person on one image, replayed from their events.

        Undo is per person: in a team, one annotator's undo never reverts another's work.
        """
        done: list[int] = []
        undone: list[int] = []
        seen: set[int] = set()
        events = s.scalars(
            select(Event)
            .where(Event.image_id == image_id, Event.kind.in_(UNDOABLE), Event.author == author)
            .order_by(Event.id)
        )
        for e in events:
            if e.group_id in seen:
                continue
            seen.add(e.group_id)
            if e.kind in ("edit", "import"):
                done.append(e.group_id)
                undone.clear()
            elif e.kind == "undo" and done and done[-1] == e.reverts:
                undone.append(done.pop())
            elif e.kind == "redo" and undone and undone[-1] == e.reverts:
                done.append(undone.pop())
        return done, undone

    def _revert(self, image: int | str, author: str | None, redo: bool) -> int:
        author = user_name(author or self.user)
        with self.db.write() as s:
            row = self._image_row(s, image)
            done, undone = self._stacks(s, row.id, author)
            stack = undone if redo else done
            if not stack:
                return 0
            target = stack[-1]
            events = list(
                s.scalars(
                    select(Event).where(Event.group_id == target, Event.landmark_id.is_not(None)).order_by(Event.id)
                )
            )
            self._check_unchanged_since(s, row, events, redo)
            group, count = None, 0
            for e in events if redo else reversed(events):
                values = (
                    (e.new_x, e.new_y, e.new_state, e.new_source)
                    if redo
                    else (e.old_x, e.old_y, e.old_state, e.old_source)
                )
                event = apply_change(
                    s,
                    row,
                    e.landmark_id,
                    values,
                    kind="redo" if redo else "undo",
                    author=author,
                    group_id=group,
                    reverts=target,
                    prediction_id=e.prediction_id,
                )
                if event is not None:
                    group = group or event.group_id
                    count += 1
            if group is None:  # nothing to change (already in that state): still move the stacks
                record_event(s, "redo" if redo else "undo", row.id, reverts=target, author=author)
            if (
                not redo
                and row.status == ImageStatus.IN_PROGRESS
                and not s.scalar(select(func.count()).select_from(Annotation).where(Annotation.image_id == row.id))
            ):
                # undone back to before the first change: the image is new again (a change made it in progress)
                record_event(
                    s, "status", row.id, author=author, old_status=row.status.value, new_status=ImageStatus.NEW.value
                )
                row.status = ImageStatus.NEW
            return count

    def _check_unchanged_since(self, s: Session, image: Image, events: list[Event], redo: bool) -> None:
        """Refuse to undo (redo) an action when a landmark it set was changed since, by anyone."""
        current = {a.landmark_id: a for a in s.scalars(select(Annotation).where(Annotation.image_id == image.id))}
        names = {lm.id: lm.name for lm in self.landmarks()}
        changed = []
        for e in events:
            expected = (
                (e.old_x, e.old_y, e.old_state, e.old_source) if redo else (e.new_x, e.new_y, e.new_state, e.new_source)
            )
            a = current.get(e.landmark_id)
            actual = (a.x, a.y, a.state.value, a.source.value) if a is not None else (None,) * 4
            if actual != expected:
                changed.append(f"{names.get(e.landmark_id)} (by {a.author if a is not None else 'someone'})")
        if changed:
            what = "redo" if redo else "undo"
            raise ScnError(f"cannot {what} on image {image.name}: changed since: {', '.join(sorted(set(changed)))}")

    def undo(self, image: int | str, author: str | None = None) -> int:
        """Revert this user's last change to the image (one action, however many landmarks).

        Returns the landmarks changed. Refused with a clear message when someone changed
        one of those landmarks since.
        """
        return self._revert(image, author, redo=False)

    def redo(self, image: int | str, author: str | None = None) -> int:
        """Re-apply the last undone change, if nothing was changed since."""
        return self._revert(image, author, redo=True)

    def can_undo(self, image: int | str, author: str | None = None) -> tuple[bool, bool]:
        """Whether this user (``author``) has something to undo and to redo on the image."""
        with self.db.read() as s:
            done, undone = self._stacks(s, self._image_row(s, image).id, user_name(author or self.user))
        return bool(done), bool(undone)

    # -- landmark files --------------------------------------------------------

    # -- models ----------------------------------------------------------------

    def checkpoint_path(self, version: int) -> Path:
        return self.checkpoint_dir / f"model-v{version:04d}.pt"

    def register_model(
        self,
        checkpoint: str | Path,
        *,
        config: dict[str, Any] | None = None,
        training_set: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        parent_id: int | None = None,
        make_current: bool = False,
        note: str = "",
    ) -> int:
        """Record a model version (its checkpoint moved under the data folder); optionally make it current."""
        source = Path(checkpoint)
        if not source.is_file():
            raise ScnError(f"{source}: no such model file")
        with self.db.write() as s:
            version = ModelVersion(
                checkpoint="",
                config=config or {},
                training_set=training_set or {},
                metrics=metrics or {},
                parent_id=parent_id,
                note=note,
            )
            s.add(version)
            s.flush()
            target = self.checkpoint_path(version.id)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.resolve().parent == target.parent.resolve():
                os.replace(source, target)  # written by the worker beside its final place
            else:
                atomic_copy(source, target)
            version.checkpoint = target.relative_to(self.data_dir).as_posix()
            if self.shares_files:  # in the same transaction: no machine sees the version before its weights
                artifacts.store(s, target, version.checkpoint, "checkpoint", version.id)
            if make_current:
                self._make_current(s, version.id)
            return version.id

    @staticmethod
    def _make_current(s: Session, version_id: int) -> None:
        # Two statements in one transaction: clear, then set (a single UPDATE could
        # trip the unique index half-way on PostgreSQL).
        s.execute(update(ModelVersion).where(ModelVersion.is_current).values(is_current=False))
        s.flush()
        s.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(is_current=True))

    def set_current_model(self, version_id: int) -> None:
        """Make another version current (a rollback is this with an older one); atomic."""
        with self.db.write() as s:
            if s.get(ModelVersion, version_id) is None:
                raise ScnError(f"no model version {version_id}")
            self._make_current(s, version_id)

    def current_model(self) -> ModelRecord | None:
        with self.db.read() as s:
            v = s.scalar(select(ModelVersion).where(ModelVersion.is_current))
            return ModelRecord.of(v) if v else None

    def model_versions(self) -> list[ModelRecord]:
        with self.db.read() as s:
            return [ModelRecord.of(v) for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id))]

    def model(self, version_id: int | None = None) -> ModelRecord:
        """A model version (the current one when None); a clear error when there is none."""
        if version_id is None:
            current = self.current_model()
            if current is None:
                raise ScnError("the project has no model yet: train one first")
            return current
        with self.db.read() as s:
            v = s.get(ModelVersion, version_id)
            if v is None:
                raise ScnError(f"no model version {version_id}")
            return ModelRecord.of(v)

    # -- artifacts: the one place their paths are made --------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        """Model checkpoints, and the temporary folders of trainings in progress."""
        return self.data_dir / "checkpoints"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def worker_log(self) -> Path:
        """The log of the workers this project's app started."""
        return self.data_dir / "worker.log"

    @property
    def shares_files(self) -> bool:
        """Whether checkpoints and heatmap caches also live in the database (team projects on PostgreSQL).

        Each machine then fetches what it lacks into its own data folder; see ``db/artifacts.py``.
        """
        return not self.db.is_sqlite

    def _local_copy(self, relative: str) -> Path:
        path = self.data_dir / relative
        if self.shares_files:
            with self.db.read() as s:
                artifacts.fetch(s, relative, path)
        return path

    def checkpoint_file(self, model: ModelRecord | int) -> Path:
        """The checkpoint of a model version on this machine (fetched from a team database when missing)."""
        record = model if isinstance(model, ModelRecord) else self.model(model)
        return self._local_copy(record.checkpoint)

    def heatmap_cache_path(self, version_id: int, image_id: int) -> Path:
        """Where the heatmaps of one model version on one image are cached."""
        return self.data_dir / "heatmaps" / f"v{version_id:04d}" / f"{image_id}.npz"

    def heatmap_file(self, prediction: PredictionRecord) -> Path | None:
        """The heatmap cache of a prediction on this machine, or None when there is none (yet)."""
        if not prediction.heatmaps:
            return None
        path = self._local_copy(prediction.heatmaps)
        return path if path.exists() else None

    def relative_to_data(self, path: Path) -> str:
        """How the store records an artifact path: relative to the data folder, POSIX style."""
        return path.relative_to(self.data_dir).as_posix()

    # -- predictions -------------------------------------------------------------

    @staticmethod
    def _current_version_id(s: Session) -> int | None:
        return s.scalar(select(ModelVersion.id).where(ModelVersion.is_current))

    @classmethod
    def _current_run(cls, s: Session, image_id: int, version_id: int | None = None) -> ImagePrediction | None:
        if version_id is None:
            version_id = cls._current_version_id(s)
            if version_id is None:
                return None
        return s.scalar(
            select(ImagePrediction).where(
                ImagePrediction.image_id == image_id,
                ImagePrediction.model_version_id == version_id,
                ImagePrediction.superseded.is_(False),
            )
        )

    def store_predictions(
        self,
        version_id: int,
        image: int | str,
        points: np.ndarray,
        confidence: np.ndarray,
        *,
        heatmaps: str | None = None,
        scores: dict[str, tuple[float, dict[str, Any]]] | None = None,
    ) -> int:
        """Store one model version's landmarks (and scores) for one image.

        An earlier run of the same version on the image is superseded, not deleted:
        corrections keep pointing at the proposal they started from, and a view that
        still shows the earlier proposals can save a correction of one of them.
        """
        ids = [lm.id for lm in self.landmarks()]
        if len(points) != len(ids):
            raise ScnError(f"{len(points)} predicted landmarks for a project with {len(ids)}")
        with self.db.write() as s:
            row = self._image_row(s, image)
            s.execute(
                update(ImagePrediction)
                .where(
                    ImagePrediction.image_id == row.id,
                    ImagePrediction.model_version_id == version_id,
                    ImagePrediction.superseded.is_(False),
                )
                .values(superseded=True)
            )
            run = ImagePrediction(model_version_id=version_id, image_id=row.id, heatmaps=heatmaps)
            if heatmaps and self.shares_files and (self.data_dir / heatmaps).is_file():
                artifacts.store(s, self.data_dir / heatmaps, heatmaps, "heatmaps", version_id)
            run.points = [
                Prediction(landmark_id=lm, x=float(p[0]), y=float(p[1]), confidence=float(c))
                for lm, p, c in zip(ids, points, confidence)
            ]
            run.scores = [
                Score(strategy=k, value=float(v), per_landmark=extra) for k, (v, extra) in (scores or {}).items()
            ]
            s.add(run)
            s.flush()
            return run.id

    def store_conditioned(
        self,
        version_id: int,
        image: int | str,
        points: np.ndarray,
        confidence: np.ndarray,
        hints: Sequence[int],
    ) -> tuple[int, list[int]]:
        """Store proposals conditioned on the confirmed landmarks ``hints``; returns (run id, prediction ids).

        The run is born superseded: the model's own run, its heatmaps and scores stay the image's latest.
        """
        ids = [lm.id for lm in self.landmarks()]
        if len(points) != len(ids):
            raise ScnError(f"{len(points)} predicted landmarks for a project with {len(ids)}")
        with self.db.write() as s:
            row = self._image_row(s, image)
            run = ImagePrediction(
                model_version_id=version_id, image_id=row.id, superseded=True, hints=[int(h) for h in hints]
            )
            run.points = [
                Prediction(landmark_id=lm, x=float(p[0]), y=float(p[1]), confidence=float(c))
                for lm, p, c in zip(ids, points, confidence)
                if not np.isnan(p).any()
            ]
            s.add(run)
            s.flush()
            by_landmark = {p.landmark_id: p.id for p in run.points}
            return run.id, [by_landmark.get(lm) for lm in ids]

    def predictions(self, image: int | str, version_id: int | None = None) -> PredictionRecord | None:
        """The current (or given) model's latest prediction for an image, or None."""
        index = {lm.id: lm.index for lm in self.landmarks()}
        with self.db.read() as s:
            row = self._image_row(s, image)
            run = self._current_run(s, row.id, version_id)
            if run is None:
                return None
            n = len(index)
            points, conf = np.full((n, 2), np.nan), np.full(n, np.nan)
            ids: list[int | None] = [None] * n
            for p in run.points:
                i = index[p.landmark_id]
                points[i], conf[i], ids[i] = (p.x, p.y), p.confidence, p.id
            scores = {sc.strategy: ScoreRecord(sc.strategy, sc.value, dict(sc.per_landmark or {})) for sc in run.scores}
            return PredictionRecord(run.id, run.model_version_id, points, conf, ids, run.heatmaps, scores)

    def scores(self, strategy: str, version_id: int | None = None) -> dict[int, ScoreRecord]:
        """Every image's score under ``strategy`` from the current (or given) model's latest runs, by image id."""
        with self.db.read() as s:
            if version_id is None:
                version_id = self._current_version_id(s)
                if version_id is None:
                    return {}
            query = (
                select(ImagePrediction.image_id, Score.value, Score.per_landmark)
                .join(Score, Score.run_id == ImagePrediction.id)
                .where(
                    ImagePrediction.model_version_id == version_id,
                    ImagePrediction.superseded.is_(False),
                    Score.strategy == strategy,
                )
            )
            return {i: ScoreRecord(strategy, value, dict(extra or {})) for i, value, extra in s.execute(query)}
