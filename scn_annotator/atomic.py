"""Files that are either completely written or not there at all.

Model checkpoints, exports, heatmap caches and label files are written to a
temporary file in the target folder, flushed to disk, and renamed into place: a
crash, a kill or a full disk leaves the old file (or none), never half a new one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_copy", "atomic_open", "atomic_write_text"]


@contextmanager
def atomic_open(path: str | Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text.encode("utf-8"))


def atomic_copy(source: str | Path, target: str | Path) -> None:
    with atomic_open(target) as fh, open(source, "rb") as src:
        shutil.copyfileobj(src, fh)
