"""Exchange formats of the tools landmark teams already use, each a small module behind one interface.

``FORMATS`` names them; :func:`detect` says which one a file or folder is in, where
that is unambiguous. CSV (``io/landmark_files.py``) stays the project's own format
and is not one of them: it is what ``--format csv`` (the default) means.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ScnError
from .base import ExchangeFormat, ExchangeImage, ExchangeImport, ExchangeSet, ImageSource
from .coco import CocoKeypoints
from .dlc import DeepLabCut
from .labelme import Labelme
from .slicer import SlicerFcsv, SlicerMarkups

__all__ = [
    "FORMATS",
    "ExchangeFormat",
    "ExchangeImage",
    "ExchangeImport",
    "ExchangeSet",
    "ImageSource",
    "detect",
    "exchange_format",
]

FORMATS: dict[str, ExchangeFormat] = {
    f.name: f for f in (CocoKeypoints(), Labelme(), SlicerMarkups(), SlicerFcsv(), DeepLabCut())
}


def exchange_format(name: str) -> ExchangeFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ScnError(f"no exchange format {name!r} (one of {', '.join(FORMATS)}, or csv)") from None


def detect(path: Path) -> ExchangeFormat | None:
    """The exchange format ``path`` is in; None for a CSV landmark file. Raises where it cannot tell."""
    if not path.exists():
        raise ScnError(f"{path}: no such file or folder")
    found = [f for f in FORMATS.values() if f.sniff(path)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ScnError(f"{path}: could be {' or '.join(f.name for f in found)}; say which with --format")
    if path.is_file() and path.suffix.lower() == ".csv":
        return None
    raise ScnError(f"{path}: not a landmark file this app reads; say its format with --format ({', '.join(FORMATS)})")
