"""Curated landmarks out of a project: the CSV with its manifest, and the exchange formats of other tools.

Everything an export writes is written atomically, file by file; an exchange export
(COCO, labelme, 3D Slicer, DeepLabCut) goes through the format's own module
(``io/formats``), from the same records: the consensus with each landmark's state,
each reader's reading, each image's header geometry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from scn_annotator import __version__
from scn_annotator.engine.measurements import Measurement
from scn_annotator.errors import ImageReadError, ScnError
from scn_annotator.io.atomic import atomic_write_text
from scn_annotator.io.formats import ExchangeImage, ExchangeSet, exchange_format
from scn_annotator.io.landmark_files import LandmarkTable, write_csv

from .models import Annotation, LandmarkState, utcnow
from .records import ImageRecord
from .store import Project

__all__ = ["export", "export_exchange"]


def export(
    project: Project,
    out: str | Path,
    *,
    layout: str = "wide",
    include_all: bool = False,
    measurements: Sequence[Measurement] | None = None,
) -> dict[str, Any]:
    """Write the curated landmarks as CSV (px and mm, state, spacing) and a JSON manifest beside it.

    By default only images marked done. Writes ``out`` and ``<out>.manifest.json``, each
    atomically; and where the layout has measurements (``measurements``, by default a
    spine's Cobb angles), ``<out>.measurements.csv`` with one row per image. Returns the manifest.
    """
    out = Path(out)
    if layout not in ("wide", "long"):
        raise ScnError(f"export layout must be wide or long, not {layout!r}")
    if out.suffix.lower() != ".csv":
        raise ScnError(f"{out}: the export file must end in .csv")
    lms = project.landmarks()
    statuses = None if include_all else ["done"]
    images = project.images(statuses)
    fmt = "{:.3f}".format
    lines: list[list[str]] = []
    states = {s.value: 0 for s in LandmarkState}
    by_image = _annotations(project, images)
    header = _export_header(layout, [lm.name for lm in lms])
    for image in images:
        sx, sy = image.spacing or (None, None)
        spacing_cells = [fmt(sx) if sx else "", fmt(sy) if sy else "", image.spacing_source]
        wide = [image.name, image.status, str(image.width), str(image.height), *spacing_cells]
        for lm in lms:
            a = by_image.get(image.id, {}).get(lm.id)
            if a is not None:
                states[a.state.value] += 1
            has_xy = a is not None and a.x is not None
            xy = [fmt(a.x), fmt(a.y)] if has_xy else ["", ""]
            mm = [f"{a.x * sx:.4f}", f"{a.y * sy:.4f}"] if has_xy and sx else ["", ""]
            state = a.state.value if a is not None else ""
            if layout == "wide":
                wide += [*xy, *mm, state]
            elif a is not None:
                lines.append([image.name, lm.name, *xy, *mm, state, a.source.value, a.author, *spacing_cells])
        if layout == "wide":
            lines.append(wide)
    current = project.models.current()
    manifest = {
        "file": out.name,
        "layout": layout,
        "images": len(images),
        "only_done": not include_all,
        "landmarks": [{"name": lm.name, "color": lm.color, "description": lm.description} for lm in lms],
        "annotations": states,
        "units": "x, y in pixels of the image file (origin at the centre of the top-left pixel); _mm in mm",
        "model_version": current.id if current else None,
        "exported_at": utcnow().isoformat(timespec="seconds") + "Z",
        "app_version": __version__,
    }
    defs = project.measurements() if measurements is None else list(measurements)
    if defs:
        manifest["measurements"] = _export_measurements(out, images, [lm.id for lm in lms], by_image, defs)
    write_csv(out, header, lines)
    atomic_write_text(out.with_name(out.stem + ".manifest.json"), json.dumps(manifest, indent=2) + "\n")
    return manifest


def _export_header(layout: str, names: list[str]) -> list[str]:
    if layout == "wide":
        header = ["image", "status", "width", "height", "spacing_mm_x", "spacing_mm_y", "spacing_source"]
        return header + [f"{name}_{column}" for name in names for column in ("x", "y", "x_mm", "y_mm", "state")]
    spacing = ["spacing_mm_x", "spacing_mm_y", "spacing_source"]
    return ["image", "landmark", "x", "y", "x_mm", "y_mm", "state", "source", "author", *spacing]


def _export_measurements(
    out: Path,
    images: list[ImageRecord],
    landmark_ids: list[int],
    by_image: dict[int, dict[int, Annotation]],
    defs: list[Measurement],
) -> dict[str, Any]:
    """``<out>.measurements.csv``: each measurement of each image from the exported points (empty where a
    landmark it needs is missing); mm where the image has a spacing, px otherwise (the unit column says)."""
    header = ["image", "length_unit", *[f"{m.name} ({m.unit})" for m in defs]]
    rows = []
    for image in images:
        annotations = by_image.get(image.id, {})
        points = np.array(
            [
                (a.x, a.y) if (a := annotations.get(lm)) is not None and a.x is not None else (np.nan, np.nan)
                for lm in landmark_ids
            ],
            dtype=np.float64,
        ).reshape(-1, 2)
        values = [m.value(points, image.spacing, image.height) for m in defs]
        rows.append([image.name, "mm" if image.spacing else "px", *("" if np.isnan(v) else f"{v:.4f}" for v in values)])
    path = out.with_name(out.stem + ".measurements.csv")
    write_csv(path, header, rows)
    return {"file": path.name, "definitions": [{"name": m.name, "kind": m.kind} for m in defs]}


def _annotations(project: Project, images: list[ImageRecord]) -> dict[int, dict[int, Annotation]]:
    """image id -> landmark id -> its consensus annotation, in one query."""
    by_image: dict[int, dict[int, Annotation]] = {}
    with project.db.read() as s:
        for a in s.scalars(select(Annotation).where(Annotation.image_id.in_([i.id for i in images]))):
            s.expunge(a)
            by_image.setdefault(a.image_id, {})[a.landmark_id] = a
    return by_image


def _keys(images: list[ImageRecord]) -> dict[int, int]:
    """Each image's id in an exchange file: the one an imported file gave it, else its own, never two the same."""
    taken = {image.exchange_id for image in images if image.exchange_id is not None}
    keys, spare = {}, max([*taken, *(image.id for image in images), 0]) + 1
    for image in images:
        if image.exchange_id is not None:
            keys[image.id] = image.exchange_id
        elif image.id not in taken:
            keys[image.id] = image.id
        else:  # its own id is an imported image's: the next free one
            keys[image.id], spare = spare, spare + 1
    return keys


def _exchange_image(project: Project, image: ImageRecord, key: int, physical: bool) -> ExchangeImage:
    """The image as an export names it; its header geometry only for a format in physical coordinates (read
    from the file for an image imported before it was kept, so not for the formats that do not need it)."""
    geometry = None
    if physical:
        try:
            geometry = project.header_geometry(image)
        except ImageReadError as exc:
            raise ScnError(f"image {image.name!r}: its header geometry is needed for this format, but {exc}") from None
    return ExchangeImage(image.name, image.path, project.resolve(image), image.width, image.height, geometry, key)


def export_exchange(project: Project, out: str | Path, format_name: str, *, include_all: bool = False) -> list[Path]:
    """Write the curated landmarks (by default of the images marked done) in another tool's format.

    The consensus with each landmark's state, and every reader's reading where the format
    can say whose points they are (COCO). Returns the files written.
    """
    fmt = exchange_format(format_name)
    out = Path(out)
    if fmt.name == "coco" and out.suffix.lower() != ".json":
        raise ScnError(f"{out}: a COCO export is one .json file")
    if not fmt.one_file and out.exists() and not out.is_dir():
        raise ScnError(f"{out}: a {fmt.name} export is a folder (one file per image), and this is a file")
    lms = project.landmarks()
    names = [lm.name for lm in lms]
    images = project.images(None if include_all else ["done"])
    by_image = _annotations(project, images)
    points, states = {}, {}
    for image in images:
        annotations = by_image.get(image.id, {})
        if not annotations:
            continue
        rows = [annotations.get(lm.id) for lm in lms]
        points[image.name] = np.array(
            [(a.x, a.y) if a is not None and a.x is not None else (np.nan, np.nan) for a in rows], dtype=np.float64
        )
        states[image.name] = {"state": np.array([a.state.value if a else "" for a in rows], dtype=object)}
    consensus = LandmarkTable(names, points, "px", out, extra=states, layout="exchange")
    exported = {image.name for image in images}
    readings = {
        reader: table.subset([i for i in table.ids() if i in exported])
        for reader, table in project.readings.tables().items()
    }
    keys = _keys(images)
    data = ExchangeSet(
        names,
        [_exchange_image(project, image, keys[image.id], fmt.physical) for image in images],
        consensus,
        {reader: table for reader, table in readings.items() if table.points},
        project.user,
    )
    return fmt.write(out, data)
