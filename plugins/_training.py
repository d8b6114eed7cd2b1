"""The training panel: model versions, strategy, retraining policy, and the worker's progress.

Training never runs in napari's process: start queues a round in the project and
starts a worker process when none is alive. This panel only reads the job's state
from the store and shows it with napari's progress bar; reading a row takes a
millisecond, so the viewer never waits on training. It reads once a second while a
job is pending and every ten seconds otherwise (to notice a model another machine
trained), and a progress bar is shown only while a live worker runs the job: an idle
app draws nothing and costs next to no CPU.

The bar is the panel's own, not napari's ``progress``: napari shows an animated
activity indicator in its status bar while any of its progress bars exists, which
repainted the main window about 30 times a second and cost 83 % of a core (with
software OpenGL) during every round, on a 2-core machine the round's own CPU
(``benchmarks/idle.py --during-round``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton, SpinBox, TextEdit
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from scn_annotator.active.policy import RoundPolicy
from scn_annotator.active.pool import POOL_STRATEGIES
from scn_annotator.active.scores import STRATEGIES
from scn_annotator.app.annotation_session import AnnotationSession
from scn_annotator.app.worker import HEARTBEAT_S, STALE_AFTER_S, ensure_worker
from scn_annotator.db.jobs import PENDING
from scn_annotator.db.models import JobKind, JobState

__all__ = ["TrainingPanel"]

BUSY_POLL_MS, IDLE_POLL_MS = 1000, 10_000


class TrainingPanel(Container):
    """Thin controls over the project's job queue and model versions."""

    def __init__(self, on_new_model: Callable[[], None], on_strategy: Callable[[str], None]) -> None:
        self.model_label = Label(value="no project")
        self.versions = ComboBox(label="versions", choices=[])
        self.rollback = PushButton(text="Make this version current")
        self.strategy = ComboBox(label="rank by", choices=[*STRATEGIES, *POOL_STRATEGIES])
        self.auto_every = SpinBox(
            label="retrain after (0: never)",
            min=0,
            max=1000,
            value=0,
            tooltip=("queue a round automatically after this many newly done images (0: never, only on request)"),
        )
        self.start = PushButton(text="Train and re-rank")
        self.cancel = PushButton(text="Cancel")
        self.state = Label(value="")
        self.bar = ProgressBar(value=0, min=0, max=100, label="round", visible=False)
        self.log = TextEdit(value="")
        self.log.native.setReadOnly(True)
        self.log.native.setMaximumHeight(110)
        super().__init__(
            widgets=[
                self.model_label,
                self.versions,
                self.rollback,
                self.strategy,
                self.auto_every,
                self.start,
                self.cancel,
                self.state,
                self.bar,
                self.log,
            ],
            labels=True,
        )
        self.session: AnnotationSession | None = None
        self.location: str | None = None
        self.job_id: int | None = None
        self._bar: ProgressBar | None = None  # the bar, while it is shown
        self._version: int | None = None
        self._reported: int | None = None  # the last finished job the viewer was refreshed for
        self._on_new_model, self._on_strategy = on_new_model, on_strategy
        self._started: list[int] = []  # worker processes this panel started
        self._starting_until = 0.0
        self.start.changed.connect(self.start_round)
        self.cancel.changed.connect(self.cancel_round)
        self.rollback.changed.connect(self.make_current)
        self.strategy.changed.connect(self._strategy_changed)
        self.auto_every.changed.connect(self._policy_changed)
        self.timer = QTimer()
        self.timer.setInterval(IDLE_POLL_MS)
        self.timer.timeout.connect(self.poll)

    # -- state -------------------------------------------------------------------

    def attach(self, session: AnnotationSession, location: str) -> None:
        self.session, self.location = session, location
        policy = RoundPolicy.of(session.project)
        with self.strategy.changed.blocked(), self.auto_every.changed.blocked():
            self.strategy.value = session.strategy if session.strategy in self.strategy.choices else policy.strategy
            self.auto_every.value = policy.auto_every
        running = session.project.jobs.list(PENDING, kind=JobKind.ROUND)
        self.job_id = running[-1].id if running else None
        self._reported = None
        self.refresh_models()
        self.poll()
        self.timer.start()

    def refresh_models(self) -> None:
        project = self.session.project
        versions = project.models.all()
        current = project.models.current()
        self._version = current.id if current else None
        if current is None:
            self.model_label.value = "no model yet: mark a few images done, then train"
        else:
            shown = current.metrics.error_text
            error = f", validation {shown}" if shown else ""
            self.model_label.value = f"model version {current.id} of {len(versions)}{error}"
        choices = []
        for v in reversed(versions):
            error = v.metrics.error_text or "-"
            mark = " (current)" if v.is_current else ""
            choices.append((f"v{v.id}: {error}, {v.created_at:%Y-%m-%d %H:%M}{mark}", v.id))
        self.versions.choices = choices
        if choices:
            self.versions.value = self._version or choices[0][1]

    # -- actions -------------------------------------------------------------------

    def start_round(self) -> None:
        project = self.session.project
        self.job_id = project.jobs.enqueue(JobKind.ROUND, {"done_count": project.counts()["done"], "trigger": "viewer"})
        project.jobs.requeue_stale(STALE_AFTER_S)  # a job whose worker died waits for the new one
        pid = self._ensure_worker()
        self.state.value = f"queued as job {self.job_id}" + (f"; started worker {pid}" if pid else "")
        self.poll()

    def cancel_round(self) -> None:
        if self.job_id is not None:
            self.session.project.jobs.request_cancel(self.job_id)
            self.state.value = "cancelling..."

    def make_current(self) -> None:
        if self.versions.value is not None and self.versions.value != self._version:
            self.session.project.models.make_current(int(self.versions.value))
            self.refresh_models()
            self._on_new_model()

    def auto_trigger(self) -> None:
        """After an image is marked done: queue a round if the policy says so."""
        from scn_annotator.app.worker import maybe_enqueue_round

        job = maybe_enqueue_round(self.session.project)
        if job is not None:
            self.job_id = job
            self._ensure_worker()
            self.poll()

    def _ensure_worker(self) -> int | None:
        pid = ensure_worker(self.location, self.session.project)
        if pid is not None:
            self._started.append(pid)
            self._starting_until = time.monotonic() + 30.0
        return pid

    def _stop_workers(self) -> None:
        """The app is closing: stop the workers it started, unless they have work; say so when they do."""
        if not self._started or self.session is None:
            return
        try:
            # a job someone cancelled is no work: the worker would only run on for its idle timeout
            pending = [j for j in self.session.project.jobs.list(PENDING) if not j.cancel_requested]
        except Exception:  # the store is gone: leave the workers to their idle timeout
            return
        if pending:
            show_info(
                f"a worker keeps running {len(pending)} queued job(s) in the background and stops "
                "10 minutes after the last one"
            )
            return
        for pid in self._started:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
                os.kill(pid, signal.SIGTERM)
        self._started.clear()

    def _strategy_changed(self, name: str) -> None:
        policy = RoundPolicy.of(self.session.project)
        policy.strategy = name
        policy.save(self.session.project)
        self._on_strategy(name)

    def _policy_changed(self, every: int) -> None:
        policy = RoundPolicy.of(self.session.project)
        policy.auto_every = int(every)
        policy.save(self.session.project)

    # -- polling -------------------------------------------------------------------

    def poll(self) -> None:
        """Show the round's state; when it ends or another model became current, refresh the viewer."""
        if self.session is None:
            return
        project = self.session.project
        job = project.jobs.job(self.job_id) if self.job_id is not None else None
        ended = job is None or job.finished
        # a pending job nobody works on (no live worker) shows no progress, and can be started again
        starting = time.monotonic() < self._starting_until  # a worker this panel just started is loading
        worked = not ended and (starting or bool(project.jobs.live_workers(within_s=3 * HEARTBEAT_S + 5)))
        self.start.enabled, self.cancel.enabled = not worked, not ended
        if job is not None:
            stage = job.stage or job.state
            error = f": {job.error}" if job.error else ""
            self.state.value = f"job {job.id}: {job.state}, {stage} {100 * job.progress:.0f} %{error}"
            if not ended and not worked:
                self.state.value = f"job {job.id} is {job.state} but no worker runs it: press Train to start one"
            if job.log_tail and job.log_tail != self.log.value:
                self.log.value = job.log_tail
                bar = self.log.native.verticalScrollBar()
                bar.setValue(bar.maximum())
        if worked and job.state == JobState.RUNNING:
            if self._bar is None:
                self._bar = self.bar
                self.bar.visible = True
            value = round(100 * job.progress)
            if self.bar.value != value:  # a repaint only when the figure changes
                self.bar.value = value
        elif self._bar is not None:  # done, cancelled, failed, still queued, or its worker died
            self.bar.visible = False
            self._bar = None
        interval = BUSY_POLL_MS if not ended else IDLE_POLL_MS
        if self.timer.interval() != interval:
            self.timer.setInterval(interval)
        current = project.models.current()
        newly_ended = job is not None and ended and job.id != self._reported
        if (current.id if current else None) != self._version or newly_ended:
            self.refresh_models()  # a new current model, or fresh predictions of a finished round
            self._on_new_model()
        if newly_ended:
            self._reported = job.id

    def close(self) -> None:
        self.timer.stop()
        self._stop_workers()
        self.bar.visible = False
        self._bar = None
