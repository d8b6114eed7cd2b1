"""What the app costs while nobody touches it, after a training round was started and cancelled (not a test).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/idle.py --seconds 60

Builds a generated sample project (24 phantoms, 8 annotated), opens the app on it
in a real napari window, starts a training round (a worker process starts) and
cancels it, waits until the job has ended, then lets the event loop run untouched
and reads the napari process's own CPU time (user + system, its threads included;
the worker is another process and not counted). Reports the CPU share of one core,
whether a progress bar is left, and the panel's polling interval.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication
    from scn_annotator.plugins.app import launch

    from scn_annotator.labels import read_landmarks
    from scn_annotator.sample import generate_sample, sample_project

    root = Path(tempfile.mkdtemp(prefix="scn-idle-"))
    truth = read_landmarks(generate_sample(root / "sample", count=24, seed=1))
    project = sample_project(root / "project", root / "sample" / "images", truth.points, sorted(truth.points)[:8])
    project.close()
    viewer = launch(str(root / "project"), block=False)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    pump(app, 3)
    panel = viewer.window.dock_widgets["Landmark annotator"].training
    panel.start_round()
    pump(app, 8)
    panel.cancel_round()
    jobs = panel.session.project.jobs
    deadline = time.monotonic() + 120
    while jobs.job(panel.job_id).state not in ("done", "failed", "cancelled") and time.monotonic() < deadline:
        pump(app, 0.5)
    pump(app, 2)
    state = jobs.job(panel.job_id).state
    before, wall = cpu_seconds(), time.monotonic()
    loop = QEventLoop()
    QTimer.singleShot(int(args.seconds * 1000), loop.quit)
    loop.exec()  # the event loop, untouched, as when the annotator looks away
    used, elapsed = cpu_seconds() - before, time.monotonic() - wall
    print(f"after start and cancel (job {state}): napari process used {used:.2f} CPU s in {elapsed:.0f} s "
          f"= {100 * used / elapsed:.1f} % of one core; progress bar left: {panel._bar is not None}; "
          f"panel polls every {panel.timer.interval() / 1000:.0f} s")  # fmt: skip
    panel.close()
    viewer.close()


if __name__ == "__main__":
    main()
