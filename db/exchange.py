"""Importing the exchange formats of other tools (COCO, labelme, 3D Slicer, DeepLabCut) into a project.

The format modules (``io/formats``) read the files; here the images they name are
added and their points checked and written through the same steps as a CSV's
(``db/transfer.py``), all in one transaction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scn_annotator.engine.geometry import SpacingRule
from scn_annotator.errors import ScnError
from scn_annotator.io.atomic import atomic_open
from scn_annotator.io.formats import ImageSource, detect, exchange_format

from .store import Project
from .transfer import (
    ImportReport,
    LabelImportReport,
    add_images,
    image_matcher,
    scan_images,
    write_consensus,
    write_reading,
)

__all__ = ["ExchangeReport", "import_exchange"]


@dataclass
class ExchangeReport:
    """What an exchange-format import did: its format, the images it added, the points it wrote."""

    format: str
    images: ImportReport
    labels: LabelImportReport
    readers: list[str] = field(default_factory=list)  # whose readings it brought


def import_exchange(
    project: Project,
    path: str | Path,
    format_name: str | None = None,
    *,
    reader: str | None = None,
    spacing_rule: SpacingRule | None = None,
    overwrite: bool = False,
    author: str | None = None,
    outside: str = "error",
) -> ExchangeReport:
    """Import a COCO, labelme, 3D Slicer or DeepLabCut file (or folder), detected from the file where unambiguous.

    The images the file names (found beside it, or embedded in it) are added first and
    its points checked as a CSV's are, all in one transaction: a bad file leaves the
    project as it was. Points whose reader the file names (COCO's ``reader``) become that
    reader's reading; the rest go into the consensus, or with ``reader`` into that reader's.
    """
    path = Path(path)
    fmt = exchange_format(format_name) if format_name else detect(path)
    if fmt is None:
        raise ScnError(f"{path}: a CSV landmark file; import it with --labels (no --format)")
    data = fmt.read(path, project.landmark_names)
    files = _image_files(project, data.sources)
    if files and project.image_root is None:  # the folder that holds them all
        project.set_image_root(Path(os.path.commonpath([f.resolve().parent for f in files])))
    images, rows, changed = scan_images(project, files, None)
    if images.failed:
        raise ScnError("; ".join(f"{file}: {reason}" for file, reason in images.failed))
    report = ExchangeReport(fmt.name, images, LabelImportReport(), sorted(data.readings))
    checks = {"spacing_rule": spacing_rule, "author": author, "outside": outside}
    with project.db.write() as s:
        add_images(project, s, rows, changed)
        s.flush()
        if data.consensus is not None and reader:
            write_reading(project, s, reader, data.consensus, report.labels, **checks)
            report.readers = sorted({reader, *report.readers})
        elif data.consensus is not None:
            write_consensus(project, s, data.consensus, report.labels, overwrite=overwrite, **checks)
        for name, table in data.readings.items():
            write_reading(project, s, name, table, report.labels, **checks)
        match = image_matcher(s)
        for label, key in data.keys.items():
            if (row := match(label)) is not None:
                row.meta = {**row.meta, "exchange_id": key}
    return report


def _image_files(project: Project, sources: Sequence[ImageSource]) -> list[Path]:
    """The image files of an exchange import: those found, and embedded ones decoded once into the project's
    ``images`` folder (a re-import finds them there and adds nothing)."""
    files = []
    for source in sources:
        if source.path is not None:
            files.append(source.path)
            continue
        assert source.data is not None
        target = project.data_dir / "images" / f"{source.label}{source.suffix}"
        if target.exists() and target.read_bytes() != source.data:
            raise ScnError(f"{target}: already holds another image called {source.label!r}; nothing imported")
        if not target.exists():
            with atomic_open(target) as fh:
                fh.write(source.data)
        files.append(target)
    return files
