"""The job queue: atomic claims across processes, coalescing, cancel, stale-job recovery."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import time

import pytest

from scn_annotator.db.jobs import MAX_ATTEMPTS
from scn_annotator.db.store import Project

FORK = mp.get_context("fork")


def _claimer(location, name: str, start, out) -> None:
    project = Project.open(location)
    start.wait()
    taken = []
    while (job := project.jobs.claim(name)) is not None:
        taken.append(job.id)
    out.put((name, taken))


def test_two_workers_never_take_the_same_job(project, backend):
    ids = [project.jobs.enqueue("predict", {"i": i}, coalesce=False) for i in range(60)]
    start, out = FORK.Event(), FORK.Queue()
    procs = [FORK.Process(target=_claimer, args=(backend or project.data_dir, f"w{i}", start, out)) for i in range(2)]
    for p in procs:
        p.start()
    start.set()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join()
    taken = results["w0"] + results["w1"]
    assert sorted(taken) == ids  # every job once, none twice
    assert {j.worker for j in project.jobs.list(["running"])} <= {"w0", "w1"}


def test_one_round_at_a_time_and_requests_coalesce(project):
    first = project.jobs.enqueue("round")
    assert project.jobs.enqueue("round") == first  # still waiting: the same request
    assert project.jobs.claim("a").id == first
    second = project.jobs.enqueue("round")  # one may wait while one runs
    assert second != first and project.jobs.enqueue("round") == second
    assert project.jobs.claim("b") is None  # not while the first round runs
    project.jobs.finish(first, "a", "done")
    assert project.jobs.claim("b").id == second


def test_heartbeat_cancel_and_lost(project):
    job = project.jobs.enqueue("round")
    project.jobs.claim("a")
    assert project.jobs.heartbeat(job, "a", stage="training", progress=0.5) == "run"
    assert project.jobs.job(job).stage == "training"
    project.jobs.request_cancel(job)
    assert project.jobs.heartbeat(job, "a") == "cancel"
    assert project.jobs.heartbeat(job, "someone else") == "lost"
    assert project.jobs.finish(job, "a", "cancelled")
    assert project.jobs.job(job).state == "cancelled"


def test_a_job_whose_worker_died_is_queued_again_then_given_up(project):
    job = project.jobs.enqueue("round")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert project.jobs.claim(f"dead{attempt}").attempts == attempt
        time.sleep(0.05)
        assert project.jobs.requeue_stale(timeout_s=0.01) == [job]
        state = project.jobs.job(job)
        if attempt < MAX_ATTEMPTS:
            assert state.state == "queued" and "stopped sending heartbeats" in state.message
    assert state.state == "failed" and "gave up after 3 attempts" in state.error
    assert project.jobs.heartbeat(job, f"dead{MAX_ATTEMPTS}") == "lost"


def test_a_cancelled_job_whose_worker_died_is_not_run_again(project):
    job = project.jobs.enqueue("round")
    project.jobs.claim("dead")
    project.jobs.request_cancel(job)
    time.sleep(0.05)
    assert project.jobs.requeue_stale(timeout_s=0.01) == [job]
    assert project.jobs.job(job).state == "cancelled"


def test_live_workers(project):
    a = project.jobs.register_worker("host:1", "cpu")
    b = project.jobs.register_worker("host:2", "cpu")
    project.jobs.worker_stopped(b)
    assert [w.id for w in project.jobs.live_workers(30)] == [a]
    time.sleep(0.05)
    assert project.jobs.live_workers(0.01) == []


def test_a_machine_whose_clock_is_off_keeps_its_job_and_stays_live(project, backend, monkeypatch):
    """A GPU server ten minutes behind the team: the queue compares the database's times, not its own."""
    if backend is None:
        pytest.skip("a SQLite project lives on one machine, whose clock is the database's")
    import scn_annotator.db.models as models
    import scn_annotator.db.session as session

    def late() -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=10)

    monkeypatch.setattr(models, "utcnow", late)
    monkeypatch.setattr(session, "utcnow", late)
    job = project.jobs.enqueue("round")
    assert project.jobs.claim("gpu-server").id == job
    assert project.jobs.heartbeat(job, "gpu-server", stage="training") == "run"
    worker = project.jobs.register_worker("gpu-server:1", "cuda")
    project.jobs.worker_alive(worker, job)
    # the annotator's machine looks for stale jobs and live workers with a one-minute tolerance
    assert project.jobs.requeue_stale(timeout_s=60) == []
    assert project.jobs.job(job).state == "running"
    assert [w.id for w in project.jobs.live_workers(within_s=60)] == [worker]
    beat = project.jobs.job(job).heartbeat_at
    assert abs(beat - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)) < dt.timedelta(minutes=1)
