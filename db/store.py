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
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from scn_annotator import __version__
from scn_annotator.engine.geometry import ImageGeometry
from scn_annotator.engine.measurements import Measurement, builtin_measurements
from scn_annotator.engine.objects import LandmarkObjects
from scn_annotator.errors import ScnError
from scn_annotator.io.atomic import atomic_write_text
from scn_annotator.io.images import read_image_info
from scn_annotator.io.measurement_file import parse_measurements, read_measurements

from . import artifacts, migrate
from .annotations import Annotations, record_event
from .assignments import Assignments
from .embeddings import Embeddings
from .jobs import JobQueue
from .models import EventKind, Image, ImageStatus, Landmark, Setting, utcnow
from .predictions import Predictions
from .readings import Readings
from .records import ImageRecord, LandmarkInfo
from .reviews import Reviews
from .rows import image_row, user_name
from .session import Database
from .versions import Models

__all__ = ["Project", "landmark_colors"]

PROJECT_FILE = "project.json"
SQLITE_FILE = "project.sqlite"


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


def _is_url(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


# ----------------------------------------------------------------------------- project


class Project:
    """An open project. Create one with :meth:`create`, open one with :meth:`open`."""

    def __init__(self, db: Database, data_dir: Path, image_root: Path | None, user: str) -> None:
        self.db = db
        self.data_dir = data_dir
        self._image_root = image_root
        self.user = user
        #: The repositories: each part of the project behind its own small interface.
        self.jobs = JobQueue(db)
        self.annotations = Annotations(self)
        self.models = Models(self)
        self.predictions = Predictions(self)
        self.embeddings = Embeddings(self)
        self.readings = Readings(self)
        self.assignments = Assignments(self)
        self.reviews = Reviews(self)
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
        objects: Sequence[str | None] | None = None,
        name: str | None = None,
        user: str | None = None,
    ) -> Project:
        """A new project folder (SQLite inside, or ``database`` a PostgreSQL URL).

        ``objects[k]``: the structure landmark k belongs to, where the names file says
        (None: inferred from the names, :meth:`LandmarkObjects.infer`).
        """
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
        given = [str(o).strip() or None if o is not None else None for o in objects or []]
        if given and len(given) != len(names):
            raise ScnError(f"{len(given)} object names for {len(names)} landmarks")
        given += [None] * (len(names) - len(given))
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
                s.add(Landmark(index=i, name=n, color=colors[i], description=desc, object_name=given[i]))
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
                self._landmarks = [
                    LandmarkInfo(r.id, r.index, r.name, r.color, r.description, r.object_name) for r in rows
                ]
        return self._landmarks

    def objects(self) -> LandmarkObjects:
        """Which landmarks belong together: the names file's answer where it gave one, else the names'."""
        landmarks = self.landmarks()
        return LandmarkObjects.infer([lm.name for lm in landmarks], [lm.object_name for lm in landmarks])

    def measurements(self) -> list[Measurement]:
        """The measurements taken from the landmarks: the project's own definitions where it has them
        (``scn-annotator measurements PROJECT FILE``), else its layout's built-in ones (a spine's Cobb angles)."""
        text = self.settings().get("measurements")
        if text:
            return parse_measurements(text, self.landmark_names, "the project's measurements")
        return builtin_measurements(self.landmark_names)

    def set_measurements(self, path: str | Path) -> list[Measurement]:
        """Check a measurement file against the landmarks and keep its definitions with the project."""
        text = Path(path).read_text(encoding="utf-8-sig") if Path(path).is_file() else None
        defs = read_measurements(path, self.landmark_names)  # refuses a bad file naming its line
        self.set_setting("measurements", text)
        return defs

    @property
    def landmark_names(self) -> list[str]:
        return [lm.name for lm in self.landmarks()]

    def landmark(self, landmark: int | str) -> LandmarkInfo:
        """A landmark by index or by name."""
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

    def header_geometry(self, image: ImageRecord) -> ImageGeometry:
        """Where the image file's header puts its pixels: as kept at import, else (an image imported before it
        was kept) read from the file now; ImageReadError where the file cannot be read."""
        return image.geometry if image.geometry is not None else read_image_info(self.resolve(image)).geometry

    def images(self, status: str | Iterable[str] | None = None) -> list[ImageRecord]:
        with self.db.read() as s:
            query = select(Image).order_by(Image.id)
            if status is not None:
                wanted = [status] if isinstance(status, str) else list(status)
                query = query.where(Image.status.in_([ImageStatus(w) for w in wanted]))
            return [ImageRecord.of(row) for row in s.scalars(query)]

    def image(self, image: int | str) -> ImageRecord:
        with self.db.read() as s:
            return ImageRecord.of(image_row(s, image))

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
            row = image_row(s, image)
            if row.status == new:
                return
            record_event(
                s,
                EventKind.STATUS,
                row.id,
                author=user_name(author or self.user),
                old_status=row.status.value,
                new_status=new.value,
            )
            row.status, row.last_author, row.updated_at = new, user_name(author or self.user), utcnow()

    def set_spacing(self, image: int | str, spacing: tuple[float, float], source: str) -> None:
        with self.db.write() as s:
            row = image_row(s, image)
            row.spacing_x, row.spacing_y, row.spacing_source = float(spacing[0]), float(spacing[1]), source

    # -- annotations ---------------------------------------------------------

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

    def local_file(self, relative: str) -> Path:
        """An artifact on this machine, fetched from a team database first when it is missing here."""
        path = self.data_dir / relative
        if self.shares_files:
            with self.db.read() as s:
                artifacts.fetch(s, relative, path)
        return path

    def relative_to_data(self, path: Path) -> str:
        """How the store records an artifact path: relative to the data folder, POSIX style."""
        return path.relative_to(self.data_dir).as_posix()
