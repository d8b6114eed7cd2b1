"""Landmark CSV files in the three layouts found in the wild, read strictly.

- headerless ``id,x0,y0,x1,y1,...`` (the hand data set's ``all.csv``);
- wide with a header: ``image,<name>_x,<name>_y,...`` (pixels) or
  ``<name>_x_mm,<name>_y_mm`` (millimetres); other columns such as
  ``<name>_confidence`` or ``<name>_state`` are carried along or ignored;
- long: ``image,landmark,x,y`` (or ``x_mm,y_mm``), one row per point.

A missing landmark is written as two empty cells (or, in the long layout, no row).
Everything else that is not a finite number is an error: a file is read whole or
not at all, and the error lists the file and every bad row, because a silently
dropped or shifted landmark is worse than a refused file.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LabelFileError
from .atomic import atomic_write_text

__all__ = ["LandmarkTable", "csv_text", "default_names", "read_landmarks", "write_csv", "write_landmarks"]

_ID_COLUMNS = ("image", "image_id", "id", "file", "filename", "name")
#: Per-landmark columns carried along in ``LandmarkTable.extra``: ``<name>_state`` (wide) or ``state`` (long).
EXTRA_COLUMNS = ("confidence", "state")
#: Per-image columns of an export, never landmark coordinates (``spacing_mm_x`` ends in ``_x``).
_IMAGE_COLUMNS = {"status", "width", "height", "path", "spacing_mm_x", "spacing_mm_y", "spacing_source"}
_MISSING = ("",)
#: No radiograph is a million pixels (or mm) across: a larger coordinate is a broken file, not a landmark.
MAX_COORDINATE = 1e6


def default_names(count: int) -> list[str]:
    """``L0, L1, ...``: names for files that have none."""
    return [f"L{i}" for i in range(count)]


@dataclass
class LandmarkTable:
    """Landmarks per image: ``points[id]`` is (N, 2) float64 (x, y), NaN where missing.

    ``rows[id]`` is the file line the image came from, so that a later check (a
    point outside its image, an image not found) can still name the row.
    ``extra[id][column]`` keeps per-landmark columns such as ``confidence`` or
    ``state`` as (N,) arrays of strings.
    """

    names: list[str]
    points: dict[str, np.ndarray]
    unit: str = "px"
    path: Path | None = None
    rows: dict[str, int | str] = field(default_factory=dict)  # a CSV row number, or an exchange file's entry
    extra: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: headerless, wide or long (CSV), or exchange (io/formats); a long or exchange file may name only some landmarks
    layout: str = "wide"

    @property
    def num_landmarks(self) -> int:
        return len(self.names)

    @property
    def partial(self) -> bool:
        """May an image's entry name only some of the landmarks (the rest not annotated)?"""
        return self.layout in ("long", "exchange")

    def ids(self) -> list[str]:
        return list(self.points)

    def entry(self, image: str) -> str:
        """``row N`` (CSV) or the exchange file's entry (``annotation 3``, ``007.json``) of an image, for messages."""
        row = self.rows.get(image, "?")
        return f"row {row}" if isinstance(row, int) or row == "?" else row

    def where(self, image: str) -> str:
        """``file, row N`` for messages."""
        name = str(self.path) if self.path else "<labels>"
        return f"{name}, {self.entry(image)}" if image in self.rows else name

    def subset(self, ids: Iterable[str]) -> LandmarkTable:
        keep = list(ids)
        return LandmarkTable(
            list(self.names),
            {i: self.points[i] for i in keep},
            self.unit,
            self.path,
            {i: self.rows[i] for i in keep if i in self.rows},
            {i: self.extra[i] for i in keep if i in self.extra},
            self.layout,
        )


def _number(cell: str) -> float | None:
    """A finite float, None for an empty cell; raises ValueError for anything else."""
    text = cell.strip()
    if text in _MISSING:
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _is_number(cell: str) -> bool:
    try:
        _number(cell)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- cells a spreadsheet would run

