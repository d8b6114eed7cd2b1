"""What crosses the boundary between a project and an exchange file, in both directions.

A format module turns its files into an :class:`ExchangeImport` (landmark tables in
the project's own convention: pixels, ``(0, 0)`` the centre of the top-left pixel,
states ``placed`` / ``occluded`` / ``absent``, ``""`` for a landmark not annotated)
and writes an :class:`ExchangeSet` back out. Everything a format does differently
(a half-pixel shift, physical coordinates, a visibility flag) stays inside its
module; the checks against the project (unknown images, points outside their image,
human corrections) are the store's, the same for every format and for CSV.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...engine.geometry import ImageGeometry
from ...errors import LabelFileError
from ..atomic import atomic_write_text
from ..images import image_id
from ..landmark_files import LandmarkTable

__all__ = [
    "STATES",
    "ExchangeFormat",
    "ExchangeImage",
    "ExchangeImport",
    "ExchangeSet",
    "ImageSource",
    "Problems",
    "found_beside",
    "new_table",
    "put",
    "read_json",
    "state_of",
    "write_json",
]

#: A landmark's states as the tables carry them; ``""`` is a landmark nobody annotated.
STATES = ("placed", "occluded", "absent")


@dataclass(frozen=True)
class ExchangeImage:
    """One image of an export, as the files name and place it."""

    name: str  # the project's name for it
    file_name: str  # its path relative to the image root (posix), or absolute where it lies elsewhere
    path: Path  # where the file is on this machine
    width: int
    height: int
    geometry: ImageGeometry | None  # the header's, for a format in physical coordinates (None for the others)
    key: int  # its id in formats that number images (COCO): the one it came with, else the project's


@dataclass
class ExchangeSet:
    """What an export writes: the consensus, and each reader's own points where the format can say whose."""

    names: list[str]
    images: list[ExchangeImage]
    consensus: LandmarkTable  # keyed by image name; states in ``extra[name]["state"]``
    readings: dict[str, LandmarkTable] = field(default_factory=dict)
    author: str = ""  # who exports (a DeepLabCut scorer)


@dataclass(frozen=True)
class ImageSource:
    """Where an imported file's image is: a file found beside it, or the bytes embedded in it."""

    label: str  # the name the landmark tables use for the image
    path: Path | None = None
    data: bytes | None = None
    suffix: str = ".png"  # for embedded bytes: the file type they are


@dataclass
class ExchangeImport:
    """What an exchange file brings in: landmark tables keyed by the file's image labels."""

    consensus: LandmarkTable | None
    readings: dict[str, LandmarkTable] = field(default_factory=dict)
    sources: list[ImageSource] = field(default_factory=list)  # the images, where the format says where they are
    keys: dict[str, int] = field(default_factory=dict)  # image label -> the id the file gave it

    def tables(self) -> list[LandmarkTable]:
        return ([self.consensus] if self.consensus is not None else []) + list(self.readings.values())


class Problems:
    """Every problem of a file, collected, then raised at once naming the file (a file is taken whole or not at all)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[str] = []

    def add(self, text: str) -> None:
        self.found.append(text)

    def raise_any(self) -> None:
        if self.found:
            raise LabelFileError(self.path, self.found)

    def coordinate(self, value: Any, where: str) -> float:
        """A finite number, or NaN after recording the problem (``where`` names the entry)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.add(f"{where}: {value!r} is not a finite number")
            return math.nan
        return float(value)

    def landmark(self, name: Any, known: Sequence[str], where: str) -> int | None:
        """The index of a landmark name in the project, or None after recording the problem."""
        if isinstance(name, str) and name in known:
            return list(known).index(name)
        self.add(f"{where}: {name!r} is not a landmark of the project (it has {', '.join(list(known)[:4])}, ...)")
        return None


def read_json(path: Path) -> Any:
    """A JSON file, or a LabelFileError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise LabelFileError(path, ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFileError(path, [f"cannot be read ({exc})"]) from None
    except ValueError as exc:
        raise LabelFileError(path, [f"is not valid JSON ({exc})"]) from None


def found_beside(path: Path, file_names: Iterable[str]) -> list[ImageSource]:
    """The images a one-file format names that lie beside it (relative to its folder): added with its points."""
    sources = []
    for name in file_names:
        found = path.parent / name.replace("\\", "/")
        if found.is_file():
            sources.append(ImageSource(image_id(found), path=found.resolve()))
    return sources


def write_json(path: Path, doc: Any) -> None:
    """A JSON file written atomically; floats as Python writes them (shortest exact), never NaN."""
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def new_table(names: Sequence[str], path: Path) -> LandmarkTable:
    """An empty table of the project's landmarks, to fill image by image with :func:`put`."""
    return LandmarkTable(list(names), {}, "px", path, layout="exchange")


def put(table: LandmarkTable, label: str, entry: str) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 2) points and (N,) states of ``label`` in ``table``, created empty (NaN, ``""``) on first use."""
    if label not in table.points:
        n = table.num_landmarks
        width = 3 if table.unit == "lps" else 2
        table.points[label] = np.full((n, width), np.nan)
        table.extra[label] = {"state": np.full(n, "", dtype=object)}
        table.rows[label] = entry
    return table.points[label], table.extra[label]["state"]


def state_of(table: LandmarkTable, label: str) -> np.ndarray:
    """``label``'s (N,) states: the file's where it has them, else placed where there is a position."""
    states = table.extra.get(label, {}).get("state")
    if states is not None:
        return np.asarray(states, dtype=object)
    return np.where(np.isnan(table.points[label][:, 0]), "", "placed").astype(object)


class ExchangeFormat(ABC):
    """One exchange format: a small module that reads its files and writes them."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: does an export write one file (``out`` is that file) or a folder of files, one per image?
    one_file: ClassVar[bool]
    #: are its positions physical (mm in the scanner's frame), so that an export needs each image's header geometry?
    physical: ClassVar[bool] = False

    @abstractmethod
    def sniff(self, path: Path) -> bool:
        """Is ``path`` (a file or a folder) in this format? Cheap, and never raises."""

    @abstractmethod
    def read(self, path: Path, names: Sequence[str]) -> ExchangeImport:
        """Read ``path`` whole, or raise LabelFileError naming the file and every bad entry."""

    @abstractmethod
    def write(self, out: Path, data: ExchangeSet) -> list[Path]:
        """Write ``data`` (each file atomically); the files written."""
