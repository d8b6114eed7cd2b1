"""A project's measurements file: what clinicians read off the landmarks, one measurement a line.

``NAME = distance(A, B)``, ``NAME = angle(A, B, C)`` (at B), ``NAME = line_angle(A, B, C, D)``;
``A`` .. ``D`` are landmark names of the project. Blank lines and lines starting with
``#`` are skipped. For example, for a cephalogram::

    SNA = angle(S, N, A)
    SNB = angle(S, N, B)
    anterior face height = distance(N, Me)

A file is read whole or refused naming the file and line (an unknown landmark, a
wrong number of them, an unknown kind, a name given twice).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..engine.measurements import Measurement
from ..errors import LabelFileError

__all__ = ["parse_measurements", "read_measurements"]

_LINE = re.compile(r"^\s*(?P<name>[^=]+?)\s*=\s*(?P<kind>\w+)\s*\((?P<args>[^)]*)\)\s*$")


def read_measurements(path: str | Path, landmark_names: Sequence[str]) -> list[Measurement]:
    """The measurements ``path`` defines over ``landmark_names``; :class:`LabelFileError` naming the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFileError(path, [f"cannot read measurements ({exc})"]) from None
    return parse_measurements(text, landmark_names, path)


def parse_measurements(text: str, landmark_names: Sequence[str], path: object = "measurements") -> list[Measurement]:
    """:func:`read_measurements` of a file's text (a project keeps its definitions as text, in its settings)."""
    lines = text.splitlines()
    index = {name: k for k, name in enumerate(landmark_names)}
    out: list[Measurement] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise LabelFileError(path, [f"line {number}: expected NAME = distance(A, B) | angle(A, B, C) | ..."])
        name, kind = match["name"], match["kind"].lower()
        args = [a.strip() for a in match["args"].split(",") if a.strip()]
        if kind not in Measurement.ARITY:
            known = ", ".join(Measurement.ARITY)
            raise LabelFileError(path, [f"line {number}: unknown measurement {kind!r} (known: {known})"])
        if len(args) != Measurement.ARITY[kind]:
            raise LabelFileError(path, [f"line {number}: {kind} takes {Measurement.ARITY[kind]} landmarks"])
        unknown = [a for a in args if a not in index]
        if unknown:
            raise LabelFileError(path, [f"line {number}: landmark {unknown[0]!r} is not in the project"])
        if name in seen:
            raise LabelFileError(path, [f"line {number}: {name!r} is defined twice (first on line {seen[name]})"])
        seen[name] = number
        out.append(Measurement(name, kind, tuple(index[a] for a in args)))
    return out
