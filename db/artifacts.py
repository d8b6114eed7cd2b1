"""Files every machine of a team project reaches through the database alone.

A team shares a PostgreSQL database and nothing else: the GPU server that trains
and predicts, and each annotator's laptop, have their own data folders and their
own copies of the images. So the model checkpoints and heatmap caches the server
writes go into the database too, in chunks, and a machine that lacks one fetches
it into its own data folder the first time it is asked for (the files on disk are
a cache). Why the database and not a shared mount: it is the one thing every
machine of the team already reaches, with the team's credentials and backups, and
an artifact is written in the same transaction as the model version or prediction
that names it, so nobody ever sees a version whose checkpoint is not there yet.

A SQLite project lives in one folder, on one machine; its files stay files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from scn_annotator.io.atomic import atomic_open

from .models import Artifact, ArtifactChunk

__all__ = ["CHUNK_BYTES", "fetch", "store"]

#: Bytes per row of ``artifact_chunks``: large enough to be few rows, small enough to stream.
CHUNK_BYTES = 4 * 1024 * 1024


def store(s: Session, path: Path, relative: str, kind: str, version_id: int | None) -> Artifact:
    """Put the file ``path`` into the database as ``relative`` (replacing an earlier one), chunk by chunk."""
    old = s.scalar(select(Artifact).where(Artifact.path == relative))
    if old is not None:
        s.delete(old)
        s.flush()
    artifact = Artifact(path=relative, kind=kind, model_version_id=version_id, size=0, sha256="")
    s.add(artifact)
    s.flush()
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for seq, chunk in enumerate(iter(lambda: fh.read(CHUNK_BYTES), b"")):
            row = ArtifactChunk(artifact_id=artifact.id, seq=seq, data=chunk)
            s.add(row)
            s.flush()
            s.expunge(row)  # one chunk in memory at a time
            digest.update(chunk)
            size += len(chunk)
    artifact.size, artifact.sha256 = size, digest.hexdigest()
    return artifact


def fetch(s: Session, relative: str, target: Path) -> bool:
    """Write the artifact ``relative`` to ``target`` (atomically, checked); False when the database has none.

    A local file of the right size is taken as the cached copy and left alone.
    """
    artifact = s.scalar(select(Artifact).where(Artifact.path == relative))
    if artifact is None:
        return False
    if target.is_file() and target.stat().st_size == artifact.size:
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    seqs = s.scalars(
        select(ArtifactChunk.seq).where(ArtifactChunk.artifact_id == artifact.id).order_by(ArtifactChunk.seq)
    ).all()
    with atomic_open(target, suffix=target.suffix) as fh:
        for seq in seqs:  # one chunk in memory at a time
            data = s.scalar(
                select(ArtifactChunk.data).where(ArtifactChunk.artifact_id == artifact.id, ArtifactChunk.seq == seq)
            )
            digest.update(data)
            fh.write(data)
        if digest.hexdigest() != artifact.sha256:
            raise OSError(f"{relative}: the copy in the database is damaged (checksum differs)")
    return True
