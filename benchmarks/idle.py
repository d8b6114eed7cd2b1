"""What the app costs while nobody touches it: after a round was cancelled, and while one trains (not a test).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/idle.py --seconds 60
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/idle.py --during-round --seconds 30

With ``--during-round`` the round is not cancelled: the napari process's CPU is read
while the worker (another process) trains, which is what the app costs the round it
watches on a 2-core machine.

Builds a generated sample project (24 phantoms, 8 annotated), opens the app on it
in a real napari window, starts a training round (a worker process starts) and
cancels it, waits until the job has ended, then lets the event loop run untouched
and reads the napari process's own CPU time (user + system, its threads included;
the worker is another process and not counted). Reports the CPU share of one core,
whether a progress bar is left, and the panel's polling interval.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path


def pump(app, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def untouched(seconds: float) -> tuple[float, float]:
    """Run the event loop untouched, as when the annotator looks away: (CPU s of this process, wall s).

    With ``SCN_PROFILE=FILE`` the loop runs under cProfile (the main thread: where the time goes).
    """
    from qtpy.QtCore import QEventLoop, QTimer

    before, wall = cpu_seconds(), time.monotonic()
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    if os.environ.get("SCN_PROFILE"):
        import cProfile

        cProfile.runctx("loop.exec()", globals(), {"loop": loop}, os.environ["SCN_PROFILE"])
    else:
        loop.exec()
    return cpu_seconds() - before, time.monotonic() - wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--during-round", action="store_true", help="measure while a round trains, not after")
    args = ap.parse_args()
    from qtpy.QtWidgets import QApplication

    from scn_annotator.app.sample_project import generate_sample, sample_project
    from scn_annotator.io.landmark_files import read_landmarks
    from scn_annotator.plugins.app import launch

    root = Path(tempfile.mkdtemp(prefix="scn-idle-"))
    truth = read_landmarks(generate_sample(root / "sample", count=24, seed=1))
    project = sample_project(root / "project", root / "sample" / "images", truth.points, sorted(truth.points)[:8])
    project.close()
    viewer = launch(str(root / "project"), block=False)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    pump(app, 3)
    panel = viewer.window.dock_widgets["Landmark annotator"].training
    if args.during_round:  # a round long enough to outlast the measurement
        from scn_annotator.active.policy import RoundPolicy

        RoundPolicy(initial_steps=100_000, max_minutes=args.seconds / 60 + 2).save(panel.session.project)
    panel.start_round()
    jobs = panel.session.project.jobs
    if args.during_round:
        deadline = time.monotonic() + 120
        while jobs.job(panel.job_id).stage != "training" and time.monotonic() < deadline:
            pump(app, 0.5)
        pump(app, 5)
        used, elapsed = untouched(args.seconds)
        job = jobs.job(panel.job_id)
        print(
            f"while a round trains (job {job.state}, {job.stage} {100 * job.progress:.0f} %): napari process "
            f"used {used:.2f} CPU s in {elapsed:.0f} s = {100 * used / elapsed:.1f} % of one core; progress bar "
            f"shown: {panel._bar is not None}; panel polls every {panel.timer.interval() / 1000:.0f} s"
        )
        panel.cancel_round()
        panel.close()
        viewer.close()
        return
    pump(app, 8)
    panel.cancel_round()
    deadline = time.monotonic() + 120
    while not jobs.job(panel.job_id).finished and time.monotonic() < deadline:
        pump(app, 0.5)
    pump(app, 2)
    state = jobs.job(panel.job_id).state
    used, elapsed = untouched(args.seconds)
    print(
        f"after start and cancel (job {state}): napari process used {used:.2f} CPU s in {elapsed:.0f} s "
        f"= {100 * used / elapsed:.1f} % of one core; progress bar left: {panel._bar is not None}; "
        f"panel polls every {panel.timer.interval() / 1000:.0f} s"
    )
    panel.close()
    viewer.close()


if __name__ == "__main__":
    main()
