"""DeepLabCut's ``CollectedData_<scorer>.csv``: three header rows (scorer, bodyparts, coords), a row per image.

The index is the image's path in the DeepLabCut project, as three columns
(``labeled-data, <video>, <image>``, DeepLabCut 2.2 and later) or one
(``labeled-data/<video>/<image>``, earlier); both are read, the three-column one is
written. Pixel centres are integers there as here (matplotlib's and napari's
convention), so positions pass unchanged. DeepLabCut has no states: a landmark has a
position or two empty cells, so an occluded landmark goes out as a position and an
absent one as empty cells, and come back as placed and not annotated. The
multi-animal layout (an ``individuals`` row) is refused, not guessed at. The ``.h5``
twin of the file needs PyTables and is not read; napari-deeplabcut writes both.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ..atomic import atomic_write_text
from ..images import image_id
from .base import ExchangeFormat, ExchangeImport, ExchangeSet, Problems, found_beside, new_table, put, state_of

__all__ = ["DeepLabCut"]

PREFIX = "CollectedData_"
_EMPTY = ("", "nan", "NaN")


def scorer_of(path: Path, default: str) -> str:
    """``CollectedData_alice.csv`` -> ``alice``."""
    return path.stem[len(PREFIX) :] if path.stem.startswith(PREFIX) and len(path.stem) > len(PREFIX) else default


class DeepLabCut(ExchangeFormat):
    name = "dlc"
    description = "DeepLabCut CollectedData_<scorer>.csv (scorer / bodyparts / coords header rows)"
    one_file = True

    def sniff(self, path: Path) -> bool:
        if path.is_dir():
            return any(path.glob(f"{PREFIX}*.csv"))
        if path.suffix.lower() != ".csv" or not path.is_file():
            return False
        try:
            with open(path, encoding="utf-8-sig") as fh:
                return fh.readline().split(",")[0].strip() == "scorer"
        except (OSError, UnicodeDecodeError):
            return False

    def read(self, path: Path, names: Sequence[str]) -> ExchangeImport:
        problems = Problems(path)
        if path.is_dir():
            files = sorted(path.glob(f"{PREFIX}*.csv"))
            if len(files) != 1:
                problems.add(f"{len(files)} {PREFIX}*.csv files in the folder: name the one to import")
                problems.raise_any()
            path = problems.path = files[0]
        try:
            rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            problems.add(f"cannot be read as CSV ({exc})")
            problems.raise_any()
        heads = [row[0].strip().lower() if row else "" for row in rows[:4]]
        if "individuals" in heads:
            problems.add("row 2: a multi-animal file (an 'individuals' row); only single-animal files are read")
        elif heads[:3] != ["scorer", "bodyparts", "coords"]:
            problems.add("rows 1-3: expected the header rows scorer, bodyparts, coords")
        problems.raise_any()
        bodyparts, coords = rows[1], rows[2]
        first = next((i for i, c in enumerate(coords) if i > 0 and c.strip() in ("x", "y", "likelihood")), None)
        if first is None:
            problems.add("row 3: no x and y columns")
            problems.raise_any()
        columns: dict[int, list[int | None]] = {}  # landmark index -> [x column, y column]
        for col in range(first, len(coords)):
            axis = coords[col].strip()
            if axis not in ("x", "y"):
                continue  # likelihood: a machine's, not a label
            index = problems.landmark(bodyparts[col].strip(), names, f"row 2, column {col + 1}")
            if index is not None:
                columns.setdefault(index, [None, None])[axis == "y"] = col
        for index, (cx, cy) in columns.items():
            if cx is None or cy is None:
                problems.add(f"rows 2-3: bodypart {names[index]!r} needs both an x and a y column")
        problems.raise_any()
        table = new_table(names, path)
        names_of: dict[str, str] = {}  # image label -> its file name (beside the CSV in a DeepLabCut project)
        for number, row in enumerate(rows[3:], start=4):
            if not any(c.strip() for c in row):
                continue
            where = f"row {number}"
            index_cells = [c for c in row[:first] if c.strip()]
            if len(row) != len(coords) or not index_cells:
                problems.add(
                    f"{where}: {len(row)} cells and an image path are expected like the header's {len(coords)}"
                )
                continue
            file_name = PurePosixPath(index_cells[-1].replace("\\", "/")).name
            label = image_id(file_name)
            if label in table.points:
                problems.add(f"{where}: image {label!r} again (first in {table.rows[label]})")
                continue
            points, states = put(table, label, where)
            names_of[label] = file_name
            for index, (cx, cy) in columns.items():
                x, y = _value(row[cx], where, problems), _value(row[cy], where, problems)
                if math.isnan(x) != math.isnan(y):
                    problems.add(f"{where}: bodypart {names[index]!r} has only one coordinate")
                elif not math.isnan(x):
                    points[index], states[index] = (x, y), "placed"
        problems.raise_any()
        return ExchangeImport(table, sources=found_beside(path, names_of.values()))

    def write(self, out: Path, data: ExchangeSet) -> list[Path]:
        if out.suffix.lower() != ".csv":
            out = out / f"{PREFIX}{data.author or 'scn-annotator'}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        scorer = scorer_of(out, data.author or "scn-annotator")
        n = len(data.names)
        header = [
            ["scorer", "", "", *[scorer] * (2 * n)],
            ["bodyparts", "", "", *[name for name in data.names for _ in "xy"]],
            ["coords", "", "", *["x", "y"] * n],
        ]
        rows = []
        table = data.consensus
        for image in data.images:
            if image.name not in table.points:
                continue
            parts = PurePosixPath(image.file_name).parts
            video = parts[-2] if len(parts) > 1 else "images"
            cells = ["labeled-data", video, parts[-1]]
            for (x, y), state in zip(table.points[image.name], state_of(table, image.name), strict=True):
                placed = state in ("placed", "occluded") and not math.isnan(x)
                cells += [repr(float(x)), repr(float(y))] if placed else ["", ""]
            rows.append(cells)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(header + rows)
        atomic_write_text(out, buf.getvalue())
        return [out]


def _value(cell: str, where: str, problems: Problems) -> float:
    text = cell.strip()
    if text in _EMPTY:
        return math.nan
    try:
        return problems.coordinate(float(text), where)
    except ValueError:
        problems.add(f"{where}: {text!r} is not a number")
        return math.nan
