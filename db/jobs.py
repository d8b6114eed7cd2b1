"""The queue of background work (training, re-prediction) that the worker takes jobs from."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from scn_annotator.errors import ScnError

from .models import Job, JobState, utcnow
from .session import Database

__all__ = ["JobQueue"]


class JobQueue:
    """Jobs of one project database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(self, kind: str, params: dict[str, Any] | None = None) -> int:
        with self.db.write() as s:
            job = Job(kind=kind, params=params or {})
            s.add(job)
            s.flush()
            return job.id

    def job(self, job_id: int) -> dict[str, Any]:
        with self.db.read() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise ScnError(f"no job {job_id}")
            return _job_dict(job)

    def list(self, states: Iterable[str] | None = None) -> list[dict[str, Any]]:
        with self.db.read() as s:
            query = select(Job).order_by(Job.id)
            if states is not None:
                query = query.where(Job.state.in_([JobState(x) for x in states]))
            return [_job_dict(j) for j in s.scalars(query)]

    def request_cancel(self, job_id: int) -> None:
        with self.db.write() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise ScnError(f"no job {job_id}")
            if job.state == JobState.QUEUED:
                job.state, job.finished_at = JobState.CANCELLED, utcnow()
            elif job.state == JobState.RUNNING:
                job.cancel_requested = True


def _job_dict(job: Job) -> dict[str, Any]:
    out = {c.name: getattr(job, c.name) for c in Job.__table__.columns}
    out["state"] = job.state.value
    return out


def _job_dict(job: Job) -> dict[str, Any]:
    out = {c.name: getattr(job, c.name) for c in Job.__table__.columns}
    out["state"] = job.state.value
    return out
