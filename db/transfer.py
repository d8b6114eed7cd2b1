"""Moving data in and out of a project: image folders, landmark files, curated exports.

Each operation checks everything before it writes and then writes in one
transaction: an image import reports unreadable files by name and adds the rest;
a landmark file is imported whole or not at all, with every bad row named; an
export writes exactly the CSV and its manifest, each atomically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from scn_annotator.engine.geometry import SpacingRule, inside_image
from scn_annotator.errors import ImageReadError, LabelFileError, ScnError
from scn_annotator.io.images import find_images, image_id, read_image_info
from scn_annotator.io.landmark_files import LandmarkTable, default_names, read_landmarks

from .annotations import apply_change, record_event
from .models import Annotation, EventKind, Image, ImageStatus, Source, utcnow
from .records import ImageRecord
from .rows import user_name
from .store import Project

__all__ = ["ImportConflictError", "ImportReport", "LabelImportReport", "import_images", "import_labels"]


@dataclass
class ImportReport:
    """What an image import did, file by file."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, image it duplicates)
    changed: list[str] = field(default_factory=list)  # same path, different content
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


@dataclass
class LabelImportReport:
    images: int = 0
    names: list[str] = field(default_factory=list)  # the project images the file holds
    set: int = 0  # annotations written
    unchanged: int = 0
    overwritten: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)  # landmarks outside their image, left unannotated


