"""3D Slicer markups: a point list per image, ``.mrk.json`` (current) or ``.fcsv`` (legacy), in physical coordinates.

Positions are in millimetres in the scanner's frame (LPS, as ITK and DICOM have it;
a file that says RAS has its x and y negated): where Slicer shows a point over the
image file it loaded. The tables carry them as ``lps`` (N, 3); the store maps them
to pixels through each image's header geometry (spacing, origin, direction), the
one rule in :class:`~scn_annotator.engine.geometry.ImageGeometry`. A file is one
image's, named after it (``<image>.mrk.json``); a folder of them is read in one call.

States: ``positionStatus`` ``defined`` is a placed point (``occluded`` when its
description says so), ``missing`` (Slicer's "skipped" point) is an absent landmark;
``undefined`` and ``preview`` points are not annotated. The ``.fcsv`` columns are
Slicer 4.11's, with Slicer 5's trailing position status where a file has it.
"""

from __future__ import annotations

import csv
import io
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..landmark_files import LandmarkTable
from .base import ExchangeFormat, ExchangeImport, ExchangeSet, Problems, new_table, put, read_json, state_of, write_json

__all__ = ["SlicerFcsv", "SlicerMarkups"]

SCHEMA = "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#"
_RAS_FLIP = np.array([-1.0, -1.0, 1.0])
#: Slicer's PositionStatus, in the order its enum (and a Slicer 5 .fcsv) numbers them.
_STATUS = ("undefined", "preview", "defined", "missing")
FCSV_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"


def _label(file: Path, suffix: str) -> str:
    return file.name[: -len(suffix)]


def _files(path: Path, suffix: str) -> list[Path]:
    return sorted(path.rglob(f"*{suffix}")) if path.is_dir() else [path]


def _frame(text: object) -> np.ndarray | None:
    """The sign flip from a file's coordinate system to LPS, None for one we do not know."""
    value = str(text).strip().upper()
    if value in ("LPS", "1"):
        return np.ones(3)
    if value in ("RAS", "0"):
        return _RAS_FLIP
    return None


def _store(points: np.ndarray, states: np.ndarray, index: int, xyz: tuple, status: str, description: str) -> None:
    if status == "missing":
        states[index] = "absent"
    elif status == "defined":
        points[index] = xyz
        states[index] = "occluded" if description.strip().lower() == "occluded" else "placed"


class _Markups(ExchangeFormat):
    """What both Slicer formats share: a folder of one-image files, labelled by the file name."""

    suffix: str
    one_file = False
    physical = True

    def sniff(self, path: Path) -> bool:
        return (path.is_file() and path.name.lower().endswith(self.suffix)) or (
            path.is_dir() and any(path.rglob(f"*{self.suffix}"))
        )

    def read(self, path: Path, names: Sequence[str]) -> ExchangeImport:
        problems = Problems(path)
        files = _files(path, self.suffix)
        if not files:
            problems.add(f"no {self.suffix} files in it")
        table = new_table(names, path)
        table.unit = "lps"
        for file in files:
            entry = str(file.relative_to(path)) if path.is_dir() else file.name
            label = _label(file, self.suffix)
            if label in table.points:
                problems.add(f"{entry}: image {label!r} again (first in {table.rows[label]})")
                continue
            self._read_file(file, entry, label, names, table, problems)
        problems.raise_any()
        return ExchangeImport(table)

    @abstractmethod
    def _read_file(
        self, file: Path, entry: str, label: str, names: Sequence[str], table: LandmarkTable, problems: Problems
    ) -> None:
        """Read one image's file into ``table`` (``label``'s row), noting every problem."""

    def write(self, out: Path, data: ExchangeSet) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for image in data.images:
            rows = []  # (label, LPS position or None, status, description)
            if image.name in data.consensus.points:
                assert image.geometry is not None  # physical: the export gives every image its geometry
                points = image.geometry.to_physical(data.consensus.points[image.name][:, :2])
                for name, xyz, state in zip(data.names, points, state_of(data.consensus, image.name), strict=True):
                    if state in ("placed", "occluded"):
                        rows.append(
                            (name, [float(v) for v in xyz], "defined", "occluded" if state == "occluded" else "")
                        )
                    elif state == "absent":
                        rows.append((name, None, "missing", ""))
            path = out / f"{image.name}{self.suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_file(path, rows)
            written.append(path)
        return written

    @abstractmethod
    def _write_file(self, path: Path, rows: list) -> None:
        """Write one image's points: ``(label, LPS position or None, positionStatus, description)`` rows."""


