"""How the napari app feels: opening the next image, saving a correction, staying responsive.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/gui.py

Builds a project of 2,000 x 2,000 generated radiographs, trains a first model so
every image has predictions and cached heatmaps, then, in a real napari viewer:

1. opening the next image (decode, landmarks, heatmaps, layers, one repaint), with
   the prefetch the app does and without it;
2. a correction: the drag-end event to the committed row, and the whole handler;
3. the longest stall of the event loop while a worker process trains next to it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def build_project(root: Path, count: int, size: int) -> Path:
    from scn_annotator.active.policy import RoundPolicy
    from scn_annotator.app.sample_project import render_hand, sample_project
    from scn_annotator.app.worker import Worker

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    truth = {}
    for i in range(count):
        pixels, points = render_hand(rng, (size, size), spacing=0.1)
        image = sitk.GetImageFromArray(pixels)
        image.SetSpacing((0.1, 0.1))
        sitk.WriteImage(image, str(root / "images" / f"big{i:02d}.mha"))
        truth[f"big{i:02d}"] = points
    project = sample_project(root / "project", root / "images", truth, list(truth)[:4], user="bench")
    RoundPolicy(initial_steps=60, overrides={"input_size": [256, 192], "filters": 16, "sc_filters": 16}).save(project)
    project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)
    return project.data_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--stall-seconds", type=float, default=60.0)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="scn-gui-bench-"))
    try:
        t = time.perf_counter()
        location = build_project(root, args.images, args.size)
        print(f"project of {args.images} {args.size} x {args.size} images built in {time.perf_counter() - t:.0f} s")
        measure(location, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(location: Path, args: argparse.Namespace) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from scn_annotator.plugins._widget import AnnotatorWidget

    viewer = napari.Viewer()
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget)
    app = QApplication.instance()
    widget.open_project(str(location))
    app.processEvents()
    _opening(widget, app, args)
    _saving(widget)
    _stalls(widget, app, args)


def _opening(widget, app, args: argparse.Namespace) -> None:
    """The next image on screen, prefetched (as while the annotator works on one) and cold."""

    def open_next(prefetched: bool) -> float:
        following = widget.session.next_image(include_done=True)
        if not prefetched:
            widget.session._prefetched.clear()
        else:
            widget.session._prefetch(following)
            widget.session._prefetched[following].result()  # as when the annotator spends seconds on an image
        t = time.perf_counter()
        widget.open_image(following)
        app.processEvents()  # the repaint
        return 1000 * (time.perf_counter() - t)

    for label, prefetched in (("prefetched (the normal case)", True), ("cold (no prefetch)", False)):
        times = [open_next(prefetched) for _ in range(10)]
        print(
            f"open next {args.size} x {args.size} image, {label}: median {statistics.median(times):.0f} ms, "
            f"max {max(times):.0f} ms over {len(times)}"
        )


def _saving(widget) -> None:
    """A drag's end: the store write and re-read, and the whole handler with the redraw."""
    from napari.layers.base._base_constants import ActionType

    saves, handlers = [], []
    session_move = widget.session.move

    def timed_move(*a):
        t = time.perf_counter()
        result = session_move(*a)
        saves.append(1000 * (time.perf_counter() - t))
        return result

    widget.session.move = timed_move
    points = widget.layers["points"]
    for i in range(40):
        row, col = points.data[i % len(points.data)]
        points.data[i % len(points.data)] = (row + 1.0, col + 1.0)
        t = time.perf_counter()
        points.events.data(
            value=points.data, action=ActionType.CHANGED, data_indices=(i % len(points.data),), vertex_indices=((),)
        )
        handlers.append(1000 * (time.perf_counter() - t))
        points = widget.layers["points"]
    print(
        f"correction saved (session.move: store write + re-read): median {statistics.median(saves):.1f} ms, "
        f"max {max(saves):.1f} ms; whole drag-end handler incl. redraw: median {statistics.median(handlers):.1f} ms, "
        f"max {max(handlers):.1f} ms"
    )


def _stalls(widget, app, args: argparse.Namespace) -> None:
    """The event loop's longest gaps while a worker process trains a round."""
    from qtpy.QtCore import QElapsedTimer, QTimer

    from scn_annotator.active.policy import RoundPolicy
    from scn_annotator.db.models import JobState

    overrides = {"input_size": [256, 192], "filters": 16, "sc_filters": 16}  # as built: it fine-tunes
    RoundPolicy(initial_steps=60, round_steps=100_000, overrides=overrides).save(widget.session.project)
    widget.training.start_round()
    clock, gaps = QElapsedTimer(), []
    clock.start()
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    QTimer.singleShot(int(1000 * args.stall_seconds), app.quit)
    app.exec()  # napari's own event loop, with the training panel polling the store once a second
    timer.stop()
    project, job_id = widget.session.project, widget.training.job_id  # quitting the loop closed the window
    job = project.jobs.job(job_id)
    project.jobs.request_cancel(job_id)
    gaps = np.array(gaps[1:])
    print(
        f"worker at the end of the measurement: {job.state}, {job.stage} {100 * job.progress:.0f} %; "
        f"log: {job.log_tail.splitlines()[-1] if job.log_tail else ''} {job.error or ''}"
    )
    print(
        f"event loop during training ({job.stage}, {len(gaps)} ticks of 10 ms over {args.stall_seconds:.0f} s): "
        f"longest gap {gaps.max():.0f} ms, 99th percentile {np.percentile(gaps, 99):.0f} ms"
    )
    t = time.monotonic()
    while project.jobs.job(job_id).state == JobState.RUNNING and time.monotonic() - t < 30:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
