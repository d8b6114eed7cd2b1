"""The background worker: a real round end to end, cancel, a kill mid-training, the automatic trigger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from scn_annotator.active.policy import RoundPolicy
from scn_annotator.active.ranking import ranked_queue
from scn_annotator.app.worker import Worker, maybe_enqueue_round


def test_a_round_trains_predicts_scores_and_the_next_round_changes_the_ranking(
    labelled_project, tmp_path, annotate, tiny_policy
):
    project, truth = labelled_project
    first = project.jobs.enqueue("round")
    assert Worker(project.data_dir, device="cpu").run(once=True) == 1
    job = project.jobs.job(first)
    assert job.state == "done" and job.progress == 1.0, job
    assert "is now the current model" in job.log_tail and job.result_model_id == 1
    assert project.models.current().id == 1
    queue = ranked_queue(project, "sc_la_mass")
    scored = [r for r in queue.rows if r.score is not None]
    assert len(scored) == 16 and all(r.status == "new" for r in scored)
    doubts = [v for r in queue.rows for _, v in r.doubtful]
    assert all(v >= queue.threshold for v in doubts)
    assert 0.08 * 16 * 15 <= len(doubts) <= 0.12 * 16 * 15  # the top tenth of all landmarks are doubtful
    assert project.predictions.heatmap_file(project.predictions.latest(scored[0].image_id)) is not None
    before = [r.name for r in scored]

    annotate(project, truth, [r.name for r in scored[:6]], tmp_path)  # the annotator follows the queue
    # long enough that the fine-tuned model is really better (80 steps were not, measured fairly)
    RoundPolicy(initial_steps=40, round_steps=200, overrides=tiny_policy).save(project)
    second = project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)
    assert project.jobs.job(second).state == "done"
    versions = project.models.all()
    assert len(versions) == 2 and versions[1].parent_id == 1
    assert project.models.current().id == 2, versions[1].metrics  # better on the same validation images
    after = [r.name for r in ranked_queue(project, "sc_la_mass").rows if r.score is not None]
    assert len(after) == 10  # the done images have left the queue
    assert after != [n for n in before if n in after]  # and the new model ranks the rest differently
    assert project.annotations.of(scored[0].name)  # annotations the person made are still there


def _worker(project, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "scn_annotator", "worker", str(project.data_dir), "--device", "cpu", *extra],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )


def _wait(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_cancel_stops_a_running_round_within_seconds(labelled_project, tiny_policy):
    project, _ = labelled_project
    RoundPolicy(initial_steps=100_000, overrides=tiny_policy).save(project)
    job = project.jobs.enqueue("round")
    proc = _worker(project, "--once")
    try:
        _wait(lambda: project.jobs.job(job).stage == "training")
        asked = time.monotonic()
        project.jobs.request_cancel(job)
        _wait(lambda: project.jobs.job(job).state == "cancelled", timeout=30)
        assert time.monotonic() - asked < 15
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert project.models.current() is None and project.models.all() == []


def test_a_worker_killed_mid_training_changes_nothing_and_its_job_runs_again(labelled_project, tiny_policy):
    project, _ = labelled_project
    project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)  # version 1
    RoundPolicy(initial_steps=40, round_steps=600, overrides=tiny_policy).save(project)
    job = project.jobs.enqueue("round")
    proc = _worker(project, "--once")
    _wait(lambda: project.jobs.job(job).stage == "training")
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert project.jobs.job(job).state == "running"  # as the dead worker left it
    assert project.models.current().id == 1 and len(project.models.all()) == 1
    RoundPolicy(initial_steps=40, round_steps=20, overrides=tiny_policy).save(project)
    Worker(project.data_dir, device="cpu", stale_after_s=1.0).run(once=True)  # requeues, then runs it
    final = project.jobs.job(job)
    assert final.state == "done" and final.attempts == 2, final
    assert len(project.models.all()) == 2


def test_the_automatic_trigger_fires_once_for_n_completions(labelled_project, tmp_path):
    project, truth = labelled_project
    policy = RoundPolicy.of(project)
    policy.auto_every = 3
    policy.save(project)
    names = sorted(truth.points)
    assert maybe_enqueue_round(project) is not None  # 8 done, no round yet
    project.jobs.request_cancel(project.jobs.list(["queued"])[0].id)
    project.jobs.enqueue("round", {"done_count": 8})  # pretend the last round saw 8
    project.jobs.claim("w")  # and is running
    project.set_status(names[8], "done")
    project.set_status(names[9], "done")
    assert maybe_enqueue_round(project) is None  # 2 new: not yet
    project.set_status(names[10], "done")
    job = maybe_enqueue_round(project)
    assert job is not None  # the third completion fires
    project.set_status(names[11], "done")
    assert maybe_enqueue_round(project) is None  # one more completion: nothing new
    assert [j.id for j in project.jobs.list(["queued"], kind="round")] == [job]


def test_a_new_architecture_starts_afresh_instead_of_failing(labelled_project, tiny_policy):
    project, _ = labelled_project
    project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)
    wider = {**tiny_policy, "filters": 12, "sc_filters": 12}
    RoundPolicy(initial_steps=20, round_steps=10, overrides=wider).save(project)
    job = project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)
    done = project.jobs.job(job)
    assert done.state == "done", done.error
    assert "from scratch" in done.log_tail
    config = project.models.all()[-1].config
    assert config is not None and config.network.filters == 12


def test_a_model_registered_by_hand_is_fine_tuned(labelled_project):
    """A model trained elsewhere (no config in the store) still warm-starts: its checkpoint says how it was built."""
    project, _ = labelled_project
    project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)
    trained = project.models.file(project.models.current())
    project.models.register(trained, make_current=True, note="trained elsewhere")
    assert project.models.current().config is None
    job = project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)
    done = project.jobs.job(job)
    assert done.state == "done", done.error
    assert "fine-tuning the current model" in done.log_tail


def test_a_worker_leaves_the_callers_sigterm_handler_as_it_was(labelled_project):
    project, _ = labelled_project

    def mine(*_args):
        raise AssertionError("not called here")

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert Worker(project.data_dir, device="cpu").run(once=True) == 0  # nothing queued: it ends at once
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_round_under_a_pool_strategy_stores_the_models_view_of_every_image_and_ranks_by_it(
    labelled_project, tiny_policy
):
    """Before the round: the typical images first, from thumbnails; after it: the model's features, every image."""
    from scn_annotator.engine.inference import Predictor

    project, _ = labelled_project
    RoundPolicy(initial_steps=40, round_steps=20, overrides=tiny_policy, strategy="auto", auto_switch=4).save(project)
    cold = ranked_queue(project)
    assert cold.model_version is None and all("(pixels)" in r.reason for r in cold.rows if r.status != "done")
    project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)
    version = project.models.current().id
    features = project.embeddings.get("features", version)
    assert len(features) == 24  # the 16 predicted and the 8 done ones
    queue = ranked_queue(project)
    open_rows = [r for r in queue.rows if r.status != "done"]
    assert len(open_rows) == 16 and all("(features)" in r.reason for r in open_rows)
    assert all("auto, 8 labelled -> disagreement" in r.reason for r in open_rows)  # 8 done >= the switch at 4
    predictor = Predictor.from_checkpoint(project.models.file(project.models.current()), device="cpu")
    image = project.images(["new"])[0]
    np.testing.assert_allclose(predictor.predict(project.resolve(image), embed=True).embedding, features[image.id])
    np.testing.assert_allclose(predictor.embed(project.resolve(image)), features[image.id], rtol=1e-5, atol=1e-6)