class ImportConflictError(ScnError):
    """An import would change human corrections; nothing was imported."""

    def __init__(self, path: object, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        shown = "; ".join(conflicts[:5]) + (f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        super().__init__(
            f"{path}: {len(conflicts)} landmark(s) differ from human corrections, nothing imported "
            f"(use --overwrite to replace them): {shown}"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_images(
    project: Project,
    folder: str | Path,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Add every readable image under ``folder``; duplicates by content are skipped.

    Headers are read, pixels are not. Unreadable files are reported by name and
    the rest are imported, all in one transaction.
    """
    folder = Path(folder).resolve()
    paths = find_images(folder)
    if project.image_root is None:
        project.set_image_root(folder)
    return import_image_files(project, paths, progress)


def import_image_files(
    project: Project, paths: Sequence[Path], progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """:func:`import_images` of the files given (those an exchange file names, or embeds)."""
    report, rows, changed = scan_images(project, paths, progress)
    with project.db.write() as s:
        add_images(project, s, rows, changed)
    return report


def scan_images(
    project: Project, paths: Sequence[Path], progress: Callable[[int, int], None] | None
) -> tuple[ImportReport, list[dict[str, Any]], list[dict[str, Any]]]:
    """Read the headers of ``paths``: the report, the new images' rows and the changed files, nothing written."""
    report = ImportReport()
    with project.db.read() as s:
        known = {row.checksum: (row.name, row.path) for row in s.scalars(select(Image))}
        by_path = {row.path: row.checksum for row in s.scalars(select(Image))}
        names = {row.name for row in s.scalars(select(Image))}
    rows: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    seen_now: dict[str, str] = {}
    for i, path in enumerate(paths):
        if progress:
            progress(i + 1, len(paths))
        rel = project.relative_path(path)
        try:
            info = read_image_info(path)
            checksum = _sha256(path)
        except ImageReadError as exc:
            report.failed.append((str(path), exc.reason))
            continue
        if rel in by_path:
            if by_path[rel] == checksum:
                report.unchanged.append(rel)
            else:
                changed.append({"path": rel, "checksum": checksum, "info": info, "size": path.stat().st_size})
                report.changed.append(rel)
            continue
        if checksum in known or checksum in seen_now:
            report.duplicates.append((str(path), known.get(checksum, (seen_now.get(checksum),))[0]))
            continue
        name = image_id(path) if image_id(path) not in names else rel.rsplit(".", 1)[0]
        if name in names:
            report.failed.append((str(path), f"another image is already called {name!r}"))
            continue
        names.add(name)
        seen_now[checksum] = name
        rows.append(
            dict(
                path=rel,
                name=name,
                checksum=checksum,
                file_size=path.stat().st_size,
                width=info.size[0],
                height=info.size[1],
                spacing_x=info.spacing[0] if info.spacing else None,
                spacing_y=info.spacing[1] if info.spacing else None,
                spacing_source=info.spacing_source.value,
                meta={**info.meta, "geometry": info.geometry.to_dict()},
                status=ImageStatus.NEW,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        report.added.append(rel)
    return report, rows, changed


def add_images(project: Project, s: Session, rows: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
    """Within the caller's transaction: insert the scanned images and note the changed files."""
    if rows:
        s.execute(Image.__table__.insert(), rows)
    for c in changed:  # the file behind a known image changed: keep its annotations, note it
        image = s.scalar(select(Image).where(Image.path == c["path"]))
        old = image.checksum
        image.checksum, image.file_size = c["checksum"], c["size"]
        image.width, image.height = c["info"].size
        image.meta = {
            **image.meta,
            "geometry": c["info"].geometry.to_dict(),
            "previous_checksum": old,
            "changed_at": utcnow().isoformat(),
        }
        image.updated_at = utcnow()
        record_event(
            s, "file", image.id, author=project.user, old_status=image.status.value, new_status=image.status.value
        )


def _columns(project: Project, table: LandmarkTable) -> list[int]:
    """The project landmark index of every column of ``table``."""
    names = project.landmark_names
    if set(table.names) == set(names) or (table.partial and set(table.names) <= set(names)):
        return [names.index(n) for n in table.names]
    if table.names == default_names(table.num_landmarks) and table.num_landmarks == len(names):
        return list(range(len(names)))
    missing = [n for n in names if n not in table.names]
    unknown = [n for n in table.names if n not in names]
    raise LabelFileError(
        table.path,
        [
            f"row 1: the landmarks do not match the project's ({len(names)}: {', '.join(names[:4])}, ...)"
            + (f"; unknown: {', '.join(unknown[:5])}" if unknown else "")
            + (f"; missing: {', '.join(missing[:5])}" if missing else "")
        ],
    )


def image_matcher(s: Session) -> Callable[[str], Image | None]:
    """The project image a file's label means: the same name, else the same file stem (when only one has it)."""
    images = {row.name: row for row in s.scalars(select(Image))}
    stems: dict[str, Image | None] = {}
    for row in images.values():
        key = image_id(row.name)
        stems[key] = None if key in stems else row  # an ambiguous stem matches nothing
    return lambda label: images.get(label) or stems.get(image_id(label))


Change = tuple[Image, int, tuple[float | None, float | None, str, str]]  # image, landmark id, (x, y, state, source)


def _plan(
    project: Project,
    s: Session,
    table: LandmarkTable,
    spacing_rule: SpacingRule | None,
    outside: str = "error",
    skipped: list[str] | None = None,
) -> list[Change]:
    """Every annotation the file asks for, after checking every row; raises listing all problems.

    A landmark outside its image is a problem, or with ``outside="missing"`` left
    unannotated and described in ``skipped``.
    """
    order = _columns(project, table)
    landmark_ids = [lm.id for lm in project.landmarks()]
    match = image_matcher(s)
    problems: list[str] = []
    plan: list[Change] = []
    for label, points in table.points.items():
        where = table.entry(label)
        row = match(label)
        if row is None:
            problems.append(f"{where}: image {label!r} is not in the project")
            continue
        spacing = (row.spacing_x, row.spacing_y) if row.spacing_x else None
        if spacing_rule is not None and table.unit == "px" and (rule := spacing_rule.spacing(points)) is not None:
            spacing = (rule, rule)
            row.spacing_x = row.spacing_y = rule
            row.spacing_source = "landmarks"
        if table.unit == "lps":  # physical positions (3D Slicer): onto the image through its header geometry
            points = _to_pixels(project, row, points, where, problems)
            if points is None:
                continue
        if table.unit == "mm":
            if spacing is None:
                problems.append(f"{where}: image {row.name!r} has no pixel spacing for mm coordinates")
                continue
            points = points / np.asarray(spacing)
        states = table.extra.get(label, {}).get("state")
        for j, (x, y) in enumerate(points):
            state = (states[j] if states is not None else "").strip().lower()
            name, lm_id = table.names[j], landmark_ids[order[j]]
            if np.isnan(x):
                if state == "absent":
                    plan.append((row, lm_id, (None, None, "absent", "imported")))
                elif state not in ("", "missing"):
                    problems.append(f"{where}: landmark {name!r} is {state} but has no position")
                continue
            state = state or "placed"
            if state not in ("placed", "occluded"):
                problems.append(f"{where}: landmark {name!r} has an unknown state {state!r}")
            elif not inside_image(x, y, (row.width, row.height)):
                text = (
                    f"{where}: landmark {name!r} at ({x:.1f}, {y:.1f}) lies outside image "
                    f"{row.name!r} ({row.width} x {row.height})"
                )
                if outside == "missing" and skipped is not None:
                    skipped.append(f"{table.path}, {text}: not imported (missing)")
                else:
                    problems.append(text + " (import it as missing with --outside missing)")
            else:
                plan.append((row, lm_id, (float(x), float(y), state, "imported")))
    if problems:
        raise LabelFileError(table.path, problems)
    return plan


def _to_pixels(project: Project, row: Image, points: np.ndarray, where: str, problems: list[str]) -> np.ndarray | None:
    """(N, 3) LPS millimetres -> (N, 2) pixels of ``row``'s file; None, with the problem noted, where that cannot be."""
    try:
        geometry = project.header_geometry(ImageRecord.of(row))
    except ImageReadError as exc:
        problems.append(f"{where}: physical positions need image {row.name!r}'s header, but {exc}")
        return None
    off = geometry.off_plane(points)
    placed = ~np.isnan(off)
    if (off[placed] > max(geometry.spacing)).any():
        worst = float(off[placed].max())
        problems.append(f"{where}: a point lies {worst:.2f} mm off the plane of image {row.name!r}: not on this image")
        return None
    return geometry.to_index(points)


def _same(a: Annotation, new: tuple[float | None, float | None, str, str], tolerance: float = 0.0) -> bool:
    if a.state.value != new[2] or (a.x is None) != (new[0] is None):
        return False
    return a.x is None or (abs(a.x - new[0]) <= tolerance and abs(a.y - new[1]) <= tolerance)


def import_labels(
    project: Project,
    path: str | Path,
    *,
    spacing_rule: SpacingRule | None = None,
    overwrite: bool = False,
    author: str | None = None,
    outside: str = "error",
) -> LabelImportReport:
    """Import a landmark CSV (any layout, px or mm) for images already in the project.

    All or nothing: any bad row (unknown image, bad number, a point outside its
    image, mm without a spacing) rejects the whole file, naming every row; with
    ``outside="missing"`` points outside their image are left out instead and
    listed in the report's ``outside``. A
    landmark a person already placed differently is a conflict: reported, and
    nothing changes unless ``overwrite``. Re-importing the same file changes nothing.
    """
    return import_table(
        project, read_landmarks(path), spacing_rule=spacing_rule, overwrite=overwrite, author=author, outside=outside
    )


def import_table(
    project: Project,
    table: LandmarkTable,
    *,
    spacing_rule: SpacingRule | None = None,
    overwrite: bool = False,
    author: str | None = None,
    outside: str = "error",
) -> LabelImportReport:
    """:func:`import_labels` of a table already read (a file, or a consensus decided from readings)."""
    report = LabelImportReport()
    with project.db.write() as s:
        write_consensus(
            project, s, table, report, spacing_rule=spacing_rule, overwrite=overwrite, author=author, outside=outside
        )
    return report


def write_consensus(
    project: Project,
    s: Session,
    table: LandmarkTable,
    report: LabelImportReport,
    *,
    spacing_rule: SpacingRule | None = None,
    overwrite: bool = False,
    author: str | None = None,
    outside: str = "error",
) -> None:
    """Within the caller's transaction: check ``table`` whole and write it into the consensus (``annotations``)."""
    path = table.path or Path("consensus")
    author = user_name(author or project.user)
    names = {lm.id: lm.name for lm in project.landmarks()}
    plan = _plan(project, s, table, spacing_rule, outside, report.outside)
    current = {
        (a.image_id, a.landmark_id): a
        for a in s.scalars(select(Annotation).where(Annotation.image_id.in_({r.id for r, _, _ in plan})))
    }
    conflicts = [
        f"{row.name}/{names[lm_id]}: {a.source.value} by {a.author}"
        for row, lm_id, new in plan
        if (a := current.get((row.id, lm_id))) is not None
        and a.source != Source.IMPORTED
        and not _same(a, new, tolerance=1e-3)
    ]
    if conflicts and not overwrite:
        raise ImportConflictError(path, conflicts)
    report.overwritten += conflicts
    groups: dict[int, int] = {}
    for row, lm_id, new in plan:
        a = current.get((row.id, lm_id))
        if a is not None and _same(a, new):
            report.unchanged += 1
            continue
        event = apply_change(
            s, row, lm_id, new, kind=EventKind.IMPORT, author=author, group_id=groups.get(row.id), current=a
        )
        if event is not None:
            groups.setdefault(row.id, event.group_id)
            report.set += 1
    report.names = sorted({*report.names, *(r.name for r, _, _ in plan)})
    report.images = len(report.names)


def import_readings(
    project: Project,
    path: str | Path,
    reader: str,
    *,
    spacing_rule: SpacingRule | None = None,
    author: str | None = None,
    outside: str = "error",
) -> LabelImportReport:
    """Import a landmark file as ``reader``'s own reading of its images (checked as :func:`import_labels` does).

    The reader's earlier points of these images are replaced; another reader's are never
    touched, and the consensus (``annotations``) is not changed: ``consensus`` decides it.
    """
    table = read_landmarks(path)
    report = LabelImportReport()
    with project.db.write() as s:
        write_reading(project, s, reader, table, report, spacing_rule=spacing_rule, author=author, outside=outside)
    return report


def write_reading(
    project: Project,
    s: Session,
    reader: str,
    table: LandmarkTable,
    report: LabelImportReport,
    *,
    spacing_rule: SpacingRule | None = None,
    author: str | None = None,
    outside: str = "error",
) -> None:
    """Within the caller's transaction: check ``table`` whole and make it ``reader``'s reading of its images."""
    reader = reader.strip()
    if not reader:
        raise ScnError("a reading needs a reader's name (--reader NAME)")
    plan = _plan(project, s, table, spacing_rule, outside, report.outside)
    report.set += project.readings.replace(s, reader, user_name(author or project.user), plan)
    report.names = sorted({*report.names, *(r.name for r, _, _ in plan)})
    report.images = len(report.names)


def decide_consensus(project: Project, *, overwrite: bool = False) -> LabelImportReport | None:
    """The readers' mean becomes the consensus of every image read by two or more (None: no such image yet).

    Adjudication: on PostgreSQL only a reviewer (``scn_reviewer``), the project's owner or a
    superuser may; a human correction in the consensus is kept unless ``overwrite``.
    """
    from .roles import REVIEWER, can_adjudicate

    if not can_adjudicate(project):
        raise ScnError(f"deciding the consensus is a reviewer's: ask for membership of {REVIEWER}")
    table = project.readings.consensus_table()
    if table is None:
        return None
    readers = ", ".join(project.readings.readers())
    return import_table(project, table, overwrite=overwrite, author=f"consensus ({readers})")