#: A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """A cell as text that no spreadsheet executes: a text cell that starts like a formula gets a ``'``.

    Numbers (``-1.5``) stay numbers. A cell that already starts with ``'`` gets one more,
    so that :func:`_unguard` gives back exactly what was written.
    """
    text = str(value)
    if (text.startswith(_FORMULA_START) and not _is_number(text)) or text.startswith("'"):
        return "'" + text
    return text


def _unguard(cell: str) -> str:
    """The inverse of :func:`safe_cell` for the cells it guarded (an apostrophe before ``'`` or a formula start)."""
    if cell.startswith("'") and cell[1:].startswith(("'", *_FORMULA_START)):
        return cell[1:]
    return cell


def csv_text(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """The one CSV writer of the project: ``\\n`` line ends, every text cell made safe for spreadsheets."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([safe_cell(c) for c in header])
    writer.writerows([safe_cell(c) for c in row] for row in rows)
    return buf.getvalue()


def write_csv(path: str | Path, header: Sequence[object], rows: Iterable[Sequence[object]]) -> None:
    """:func:`csv_text`, written atomically."""
    atomic_write_text(Path(path), csv_text(header, rows))


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelFileError(path, ["no such file"]) from None
    except IsADirectoryError:
        raise LabelFileError(path, ["is a folder, not a CSV file"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelFileError(path, ["is not a UTF-8 text (CSV) file"]) from None
    if "\x00" in text:
        raise LabelFileError(path, ["is a binary file, not a CSV file"])
    rows = []
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if row and any(cell.strip() for cell in row):
                rows.append((number, [_unguard(cell.strip()) for cell in row]))
    except csv.Error as exc:
        raise LabelFileError(path, [f"is not valid CSV ({exc})"]) from None
    if not rows:
        raise LabelFileError(path, ["the file has no rows"])
    return rows


def read_landmarks(path: str | Path) -> LandmarkTable:
    """Read a landmark CSV in any of the three layouts; raises LabelFileError on any bad row."""
    path = Path(path)
    rows = _read_rows(path)
    first = rows[0][1]
    if len(first) > 1 and all(_is_number(c) for c in first[1:]):
        return _read_headerless(path, rows)
    header = [c.lower() for c in first]
    if "landmark" in header:
        return _read_long(path, header, rows[1:])
    return _read_wide(path, header, first, rows[1:])


def _id_column(path: Path, header: list[str]) -> int:
    for name in _ID_COLUMNS:
        if name in header:
            return header.index(name)
    raise LabelFileError(path, [f"row 1: the header has no image column (one of {', '.join(_ID_COLUMNS)})"])


def _add(
    table: dict[str, np.ndarray],
    rows: dict[str, int],
    problems: list[str],
    number: int,
    image: str,
    points: np.ndarray,
) -> None:
    if not image:
        problems.append(f"row {number}: the image name is empty")
    elif image in table:
        problems.append(f"row {number}: image {image!r} appears twice (first in row {rows[image]})")
    else:
        table[image] = points
        rows[image] = number


def _pair(cells: list[str], number: int, what: str, problems: list[str]) -> tuple[float, float]:
    """Two cells as (x, y); (nan, nan) for two empty cells; records a problem otherwise."""
    try:
        x, y = _number(cells[0]), _number(cells[1])
    except ValueError:
        bad = [c for c in cells if not _is_number(c)]
        hint = (
            " (leave both cells empty for a missing landmark)"
            if any(c.lower() in ("nan", "inf", "-inf", "na", "none", "null") for c in bad)
            else ""
        )
        problems.append(f"row {number}: {what} is not a number: {bad[0]!r}{hint}")
        return math.nan, math.nan
    if (x is None) != (y is None):
        problems.append(f"row {number}: {what} has only one coordinate")
        return math.nan, math.nan
    if x is not None and (abs(x) > MAX_COORDINATE or abs(y) > MAX_COORDINATE):
        problems.append(
            f"row {number}: {what} at ({cells[0]}, {cells[1]}) is not a plausible position "
            f"(beyond {MAX_COORDINATE:,.0f})"
        )
        return math.nan, math.nan
    return (math.nan, math.nan) if x is None else (x, y)


def _read_headerless(path: Path, rows: list[tuple[int, list[str]]]) -> LandmarkTable:
    width = len(rows[0][1])
    problems: list[str] = []
    if width % 2 != 1:
        problems.append(f"row {rows[0][0]}: expected id and x,y pairs, found {width - 1} numbers")
    n = (width - 1) // 2
    points: dict[str, np.ndarray] = {}
    where: dict[str, int] = {}
    for number, row in rows:
        if len(row) != width:
            problems.append(f"row {number}: {len(row)} columns, expected {width} like row {rows[0][0]}")
            continue
        pts = np.array(
            [_pair(row[1 + 2 * i : 3 + 2 * i], number, f"landmark {i}", problems) for i in range(n)],
            dtype=np.float64,
        ).reshape(n, 2)
        _add(points, where, problems, number, row[0], pts)
    if problems:
        raise LabelFileError(path, problems)
    return LandmarkTable(default_names(n), points, "px", path, where, layout="headerless")


def _wide_columns(header: list[str], original: list[str]) -> tuple[list[str], dict[str, tuple[int, int]], str]:
    """Landmark names (file order) and their x/y column indices, px preferred over mm."""
    px: dict[str, list[int | None]] = {}
    mm: dict[str, list[int | None]] = {}
    order: list[str] = []
    for i, col in enumerate(header):
        if col in _IMAGE_COLUMNS:
            continue
        for suffix, target, axis in (
            ("_x_mm", mm, 0),
            ("_y_mm", mm, 1),
            ("_x_px", px, 0),
            ("_y_px", px, 1),
            ("_x", px, 0),
            ("_y", px, 1),
        ):
            if col.endswith(suffix) and len(col) > len(suffix):
                name = original[i][: -len(suffix)]
                target.setdefault(name, [None, None])[axis] = i
                if name not in order:
                    order.append(name)
                break
    use, unit = (px, "px") if px else (mm, "mm")
    names = [n for n in order if n in use]
    return names, {n: use[n] for n in names}, unit  # type: ignore[misc]


def _read_wide(path: Path, header: list[str], original: list[str], rows: list[tuple[int, list[str]]]) -> LandmarkTable:
    id_col = _id_column(path, header)
    names, columns, unit = _wide_columns(header, original)
    problems: list[str] = []
    if not names:
        problems.append("row 1: the header has no landmark columns (<name>_x, <name>_y)")
    for name, (cx, cy) in columns.items():
        if cx is None or cy is None:
            axis = "x" if cx is None else "y"
            problems.append(f"row 1: landmark {name!r} has no {axis} column")
    if problems:
        raise LabelFileError(path, problems)
    lower = [c.lower() for c in original]
    extra_columns = {  # kind -> column of every landmark, in landmark order
        kind: [lower.index(f"{n.lower()}_{kind}") for n in names]
        for kind in EXTRA_COLUMNS
        if all(f"{n.lower()}_{kind}" in lower for n in names)
    }
    width = len(header)
    points: dict[str, np.ndarray] = {}
    where: dict[str, int] = {}
    extra: dict[str, dict[str, np.ndarray]] = {}
    for number, row in rows:
        if len(row) != width:
            problems.append(f"row {number}: {len(row)} columns, expected {width} like the header")
            continue
        pts = np.array(
            [_pair([row[columns[n][0]], row[columns[n][1]]], number, repr(n), problems) for n in names],
            dtype=np.float64,
        )
        _add(points, where, problems, number, row[id_col], pts)
        for kind, cols in extra_columns.items():
            extra.setdefault(row[id_col], {})[kind] = np.array([row[i] for i in cols])
    if problems:
        raise LabelFileError(path, problems)
    return LandmarkTable(names, points, unit, path, where, extra)


def _read_long(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> LandmarkTable:
    id_col = _id_column(path, header)
    lm_col = header.index("landmark")
    if "x" in header and "y" in header:
        cx, cy, unit = header.index("x"), header.index("y"), "px"
    elif "x_mm" in header and "y_mm" in header:
        cx, cy, unit = header.index("x_mm"), header.index("y_mm"), "mm"
    else:
        raise LabelFileError(path, ["row 1: the header has no x and y columns (x,y or x_mm,y_mm)"])
    extra_columns = {kind: header.index(kind) for kind in EXTRA_COLUMNS if kind in header}
    names: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    values: dict[str, dict[str, tuple[float, float]]] = {}
    extras: dict[str, dict[str, dict[str, str]]] = {}  # image -> kind -> landmark -> cell
    where: dict[str, int] = {}
    problems: list[str] = []
    for number, row in rows:
        if len(row) != len(header):
            problems.append(f"row {number}: {len(row)} columns, expected {len(header)} like the header")
            continue
        image, name = row[id_col], row[lm_col]
        if not image or not name:
            problems.append(f"row {number}: the image or landmark name is empty")
            continue
        if (image, name) in seen:
            problems.append(
                f"row {number}: landmark {name!r} of image {image!r} appears twice (first in row {seen[image, name]})"
            )
            continue
        seen[image, name] = number
        if name not in names:
            names.append(name)
        values.setdefault(image, {})[name] = _pair([row[cx], row[cy]], number, repr(name), problems)
        where.setdefault(image, number)
        for kind, col in extra_columns.items():
            extras.setdefault(image, {}).setdefault(kind, {})[name] = row[col]
    if problems:
        raise LabelFileError(path, problems)
    points = {
        image: np.array([pts.get(n, (math.nan, math.nan)) for n in names], dtype=np.float64)
        for image, pts in values.items()
    }
    extra = {
        image: {kind: np.array([cells.get(n, "") for n in names]) for kind, cells in kinds.items()}
        for image, kinds in extras.items()
    }
    return LandmarkTable(names, points, unit, path, where, extra, layout="long")


def write_landmarks(
    path: str | Path,
    names: list[str],
    points: Mapping[str, np.ndarray],
    confidence: Mapping[str, np.ndarray] | None = None,
    layout: str = "wide",
) -> None:
    """Write px landmarks as a wide (``image,<name>_x,<name>_y[,<name>_confidence]``) or long CSV.

    The file is written to a temporary name and renamed, so a crash never leaves
    half a file behind.
    """
    fmt = "{:.3f}".format
    rows: list[list[str]] = []
    if layout == "wide":
        header = ["image"]
        for name in names:
            header += [f"{name}_x", f"{name}_y"] + ([f"{name}_confidence"] if confidence else [])
        for image, pts in points.items():
            row = [image]
            for i in range(len(names)):
                x, y = pts[i]
                row += ["", ""] if np.isnan(x) else [fmt(x), fmt(y)]
                if confidence:
                    row.append(f"{confidence[image][i]:.4g}")
            rows.append(row)
    elif layout == "long":
        header = ["image", "landmark", "x", "y"] + (["confidence"] if confidence else [])
        for image, pts in points.items():
            for i, name in enumerate(names):  # a missing point keeps its row, with empty cells
                xy = ["", ""] if np.isnan(pts[i][0]) else [fmt(pts[i][0]), fmt(pts[i][1])]
                extra = [f"{confidence[image][i]:.4g}"] if confidence else []
                rows.append([image, name, *xy, *extra])
    else:
        raise ValueError(f"layout must be 'wide' or 'long', not {layout!r}")
    write_csv(path, header, rows)
