"""Screenshots of the app on real radiographs (../shared/data), for the README; needs Xvfb.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/real_screenshots.py \\
        hand benchmarks/out/scn-all-bf16.pt
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/real_screenshots.py \\
        spine benchmarks/out/spine-cpu-auto.pt

Builds a throwaway project of a few test images of the anatomy (never copied into the
repository) with the given model as its current model, predicts them, opens the app
and writes docs/screenshots/<anatomy>.png: the image as it opens. Then it corrects the
landmark the model doubts most (moved to its true position, as an annotator would),
waits for the other proposals to follow, and writes <anatomy>_following.png.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from screenshots import pump  # the same folder: run as a script, it is on the path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    anatomy, model = sys.argv[1], Path(sys.argv[2])
    from qtpy.QtWidgets import QApplication

    from scn_annotator.active.scores import Scoring
    from scn_annotator.app.project_operations import predict_project
    from scn_annotator.db.store import Project
    from scn_annotator.db.transfer import import_images
    from scn_annotator.io.landmark_files import read_landmarks
    from scn_annotator.plugins.app import launch

    labels = SHARED / anatomy / ("all.csv" if anatomy == "hand" else "landmarks.csv")
    table = read_landmarks(labels)
    names = sorted(table.points)[:4]  # the hand split's test images start the sorted permutation elsewhere;
    if anatomy == "spine":  # spines of patients the benchmark's models never saw (its split by patient, seed 0)
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from spine import _split

        names = _split(table, 0, 0.2)[0][:4]
    root = Path(tempfile.mkdtemp(prefix=f"scn-{anatomy}-"))  # any few images show the app
    (root / "images").mkdir()
    for name in names:
        source = next((SHARED / anatomy / "images").glob(f"{name}.*"))
        (root / "images" / source.name).symlink_to(source)
    project = Project.create(root / "project", table.names, user="screenshots")
    import_images(project, root / "images")
    project.models.register(model, make_current=True)
    predict_project(project, scorer=Scoring())  # scored: the queue and the doubt halos as after a round
    project.close()

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = launch(str(root / "project"), block=False)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    pump(app, 2)
    viewer.reset_view()
    widget = viewer.window.dock_widgets["Landmark annotator"]
    pump(app, 1)
    viewer.window.screenshot(str(OUT / f"{anatomy}.png"), canvas_only=False)

    view = widget.view
    truth = table.points[view.record.name]
    worst = max(view.landmarks, key=lambda lm: lm.doubt or 0.0)
    x, y = truth[worst.info.index]
    widget.view = widget.session.move(worst.info.index, float(x), float(y))
    widget._redraw()
    widget._repropose()
    deadline = time.monotonic() + 60
    while widget.session.proposals is None and time.monotonic() < deadline:
        pump(app, 0.2)
    pump(app, 1)
    viewer.window.screenshot(str(OUT / f"{anatomy}_following.png"), canvas_only=False)
    widget.session.close()
    viewer.close()
    print(f"wrote {OUT / anatomy}.png and {OUT / anatomy}_following.png ({worst.info.name} corrected)")


if __name__ == "__main__":
    main()
