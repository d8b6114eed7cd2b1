"""What the measurements and readers panel costs a drag in the app (not a test); needs Xvfb.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/readers_panel.py [--drags 40]

One real AASCE spine (68 corners, its Cobb angles) read by two simulated readers, the
project ``scripts/reader_screenshots.py`` builds; the app open on it. Times, over ``--drags``
drag ends of one corner: the whole drag-end handler (save, redraw, the readers' spread,
the measurements and their lines), the same handler with the panel's parts switched off,
and the panel's two parts alone (the readers' refresh is what opening an image adds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def _ms(f, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        out.append(1000 * (time.perf_counter() - t))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drags", type=int, default=40)
    args = parser.parse_args()
    from qtpy.QtWidgets import QApplication
    from reader_screenshots import two_readers_project
    from screenshots import pump

    from scn_annotator.plugins.app import launch

    location = two_readers_project(Path(tempfile.mkdtemp(prefix="scn-panel-")))
    viewer = launch(str(location), block=False)
    app = QApplication.instance()
    pump(app, 2)
    widget = viewer.window.dock_widgets["Landmark annotator"]
    points = widget.layers["points"]
    i = 0

    def drag() -> None:
        nonlocal i
        row, col = points.data[5]
        points.data[5] = (row + (1.0 if i % 2 else -1.0), col)
        points.events.data(value=points.data, action="changed", data_indices=(5,), vertex_indices=((),))
        app.processEvents()
        i += 1

    whole = _ms(drag, args.drags)
    readers = _ms(widget._draw_readers, args.drags)  # a refresh: the readings read anew, the layers redrawn
    measurements = _ms(widget._measure_live, args.drags)
    widget._draw_readers = lambda refresh=True: None  # the same handler without the panel, for comparison
    widget._measure_live = lambda event=None: None
    without = _ms(drag, args.drags)
    for what, ms in (
        ("drag end, whole handler", whole),
        ("the same without the panel", without),
        ("readers' refresh", readers),
        ("measurements", measurements),
    ):
        print(f"{what:<26} median {statistics.median(ms):6.1f} ms, max {max(ms):6.1f} ms")
    widget.session.close()
    viewer.close()


if __name__ == "__main__":
    main()
