"""The queue of background work that workers take jobs from, and the workers themselves.

Rules the queue keeps, on SQLite and PostgreSQL alike:

- A claim is atomic: two workers never run the same job. On SQLite the claim is a
  ``BEGIN IMMEDIATE`` transaction (one writer at a time); on PostgreSQL an
  advisory lock serialises claims and enqueues of one project.
- At most one training round of a project runs at a time, and requests made
  while one waits are coalesced into it.
- A job whose worker stopped sending heartbeats (killed, machine gone) goes back
  to the queue after a timeout, up to ``MAX_ATTEMPTS`` times; a worker that lost
  its job that way learns it at its next heartbeat and stops.
- Every time the queue stamps or compares comes from the database's clock
  (``Database.now``), never a machine's own: a team's machines share the database,
  not a clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from scn_annotator.errors import ScnError

from .models import Job, JobKind, JobState, Worker
from .records import JobRecord, WorkerRecord
from .session import Database

__all__ = ["MAX_ATTEMPTS", "PENDING", "JobQueue"]

MAX_ATTEMPTS = 3
EXCLUSIVE = (JobKind.ROUND,)  # kinds of which one runs at a time
#: The states of a job that has not ended.
PENDING = (JobState.QUEUED, JobState.RUNNING)
_LOCK_KEY = 0x5C4A  # the advisory lock that serialises queue changes on PostgreSQL


class JobQueue:
    """Jobs and workers of one project database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _serialise(self, s: Session) -> None:
        if not self.db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already does this
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})

    # -- asking ------------------------------------------------------------------

    def enqueue(self, kind: str, params: dict[str, Any] | None = None, coalesce: bool = True) -> int:
        """Queue a job; with ``coalesce``, a job of the same kind already waiting is returned instead."""
        with self.db.write() as s:
            self._serialise(s)
            if coalesce:
                waiting = s.scalar(select(Job).where(Job.kind == kind, Job.state == JobState.QUEUED).order_by(Job.id))
                if waiting is not None:
                    return waiting.id
            job = Job(kind=kind, params=params or {}, created_at=self.db.now(s))
            s.add(job)
            s.flush()
            return job.id

    def job(self, job_id: int) -> JobRecord:
        with self.db.read() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise ScnError(f"no job {job_id}")
            return JobRecord.of(job)

    def list(self, states: Iterable[str] | None = None, kind: str | None = None) -> list[JobRecord]:
        with self.db.read() as s:
            query = select(Job).order_by(Job.id)
            if states is not None:
                query = query.where(Job.state.in_([JobState(x) for x in states]))
            if kind is not None:
                query = query.where(Job.kind == kind)
            return [JobRecord.of(j) for j in s.scalars(query)]

    def request_cancel(self, job_id: int) -> None:
        """A queued job is cancelled at once; a running one at its worker's next heartbeat."""
        with self.db.write() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise ScnError(f"no job {job_id}")
            if job.state == JobState.QUEUED:
                job.state, job.finished_at = JobState.CANCELLED, self.db.now(s)
            elif job.state == JobState.RUNNING:
                job.cancel_requested = True

    # -- working -----------------------------------------------------------------

    def claim(self, worker: str, kinds: Iterable[str] | None = None) -> JobRecord | None:
        """Take the oldest queued job (atomically); None when there is nothing to do."""
        with self.db.write() as s:
            self._serialise(s)
            running = set(s.scalars(select(Job.kind).where(Job.state == JobState.RUNNING)))
            query = select(Job).where(Job.state == JobState.QUEUED).order_by(Job.id)
            if kinds is not None:
                query = query.where(Job.kind.in_(list(kinds)))
            for job in s.scalars(query):
                if job.kind in EXCLUSIVE and job.kind in running:
                    continue
                now = self.db.now(s)
                job.state, job.worker, job.attempts = JobState.RUNNING, worker, job.attempts + 1
                job.started_at = job.heartbeat_at = now
                job.error = None
                return JobRecord.of(job)
            return None

    def heartbeat(self, job_id: int, worker: str, **fields: Any) -> str:
        """Record progress; returns "run", "cancel" (asked to stop) or "lost" (no longer ours)."""
        allowed = {"stage", "progress", "message", "log_tail", "params", "result_model_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not job progress fields: {sorted(unknown)}")
        with self.db.write() as s:
            job = s.get(Job, job_id)
            if job is None or job.state != JobState.RUNNING or job.worker != worker:
                return "lost"
            for key, value in fields.items():
                setattr(job, key, value)
            job.heartbeat_at = self.db.now(s)
            return "cancel" if job.cancel_requested else "run"

    def finish(self, job_id: int, worker: str, state: JobState, error: str | None = None, **fields: Any) -> bool:
        """End a job this worker runs; False if it was no longer ours."""
        with self.db.write() as s:
            job = s.get(Job, job_id)
            if job is None or job.state != JobState.RUNNING or job.worker != worker:
                return False
            for key, value in fields.items():
                setattr(job, key, value)
            job.state, job.error, job.finished_at = JobState(state), error, self.db.now(s)
            return True

    def requeue_stale(self, timeout_s: float) -> list[int]:
        """Running jobs without a heartbeat for ``timeout_s`` go back to the queue (or fail after MAX_ATTEMPTS)."""
        changed = []
        with self.db.write() as s:
            self._serialise(s)
            now = self.db.now(s)
            limit = now - dt.timedelta(seconds=timeout_s)
            for job in s.scalars(select(Job).where(Job.state == JobState.RUNNING, Job.heartbeat_at < limit)):
                lost = f"worker {job.worker} stopped sending heartbeats"
                if job.cancel_requested:  # nobody wants it any more: not run again
                    job.state, job.finished_at, job.stage = JobState.CANCELLED, now, "cancelled"
                elif job.attempts >= MAX_ATTEMPTS:
                    job.state, job.finished_at = JobState.FAILED, now
                    job.error = f"{lost}; gave up after {job.attempts} attempts"
                else:
                    job.state, job.worker, job.stage = JobState.QUEUED, None, "queued again"
                    job.message = lost
                changed.append(job.id)
        return changed

    # -- workers -----------------------------------------------------------------

    def register_worker(self, name: str, device: str) -> int:
        with self.db.write() as s:
            now = self.db.now(s)
            worker = Worker(name=name, device=device, started_at=now, heartbeat_at=now)
            s.add(worker)
            s.flush()
            return worker.id

    def worker_alive(self, worker_id: int, job_id: int | None = None) -> None:
        with self.db.write() as s:
            now = self.db.now(s)
            s.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now, job_id=job_id))

    def worker_stopped(self, worker_id: int) -> None:
        with self.db.write() as s:
            now = self.db.now(s)
            s.execute(update(Worker).where(Worker.id == worker_id).values(stopped_at=now, job_id=None))

    def live_workers(self, within_s: float = 30.0) -> list[WorkerRecord]:
        with self.db.read() as s:
            limit = self.db.now(s) - dt.timedelta(seconds=within_s)
            rows = s.scalars(select(Worker).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= limit))
            return [WorkerRecord.of(w) for w in rows]
