"""COCO keypoints: one JSON file with ``images``, ``annotations`` and a ``categories`` entry naming the keypoints.

Keypoints are ``x, y, v`` triples in pixel coordinates whose integers are pixel
centres, as ours are (detectron2 adds 0.5 to reach its corner convention; we add
nothing). The visibility flag is exactly our three states: ``v = 2`` placed, ``1``
occluded (position estimated), ``0`` absent, whose position is written as ``0, 0``
and ignored on import. COCO has no way to say "not annotated yet" inside an
annotation; an export lists such keypoints in a ``missing_keypoints`` field of our
own, which other tools ignore, so that a re-import does not turn them into absent
ones. Images without any annotation have no annotation entry.

Several readers: COCO holds any number of annotations per image. The consensus is the
annotation without a ``reader`` field; each reader's own points are an annotation
with ``"reader": NAME``. Image ``id``\\ s and ``file_name``\\ s round-trip: an
export reuses the id an imported file gave the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..landmark_files import LandmarkTable
from .base import (
    ExchangeFormat,
    ExchangeImport,
    ExchangeSet,
    Problems,
    found_beside,
    new_table,
    put,
    read_json,
    state_of,
    write_json,
)

__all__ = ["CocoKeypoints"]

_V = {2: "placed", 1: "occluded", 0: "absent"}
_V_OF = {state: v for v, state in _V.items()}


def _category(doc: dict, names: Sequence[str], problems: Problems) -> dict | None:
    """The one category with keypoints (the one whose keypoints are the project's, where there are several)."""
    categories = doc.get("categories")
    if not isinstance(categories, list) or not categories:
        problems.add("'categories': missing or empty (it names the keypoints)")
        return None
    with_keypoints = [c for c in categories if isinstance(c, dict) and isinstance(c.get("keypoints"), list)]
    if len(with_keypoints) > 1:
        with_keypoints = [c for c in with_keypoints if set(c["keypoints"]) <= set(names)] or with_keypoints
    if len(with_keypoints) != 1:
        problems.add(f"'categories': {len(with_keypoints)} categories have 'keypoints'; expected one")
        return None
    category = with_keypoints[0]
    for i, name in enumerate(category["keypoints"]):
        problems.landmark(name, names, f"categories[{categories.index(category)}].keypoints[{i}]")
    if len(set(category["keypoints"])) != len(category["keypoints"]):
        problems.add(f"categories[{categories.index(category)}].keypoints: a name is given twice")
    return category


def _images(doc: dict, problems: Problems) -> dict[Any, str]:
    """image id -> file name."""
    images = doc.get("images")
    if not isinstance(images, list):
        problems.add("'images': missing or not a list")
        return {}
    out: dict[Any, str] = {}
    for i, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            problems.add(f"images[{i}]: needs 'id' and 'file_name'")
        elif image["id"] in out:
            problems.add(f"images[{i}]: id {image['id']!r} is given twice")
        else:
            out[image["id"]] = image["file_name"]
    return out


class CocoKeypoints(ExchangeFormat):
    name = "coco"
    description = "COCO keypoints JSON (x, y, v triples; v = 0 absent, 1 occluded, 2 placed)"
    one_file = True

    def sniff(self, path: Path) -> bool:
        if not path.is_file() or path.suffix.lower() != ".json":
            return False
        try:
            doc = read_json(path)
        except Exception:
            return False
        return isinstance(doc, dict) and {"images", "annotations", "categories"} <= set(doc)

    def read(self, path: Path, names: Sequence[str]) -> ExchangeImport:
        doc = read_json(path)
        problems = Problems(path)
        if not isinstance(doc, dict):
            problems.add("is not a COCO file (a JSON object with images, annotations, categories)")
            problems.raise_any()
        category = _category(doc, names, problems)
        files = _images(doc, problems)
        annotations = doc.get("annotations")
        if not isinstance(annotations, list):
            problems.add("'annotations': missing or not a list")
        problems.raise_any()
        assert category is not None and isinstance(annotations, list)
        keypoint_names = list(category["keypoints"])
        consensus = new_table(names, path)
        readings: dict[str, LandmarkTable] = {}
        for i, annotation in enumerate(annotations):
            where = f"annotations[{i}]"
            if not isinstance(annotation, dict):
                problems.add(f"{where}: not an object")
                continue
            if annotation.get("category_id") != category.get("id"):
                continue  # another category's annotation (a bounding box of something else)
            reader = annotation.get("reader")
            if reader is not None and (not isinstance(reader, str) or not reader.strip()):
                problems.add(f"{where}: 'reader' must be a name, not {reader!r}")
                continue
            table = consensus if reader is None else readings.setdefault(reader.strip(), new_table(names, path))
            self._annotation(annotation, where, files, keypoint_names, names, table, problems)
        problems.raise_any()
        keys = {name: key for key, name in files.items() if isinstance(key, int)}
        sources = found_beside(path, files.values())
        return ExchangeImport(consensus if consensus.points else None, readings, sources, keys)

    @staticmethod
    def _annotation(
        annotation: dict,
        where: str,
        files: dict[Any, str],
        keypoint_names: list[str],
        names: Sequence[str],
        table: LandmarkTable,
        problems: Problems,
    ) -> None:
        label = files.get(annotation.get("image_id"))
        if label is None:
            problems.add(f"{where}: image_id {annotation.get('image_id')!r} is not in 'images'")
            return
        keypoints = annotation.get("keypoints")
        k = len(keypoint_names)
        if not isinstance(keypoints, list) or len(keypoints) != 3 * k:
            count = len(keypoints) if isinstance(keypoints, list) else "no"
            problems.add(f"{where}: {count} keypoint values, expected 3 x {k} (x, y, v for each of {k} keypoints)")
            return
        if label in table.points:
            whose = f"of reader {annotation['reader']!r} " if "reader" in annotation else ""
            problems.add(f"{where}: a second annotation {whose}for image {label!r} (first: {table.rows[label]})")
            return
        points, states = put(table, label, f"{where} (image {label!r})")
        missing = annotation.get("missing_keypoints", [])
        for j, name in enumerate(keypoint_names):
            index = list(names).index(name)
            x, y, v = keypoints[3 * j : 3 * j + 3]
            what = f"{where}, keypoint {name!r}"
            if v not in (0, 1, 2) or isinstance(v, bool):
                problems.add(f"{what}: visibility v = {v!r}, expected 0 (absent), 1 (occluded) or 2 (placed)")
                continue
            if v == 0:
                states[index] = "" if name in missing else "absent"
                continue
            points[index] = problems.coordinate(x, what), problems.coordinate(y, what)
            states[index] = _V[int(v)]

    def write(self, out: Path, data: ExchangeSet) -> list[Path]:
        names = data.names
        images = [
            {"id": image.key, "file_name": image.file_name, "width": image.width, "height": image.height}
            for image in data.images
        ]
        annotations: list[dict[str, Any]] = []
        for reader, table in [(None, data.consensus), *sorted(data.readings.items())]:
            for image in data.images:
                if image.name in table.points:
                    annotation = _annotation(table, image.name, image.key, names)
                    annotation["id"] = len(annotations) + 1
                    if reader is not None:
                        annotation["reader"] = reader
                    annotations.append(annotation)
        doc = {
            "info": {"description": "landmarks exported by scn-annotator"},
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": 1, "name": "landmarks", "supercategory": "anatomy", "keypoints": list(names), "skeleton": []}
            ],
        }
        write_json(out, doc)
        return [out]


def _annotation(table: LandmarkTable, label: str, image_id: int, names: list[str]) -> dict[str, Any]:
    points, states = table.points[label], state_of(table, label)
    keypoints: list[float] = []
    missing = []
    for name, (x, y), state in zip(names, points, states, strict=True):
        if state in ("placed", "occluded") and not np.isnan(x):
            keypoints += [float(x), float(y), _V_OF[state]]
        else:
            keypoints += [0, 0, 0]
            if state != "absent":
                missing.append(name)
    placed = points[~np.isnan(points[:, 0]) & np.isin(states, ("placed", "occluded"))]
    if len(placed):
        (x0, y0), (x1, y1) = placed.min(axis=0), placed.max(axis=0)
        bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    annotation: dict[str, Any] = {
        "image_id": image_id,
        "category_id": 1,
        "keypoints": keypoints,
        "num_keypoints": len(placed),
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": 0,
    }
    if missing:
        annotation["missing_keypoints"] = missing
    return annotation
