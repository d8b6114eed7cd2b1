"""The background worker: training rounds and re-ranking, in their own process.

Training never runs in the napari process (it would freeze the viewer and, with
napari's thread workers, slow it down). A worker is a separate OS process,
``scn-annotator worker PROJECT``, on the annotator's machine or on a GPU server
that shares the team's PostgreSQL. It takes jobs from the project's queue:

``round``
    Fine-tune the current model (warm start) on the images marked done, validate
    it against the current one on the same validation images, register it, make it
    current only if it is not worse, then re-predict every image that is not done
    and store its landmarks, heatmap caches and acquisition scores.
``predict``
    Only the second half, with the current model.

Everything a person wants to see of it goes through the store: stage, step,
loss, validation error, a heartbeat and the tail of the log. A cancel request
stops it within seconds. A worker killed at any moment leaves the current model
untouched (a version is registered in one transaction at the very end of
training); its job goes back to the queue when the heartbeat times out, and a
round whose model was already registered resumes at re-prediction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..active.policy import RoundPolicy, round_config
from ..db.models import JobKind, JobState
from ..db.records import JobRecord
from ..db.store import Project
from ..errors import ScnError

__all__ = ["Worker", "ensure_worker", "maybe_enqueue_round"]

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
STALE_AFTER_S = 60.0


def maybe_enqueue_round(project: Project) -> int | None:
    """The automatic trigger: a round after every ``auto_every`` newly done images.

    Counts done images against the count the last round was queued at; at most one
    round waits at a time (a new request joins it). Returns the id of the round
    this call queued, or None when it queued nothing.
    """
    policy = RoundPolicy.of(project)
    if policy.auto_every <= 0:
        return None
    done = project.counts()["done"]
    rounds = project.jobs.list(kind=JobKind.ROUND)
    last = max((j.params.get("done_count", 0) for j in rounds), default=0)
    if done - last < policy.auto_every or done < 2:
        return None
    if any(j.state == JobState.QUEUED for j in rounds):
        return None
    return project.jobs.enqueue(JobKind.ROUND, {"done_count": done, "trigger": "auto"})


def ensure_worker(location: str | Path, project: Project, once: bool = False) -> int | None:
    """Start a worker process for the project unless one is alive. Returns its pid, or None.

    The worker outlives the caller (its own session) and stops after ten idle
    minutes, or after one job with ``once``. Its output goes to ``worker.log``.
    """
    if project.jobs.live_workers(within_s=3 * HEARTBEAT_S + 5):
        return None
    log_file = project.worker_log
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stop = ["--once"] if once else ["--idle-exit", "600"]
    # the same data folder and image root as the caller's (a team machine may have set its own)
    where = ["--data-dir", str(project.data_dir)]
    if project.image_root is not None:
        where += ["--image-root", str(project.image_root)]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scn_annotator", "worker", str(location), *stop, *where],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)  # runs the worker's ``finally``: it is recorded as stopped at once


class _StoppedError(Exception):
    """Raised inside a job when it was cancelled or taken away from this worker."""


class Worker:
    """Takes jobs from one project and runs them; see the module docstring."""

    def __init__(
        self,
        location: str | Path,
        *,
        device: str | None = None,
        image_root: str | None = None,
        data_dir: str | None = None,
        name: str | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        self.location = location
        self.project = Project.open(location, image_root=image_root, data_dir=data_dir, user="worker")
        self.device = device
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.worker_id: int | None = None
        self._job: JobRecord | None = None
        self._state: dict[str, Any] = {}
        self._log: deque[str] = deque(maxlen=40)
        self._stop = threading.Event()  # cancel or lost, seen by the heartbeat thread
        self._ended = threading.Event()  # run() returned: the heartbeat thread ends too
        self._lock = threading.Lock()

    # -- the loop ---------------------------------------------------------------

    def run(self, once: bool = False, idle_exit: float | None = None, poll_s: float = 2.0) -> int:
        """Work until told to stop: ``once`` after one job, ``idle_exit`` after that long without one."""
        from ..engine.device import best_device

        self.worker_id = self.project.jobs.register_worker(self.name, self.device or str(best_device()))
        previous = None
        if threading.current_thread() is threading.main_thread():  # a polite stop (the app closing) ends cleanly
            previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._ended.clear()
        beat = threading.Thread(target=self._beat, daemon=True)
        beat.start()
        self._clean_leftovers()
        done, idle_since = 0, time.monotonic()
        try:
            while True:
                self.project.jobs.requeue_stale(self.stale_after_s)
                job = self.project.jobs.claim(self.name)
                if job is None:
                    if once or (idle_exit is not None and time.monotonic() - idle_since > idle_exit):
                        return done
                    time.sleep(poll_s)
                    continue
                self.run_job(job)
                done += 1
                idle_since = time.monotonic()
                if once:
                    return done
        finally:
            self._job = None
            self._ended.set()
            beat.join(timeout=self.heartbeat_s + 5)  # no heartbeat after the worker is recorded as stopped
            self.project.jobs.worker_stopped(self.worker_id)
            if previous is not None:  # a worker run inside another program leaves its handler as it was
                signal.signal(signal.SIGTERM, previous)

    def _clean_leftovers(self) -> None:
        """Remove the temporary folders of trainings that a killed worker left behind."""
        limit = time.time() - self.stale_after_s
        for path in self.project.checkpoint_dir.glob(".training-*"):
            if path.stat().st_mtime < limit:
                shutil.rmtree(path, ignore_errors=True)

    def _beat(self) -> None:
        while not self._ended.is_set():
            try:
                with self._lock:
                    job, state = self._job, dict(self._state)
                    state["log_tail"] = "\n".join(self._log)
                if job is not None:
                    answer = self.project.jobs.heartbeat(job.id, self.name, **state)
                    if answer != "run":
                        self._stop.set()
                self.project.jobs.worker_alive(self.worker_id, job.id if job else None)
            except Exception:
                log.exception("heartbeat failed")
            self._ended.wait(self.heartbeat_s)

    def report(self, stage: str | None = None, progress: float | None = None, message: str | None = None) -> None:
        """Update what the store shows (sent with the next heartbeat)."""
        with self._lock:
            if stage is not None:
                self._state["stage"] = stage
            if progress is not None:
                self._state["progress"] = float(progress)
            if message is not None:
                self._state["message"] = message
                self._log.append(f"{time.strftime('%H:%M:%S')} {message}")
        if message:
            log.info(message)

    def _check(self) -> bool:
        return self._stop.is_set()

    # -- jobs -------------------------------------------------------------------

    def run_job(self, job: JobRecord) -> str:
        """Run one claimed job to its end; returns the state it ended in."""
        with self._lock:
            self._job, self._state, self._log = job, {"stage": "starting", "progress": 0.0}, deque(maxlen=40)
        self._stop.clear()
        self.report("starting", 0.0, f"{self.name} took job {job.id} ({job.kind})")
        jobs = self.project.jobs
        try:
            if job.kind == JobKind.ROUND:
                result = self._round(job)
            elif job.kind == JobKind.PREDICT:
                result = self._predict(job)
            else:
                raise ScnError(f"unknown job kind {job.kind!r}")
            state, error = JobState.DONE, None
        except _StoppedError:
            state, error, result = JobState.CANCELLED, None, {}
        except SystemExit:  # SIGTERM (the app closed): a job someone cancelled ends cancelled, not stale
            with contextlib.suppress(Exception):
                if jobs.job(job.id).cancel_requested:
                    jobs.finish(job.id, self.name, JobState.CANCELLED)
            raise
        except ScnError as exc:
            state, error, result = (JobState.CANCELLED, None, {}) if self._check() else (JobState.FAILED, str(exc), {})
        except Exception as exc:
            log.exception("job %s failed", job.id)
            state, error, result = JobState.FAILED, f"{type(exc).__name__}: {exc}", {}
        with self._lock:
            self._state["log_tail"] = "\n".join(self._log)
            final = {k: v for k, v in self._state.items() if k in ("stage", "progress", "message", "log_tail")}
            self._job = None
        final.update(result)
        if state == JobState.DONE:
            final.update(stage="done", progress=1.0)
        jobs.finish(job.id, self.name, state, error, **final)
        return state

    def _round(self, job: JobRecord) -> dict[str, Any]:
        from ..engine.trainer import TrainProgress
        from .project_operations import train_project

        project = self.project
        version = job.result_model_id
        if version is None:  # (a re-run of a round whose model is registered skips straight to predicting)
            policy = RoundPolicy.of(project)
            current = project.models.current()
            cfg = round_config(policy, first=current is None)
            from ..engine.training import warm_startable

            if current is not None and not warm_startable(project.models.file(current), cfg):
                # the policy changed the architecture: the current weights do not fit, start afresh
                current, cfg = None, round_config(policy, first=True)
            init = project.models.file(current) if current else None
            how = " (fine-tuning the current model)" if init else " (from scratch)"
            self.report("loading", 0.0, f"training on {project.counts()['done']} done images, {cfg.steps} steps{how}")

            def progress(p: TrainProgress) -> None:
                message = None
                if p.val_error is not None:  # a validation step: worth a line in the log
                    message = f"step {p.step}/{p.total_steps}: validation error {p.val_error:.2f} {p.unit}"
                done = p.step / max(p.total_steps, 1)
                if cfg.refine is None:
                    self.report("training", 0.8 * done, message)
                elif p.stage == "refine":  # the local stage: the last part of training's share
                    self.report("refining", 0.65 + 0.15 * done, message)
                else:
                    self.report("training", 0.65 * done, message)

            try:
                out = train_project(
                    project,
                    cfg,
                    init_from=init,
                    progress=progress,
                    should_stop=self._check,
                    max_minutes=policy.max_minutes,
                    device=self.device,
                    note=f"job {job.id}",
                )
            except ScnError:
                if self._check():
                    raise _StoppedError from None
                raise
            version = out.version_id
            self.report("validating", 0.8, f"{out.result.describe()}; {out.verdict()}")
            with self._lock:
                self._state["result_model_id"] = version
        return {"result_model_id": version, **self._predict(job)}

    def _predict(self, job: JobRecord) -> dict[str, Any]:
        from ..active.pool import is_pool_strategy
        from ..active.scores import Scoring, mc_passes_for
        from .project_operations import predict_project

        policy = RoundPolicy.of(self.project)
        scoring = Scoring(mc_passes=mc_passes_for([policy.strategy]), round=job.id)
        start = self._state.get("progress", 0.0) or 0.0
        self.report("predicting", start, "re-predicting the images not done")

        def progress(done: int, total: int) -> None:
            self.report("predicting", start + (1 - start) * done / max(total, 1))

        count, failed = predict_project(
            self.project,
            progress=progress,
            should_stop=self._check,
            scorer=scoring,
            device=self.device,
            embed=is_pool_strategy(policy.strategy),  # the pool ranks by what the images look like to the model
        )
        if self._check():
            raise _StoppedError
        for name, reason in failed:
            self.report(message=f"skipped {name}: {reason}")
        self.report("scoring", 1.0, f"predicted and scored {count} images")
        return {}
