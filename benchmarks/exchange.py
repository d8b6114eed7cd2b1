"""The exchange formats on the real hand radiographs: export, import into a fresh project, compare (not a test).

    python benchmarks/exchange.py [--hand ../shared/data/hand]

The 96 hands and their 37 landmarks go into a project (with two readers: the file's
points, and the same shifted by a known amount), every image marked done; then for
each format: export all, import into a fresh project with the same images, and
compare every landmark (largest position difference in px, states, readers) and the
time each way.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from scn_annotator.db.exchange import import_exchange
from scn_annotator.db.exports import export_exchange
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import import_images, import_labels, import_readings
from scn_annotator.io.landmark_files import default_names, read_landmarks, write_landmarks

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand"
OUT = {"coco": "set.json", "labelme": "labelme", "slicer": "slicer", "fcsv": "fcsv", "dlc": "CollectedData_a.csv"}


def _compare(a: Project, b: Project) -> tuple[float, int, int]:
    """Largest position difference (px), landmarks whose state differs, landmarks only one project has."""
    worst, states, only = 0.0, 0, 0
    for image in a.images():
        old, new = a.annotations.of(image.name), b.annotations.of(image.name)
        only += len(set(old) ^ set(new))
        for i in set(old) & set(new):
            states += old[i].state != new[i].state
            if old[i].x is not None and new[i].x is not None:
                worst = max(worst, abs(old[i].x - new[i].x), abs(old[i].y - new[i].y))
    return worst, states, only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hand", type=Path, default=HAND)
    args = parser.parse_args()
    table = read_landmarks(args.hand / "all.csv")
    names = default_names(table.num_landmarks)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = Project.create(root / "source", names, user="curator")
        import_images(source, args.hand / "images")
        import_labels(source, args.hand / "all.csv")
        import_readings(source, args.hand / "all.csv", "reader_a")
        shifted = {i: p + np.array([1.25, -0.5]) for i, p in table.points.items()}
        write_landmarks(root / "b.csv", names, shifted)
        import_readings(source, root / "b.csv", "reader_b")
        first = source.images()[0].name
        source.annotations.set(first, 3, None, None, state="absent")
        source.annotations.set(first, 4, 100.123456, 200.654321, state="occluded")
        for image in source.images():
            source.set_status(image.name, "done")
        print(f"{len(source.images())} hand radiographs, {len(names)} landmarks, readers {source.readings.readers()}")
        print("| format | export (s) | import (s) | largest difference (px) | states differing | missing | readers |")
        print("|---|---|---|---|---|---|---|")
        for fmt, name in OUT.items():
            out = root / "out" / name
            t = time.perf_counter()
            export_exchange(source, out, fmt)
            exported = time.perf_counter() - t
            fresh = Project.create(root / f"fresh-{fmt}", names, user="x")
            import_images(fresh, args.hand / "images")
            t = time.perf_counter()
            report = import_exchange(fresh, out, fmt)
            imported = time.perf_counter() - t
            worst, states, only = _compare(source, fresh)
            readers = ", ".join(report.readers) or "-"
            print(f"| {fmt} | {exported:.2f} | {imported:.2f} | {worst:.1e} | {states} | {only} | {readers} |")
            fresh.close()
        source.close()


if __name__ == "__main__":
    main()
