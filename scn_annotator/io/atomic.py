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


def _mode_for(path: Path) -> int:
    """The mode the new file gets: the replaced file's, else what the umask gives a new file.

    ``mkstemp`` creates 0600 whatever the umask, which would lock a team's shared data
    folder (checkpoints, heatmap caches, exports) to whoever wrote last.
    """
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Linux tells the umask without changing it; elsewhere set-and-restore (a brief race with other threads).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` only if the block succeeds.

    The data is flushed to disk before the rename and the rename itself is made
    durable by syncing the folder, so after a power cut the file is the old one or
    the new one. The file keeps the mode of the one it replaces (or the umask's).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text.encode("utf-8"))


def atomic_copy(source: str | Path, target: str | Path) -> None:
    with atomic_open(target) as fh, open(source, "rb") as src:
        shutil.copyfileobj(src, fh)
