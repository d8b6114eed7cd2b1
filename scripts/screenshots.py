"""Regenerate the README's screenshots from the running app (needs a display; use Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py [PROJECT]

Without PROJECT it uses ./scn-demo/project, creating it first with ``scn-annotator
demo`` (a few minutes). Writes docs/screenshots/*.png.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"


def pump(app, seconds: float = 1.0) -> None:  # noqa: ANN001
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    project = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "scn-demo" / "project"
    if not (project / "project.json").exists():
        subprocess.run([sys.executable, "-m", "scn_annotator", "demo", "--dir", str(project.parent)], check=True)
    from qtpy.QtWidgets import QApplication

    from scn_annotator.plugins.app import launch

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = launch(str(project), block=False)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    pump(app, 2)
    viewer.reset_view()  # fit the image to the canvas at its final size
    widget = viewer.window.dock_widgets["Landmark annotator"]
    widget.names.value = True
    pump(app)
    viewer.window.screenshot(str(OUT / "annotator.png"), canvas_only=False)

    # the story of the model: LA finds every look-alike, SC picks one, their product is the answer
    worst = max(widget.view.landmarks, key=lambda lm: lm.doubt or 0.0)
    widget.landmark.value = worst.info.index
    widget.selected_only.value = True
    widget.heatmap_boxes["local"].value = True
    widget.heatmap_boxes["spatial"].value = True
    widget.heatmap_boxes["final"].value = False
    pump(app)
    viewer.window.screenshot(str(OUT / "la_sc.png"), canvas_only=False)

    # a correction: the most doubtful landmark dragged, marked and saved, then the training panel
    widget.heatmap_boxes["local"].value = widget.heatmap_boxes["spatial"].value = False
    widget.heatmap_boxes["final"].value = True
    widget.selected_only.value = False
    widget.accept_all()
    pump(app)
    scroll = widget.findChild(type(widget.layout().itemAt(0).widget()))
    scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
    pump(app)
    viewer.window.screenshot(str(OUT / "training_panel.png"), canvas_only=False)
    widget.undo()  # leave the demo project as it was
    pump(app)
    viewer.close()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