class SlicerMarkups(_Markups):
    name = "slicer"
    description = "3D Slicer markups .mrk.json, one point list per image (a folder of them), LPS millimetres"
    suffix = ".mrk.json"

    def _read_file(
        self, file: Path, entry: str, label: str, names: Sequence[str], table: LandmarkTable, problems: Problems
    ) -> None:
        try:
            doc = read_json(file)
        except Exception as exc:
            problems.add(f"{entry}: {getattr(exc, 'problems', [exc])[0]}")
            return
        markups = doc.get("markups") if isinstance(doc, dict) else None
        if not isinstance(markups, list):
            problems.add(f"{entry}: not a Slicer markups file (no 'markups' list)")
            return
        points, states = put(table, label, entry)
        seen: set[int] = set()
        for m, markup in enumerate(markups):
            if not isinstance(markup, dict) or markup.get("type") != "Fiducial":
                continue  # a line, angle or curve: not landmarks
            flip = _frame(markup.get("coordinateSystem", "LPS"))
            if flip is None:
                problems.add(f"{entry}, markups[{m}]: coordinateSystem {markup.get('coordinateSystem')!r} (LPS or RAS)")
                continue
            if markup.get("coordinateUnits", "mm") != "mm":
                problems.add(f"{entry}, markups[{m}]: coordinateUnits {markup.get('coordinateUnits')!r}, expected mm")
                continue
            for c, point in enumerate(markup.get("controlPoints") or []):
                where = f"{entry}, markups[{m}].controlPoints[{c}]"
                index = problems.landmark(point.get("label") if isinstance(point, dict) else None, names, where)
                if index is None:
                    continue
                if index in seen:
                    problems.add(f"{where}: landmark {names[index]!r} again")
                    continue
                seen.add(index)
                status = point.get("positionStatus", "defined")
                if status not in _STATUS:
                    problems.add(f"{where}: positionStatus {status!r} (one of {', '.join(_STATUS)})")
                    continue
                xyz = (np.nan, np.nan, np.nan)
                if status == "defined":
                    position = point.get("position")
                    if not isinstance(position, list) or len(position) != 3:
                        problems.add(f"{where}: 'position' must be [x, y, z], not {position!r}")
                        continue
                    xyz = tuple(problems.coordinate(v, where) * f for v, f in zip(position, flip, strict=True))
                _store(points, states, index, xyz, status, str(point.get("description") or ""))

    def _write_file(self, path: Path, rows: list) -> None:
        points = [
            {
                "id": str(i + 1),
                "label": name,
                "description": description,
                "position": position if position is not None else [0.0, 0.0, 0.0],
                "positionStatus": status,
            }
            for i, (name, position, status, description) in enumerate(rows)
        ]
        markup = {"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "controlPoints": points}
        write_json(path, {"@schema": SCHEMA, "markups": [markup]})


class SlicerFcsv(_Markups):
    name = "fcsv"
    description = "3D Slicer legacy fiducials .fcsv, one per image (a folder of them)"
    suffix = ".fcsv"

    def _read_file(
        self, file: Path, entry: str, label: str, names: Sequence[str], table: LandmarkTable, problems: Problems
    ) -> None:
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.add(f"{entry}: cannot be read ({exc})")
            return
        flip, columns = np.ones(3), FCSV_COLUMNS.split(",")
        points, states = put(table, label, entry)
        seen: set[int] = set()
        for number, line in enumerate(text.splitlines(), start=1):
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                if key.strip().lower() == "coordinatesystem":
                    flip = _frame(value)
                    if flip is None:
                        problems.add(f"{entry}, line {number}: CoordinateSystem {value.strip()!r} (LPS or RAS)")
                        return
                elif key.strip().lower() == "columns":
                    columns = [c.strip() for c in value.split(",")]
                continue
            if not line.strip():
                continue
            cells = next(csv.reader([line]))
            where = f"{entry}, line {number}"
            if len(cells) < len(columns) or not {"x", "y", "z", "label"} <= set(columns):
                problems.add(f"{where}: {len(cells)} cells, expected the {len(columns)} columns of the header")
                continue
            cell = dict(zip(columns, cells, strict=False))
            index = problems.landmark(cell["label"], names, where)
            if index is None:
                continue
            if index in seen:
                problems.add(f"{where}: landmark {names[index]!r} again")
                continue
            seen.add(index)
            extra = cells[len(columns)] if len(cells) > len(columns) else "2"
            status = _STATUS[int(extra)] if extra.strip().isdigit() and int(extra) < len(_STATUS) else None
            if status is None:
                problems.add(f"{where}: position status {extra!r} (0 to 3)")
                continue
            xyz = (np.nan, np.nan, np.nan)
            if status == "defined":
                try:
                    values = [float(cell[k]) for k in ("x", "y", "z")]
                except ValueError:
                    problems.add(f"{where}: x, y, z must be numbers")
                    continue
                xyz = tuple(problems.coordinate(v, where) * f for v, f in zip(values, flip, strict=True))
            _store(points, states, index, xyz, status, cell.get("desc", ""))

    def _write_file(self, path: Path, rows: list) -> None:
        buf = io.StringIO()
        buf.write("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n")
        buf.write(f"# columns = {FCSV_COLUMNS}\n")
        writer = csv.writer(buf, lineterminator="\n")
        for i, (name, position, status, description) in enumerate(rows):
            x, y, z = (repr(v) for v in position) if position is not None else ("0", "0", "0")
            writer.writerow([i + 1, x, y, z, 0, 0, 0, 1, 1, 1, 0, name, description, "", _STATUS.index(status), 0])
        atomic_write_text(path, buf.getvalue())
