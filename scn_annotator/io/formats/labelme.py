"""labelme JSON: one file per image, a ``point`` shape per landmark with ``label`` = the landmark's name.

labelme's coordinates are its canvas's, where pixel ``i`` spans ``[i, i + 1)``: the
centre of the top-left pixel is ``(0.5, 0.5)``, ours is ``(0, 0)``; the half pixel is
added on export and taken off on import, here and nowhere else. The image is the
file ``imagePath`` names (relative to the JSON file), or, when that is not found,
the image embedded as base64 in ``imageData`` (handed to the store to keep as an
image file of the project). States: labelme has only positions, so an occluded
landmark carries the shape flag ``occluded`` and an absent one the image flag
``absent:NAME`` (labelme keeps both, and shows them as check boxes).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from pathlib import Path

from ..images import image_id
from ..landmark_files import LandmarkTable
from .base import (
    ExchangeFormat,
    ExchangeImport,
    ExchangeSet,
    ImageSource,
    Problems,
    new_table,
    put,
    read_json,
    state_of,
    write_json,
)

__all__ = ["Labelme"]

#: labelme's pixel-corner origin against our pixel-centre one.
HALF_PIXEL = 0.5
_ABSENT = "absent:"
_MAGIC = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"BM": ".bmp", b"II*\x00": ".tif", b"MM\x00*": ".tif"}
LABELME_VERSION = "5.5.0"


def _suffix(data: bytes, named: str) -> str:
    """The file type of embedded image bytes: from their first bytes, else from the name the file gave."""
    for magic, suffix in _MAGIC.items():
        if data.startswith(magic):
            return suffix
    return Path(named).suffix.lower() or ".png"


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*.json") if not p.name.endswith(".mrk.json")) if path.is_dir() else [path]


class Labelme(ExchangeFormat):
    name = "labelme"
    description = "labelme JSON, one file per image (a folder of them), point shapes labelled with landmark names"
    one_file = False

    def sniff(self, path: Path) -> bool:
        files = _files(path) if path.exists() else []
        try:
            first = read_json(files[0]) if files else None
        except Exception:
            return False
        return isinstance(first, dict) and "shapes" in first

    def read(self, path: Path, names: Sequence[str]) -> ExchangeImport:
        files = _files(path)
        problems = Problems(path)
        if not files:
            problems.add("no labelme .json files in it")
        table = new_table(names, path)
        sources: list[ImageSource] = []
        for file in files:
            entry = str(file.relative_to(path)) if path.is_dir() else file.name
            try:
                doc = read_json(file)
            except Exception as exc:
                problems.add(f"{entry}: {getattr(exc, 'problems', [exc])[0]}")
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
                problems.add(f"{entry}: not a labelme file (no 'shapes' list)")
                continue
            label, source = self._image(file, entry, doc, problems)
            if label is None:
                continue
            if label in table.points:
                problems.add(f"{entry}: image {label!r} again (first in {table.rows[label]})")
                continue
            if source is not None:
                sources.append(source)
            self._shapes(doc, entry, label, names, table, problems)
        problems.raise_any()
        return ExchangeImport(table, sources=sources)

    @staticmethod
    def _image(file: Path, entry: str, doc: dict, problems: Problems) -> tuple[str | None, ImageSource | None]:
        named = doc.get("imagePath") or ""
        if not isinstance(named, str):
            problems.add(f"{entry}: 'imagePath' must be a file name, not {named!r}")
            return None, None
        label = image_id(named.replace("\\", "/")) if named else image_id(file)
        found = (file.parent / named.replace("\\", "/")) if named else None
        if found is not None and found.is_file():
            return label, ImageSource(label, path=found.resolve())
        data = doc.get("imageData")
        if data:
            try:
                decoded = base64.b64decode(data, validate=True)
            except (binascii.Error, TypeError, ValueError):
                problems.add(f"{entry}: 'imageData' is not base64")
                return None, None
            return label, ImageSource(label, data=decoded, suffix=_suffix(decoded, named))
        return label, None  # the image must be in the project already

    @staticmethod
    def _shapes(
        doc: dict, entry: str, label: str, names: Sequence[str], table: LandmarkTable, problems: Problems
    ) -> None:
        points, states = put(table, label, entry)
        seen: dict[int, int] = {}
        for i, shape in enumerate(doc["shapes"]):
            where = f"{entry}, shapes[{i}]"
            if not isinstance(shape, dict):
                problems.add(f"{where}: not an object")
                continue
            if shape.get("shape_type", "point") != "point":
                continue  # a polygon or box of something else: not a landmark
            index = problems.landmark(shape.get("label"), names, f"{where} label")
            xy = shape.get("points")
            if not (isinstance(xy, list) and len(xy) == 1 and isinstance(xy[0], list) and len(xy[0]) == 2):
                problems.add(f"{where}: a point shape needs 'points': [[x, y]], not {xy!r}")
                continue
            if index is None:
                continue
            if index in seen:
                problems.add(f"{where}: landmark {names[index]!r} again (first in shapes[{seen[index]}])")
                continue
            seen[index] = i
            x, y = (problems.coordinate(v, where) for v in xy[0])
            points[index] = x - HALF_PIXEL, y - HALF_PIXEL
            flags = shape.get("flags") or {}
            states[index] = "occluded" if isinstance(flags, dict) and flags.get("occluded") else "placed"
        for flag, on in (doc.get("flags") or {}).items():
            if isinstance(flag, str) and flag.startswith(_ABSENT) and on:
                index = problems.landmark(flag[len(_ABSENT) :], names, f"{entry}, flags[{flag!r}]")
                if index is not None and index in seen:
                    problems.add(f"{entry}: landmark {names[index]!r} is flagged absent but has a point")
                elif index is not None:
                    states[index] = "absent"

    def write(self, out: Path, data: ExchangeSet) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        table = data.consensus
        for image in data.images:
            shapes, flags = [], {}
            if image.name in table.points:
                for name, (x, y), state in zip(data.names, table.points[image.name], state_of(table, image.name)):
                    if state == "absent":
                        flags[f"{_ABSENT}{name}"] = True
                    elif state in ("placed", "occluded"):
                        shapes.append(
                            {
                                "label": name,
                                "points": [[float(x) + HALF_PIXEL, float(y) + HALF_PIXEL]],
                                "group_id": None,
                                "description": "",
                                "shape_type": "point",
                                "flags": {"occluded": True} if state == "occluded" else {},
                            }
                        )
            doc = {
                "version": LABELME_VERSION,
                "flags": flags,
                "shapes": shapes,
                "imagePath": Path(os.path.relpath(image.path, (out / image.name).parent.resolve())).as_posix(),
                "imageData": None,
                "imageHeight": image.height,
                "imageWidth": image.width,
            }
            path = out / f"{image.name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, doc)
            written.append(path)
        return written
