"""The landmark-names file that ``init --landmark-names`` reads: one landmark a line.

``name[, description][, object=STRUCTURE]``. Blank lines and lines starting with
``#`` are skipped. ``object=`` says which structure a landmark belongs to (the four
corners of a vertebra, a tooth's points) where its name does not say it by a shared
prefix (``T1_tl`` .. ``T1_br``); such a layout is learned in two stages
(``engine/objects.py``). A landmark without ``object=`` is grouped by its name, as
before the field existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import LabelFileError

__all__ = ["LandmarkNames", "read_landmark_names"]

_OBJECT = "object="


@dataclass(frozen=True)
class LandmarkNames:
    names: list[str]
    descriptions: list[str]
    objects: list[str | None]  # None: inferred from the name


def read_landmark_names(path: str | Path) -> LandmarkNames:
    """Read a names file whole, or refuse it naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFileError(path, [f"cannot read landmark names ({exc})"]) from None
    names: list[str] = []
    descriptions: list[str] = []
    objects: list[str | None] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        name, rest = fields[0], fields[1:]
        given = [f for f in rest if f.lower().startswith(_OBJECT)]
        if not name:
            raise LabelFileError(path, [f"line {number}: a landmark needs a name"])
        if name in seen:
            first = f"first on line {seen[name]}"
            raise LabelFileError(path, [f"line {number}: landmark {name!r} is given twice ({first})"])
        if len(given) > 1:
            raise LabelFileError(path, [f"line {number}: more than one object= for {name!r}"])
        obj = given[0][len(_OBJECT) :].strip() if given else None
        if given and not obj:
            raise LabelFileError(path, [f"line {number}: object= needs a name"])
        seen[name] = number
        names.append(name)
        descriptions.append(", ".join(f for f in rest if not f.lower().startswith(_OBJECT)))
        objects.append(obj)
    if not names:
        raise LabelFileError(path, ["no landmark names in it"])
    return LandmarkNames(names, descriptions, objects)
