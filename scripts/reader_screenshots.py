"""Screenshots of double reading on a real spine radiograph (../shared/data), for the README; needs Xvfb.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/reader_screenshots.py

A throwaway project of one AASCE spine (never copied into the repository) whose
consensus is the data set's landmarks, read by two simulated readers: ``ann`` within
a pixel or two of it, ``ben`` with one vertebra placed 12 px low. Writes
docs/screenshots/readers.png (both readers' points in their colours, the spread on the
selected landmark, the adjudication buttons, the Cobb angles and their two lines) and
readers_dragged.png (the same after a corner of the upper end vertebra was dragged:
the angle in the table and the line on the image have followed it) and agreement.png
(the project's agreement table and a Bland-Altman plot, in the app).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from screenshots import pump  # the same folder: run as a script, it is on the path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
SPINE = ROOT.parent / "shared" / "data" / "spine"


def two_readers_project(root: Path) -> Path:
    """The project of one real spine read by ``ann`` and ``ben`` (``ben`` with T7 12 px low) in ``root``; its folder.

    The benchmark of the readers panel (``benchmarks/readers_panel.py``) times the same scene.
    """
    from scn_annotator.db.store import Project
    from scn_annotator.db.transfer import import_images, import_labels
    from scn_annotator.io.landmark_files import read_landmarks, write_landmarks

    table = read_landmarks(SPINE / "landmarks.csv")
    name = sorted(table.points)[7]
    (root / "images").mkdir()
    source = next((SPINE / "images").glob(f"{name}.*"))
    (root / "images" / source.name).symlink_to(source)
    project = Project.create(root / "project", table.names, user="reviewer")
    import_images(project, root / "images")
    write_landmarks(root / "truth.csv", table.names, {name: table.points[name]})
    import_labels(project, root / "truth.csv", outside="missing")
    rng = np.random.default_rng(0)
    truth = table.points[name]
    readings = {"ann": truth + rng.normal(0, 1.5, truth.shape), "ben": truth + rng.normal(0, 1.5, truth.shape)}
    readings["ben"][24:28] += (0.0, 12.0)  # ben placed the seventh vertebra 12 px low
    for reader, points in readings.items():
        for j, (x, y) in enumerate(points):
            project.readings.set(name, j, float(x), float(y), reader=reader)
    project.close()
    return root / "project"


def main() -> None:
    from qtpy.QtWidgets import QApplication

    from scn_annotator.plugins.app import launch

    location = two_readers_project(Path(tempfile.mkdtemp(prefix="scn-readers-")))
    OUT.mkdir(parents=True, exist_ok=True)
    viewer = launch(str(location), block=False)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    pump(app, 2)
    widget = viewer.window.dock_widgets["Landmark annotator"]
    widget.landmark.value = 25  # the vertebra the readers disagree on
    widget.reader_choice.value = "ben"
    widget.scroll.ensureWidgetVisible(widget.take_button.native)
    viewer.reset_view()
    pump(app, 1)
    viewer.window.screenshot(str(OUT / "readers.png"), canvas_only=False)

    upper = widget.session.measurements[0]  # the main Cobb angle: drag a corner of its upper end vertebra
    points = widget.layers["points"]
    features = list(points.features["landmark"])
    before = widget.measure_table.value["data"][0][1]
    corners = [int(k) for k in upper.landmarks]
    vertebra = min(range(len(corners) // 4), key=lambda v: abs(v - 5))  # one near the top of the curve
    tr = features.index(corners[4 * vertebra + 1])
    row, col = points.data[tr]
    points.data[tr] = (row - 25.0, col)
    points.events.data(value=points.data, action="changed", data_indices=(tr,), vertex_indices=((),))
    pump(app, 1)
    after = widget.measure_table.value["data"][0][1]
    viewer.window.screenshot(str(OUT / "readers_dragged.png"), canvas_only=False)
    widget._show_agreement()
    pump(app, 1)  # laid out with the new text first, then scrolled to it
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(widget.agreement_text.mapTo(widget.scroll.widget(), widget.agreement_text.rect().topLeft()).y() - 40)
    pump(app, 1)
    viewer.window.screenshot(str(OUT / "agreement.png"), canvas_only=False)
    name = widget.view.record.name
    widget.session.close()
    viewer.close()
    print(f"wrote {OUT}/readers.png, readers_dragged.png, agreement.png ({name}; main Cobb {before} -> {after})")


if __name__ == "__main__":
    main()
