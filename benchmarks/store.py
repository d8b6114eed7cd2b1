"""How fast and how big the project store is (not a test).

    python benchmarks/store.py                     # SQLite
    python benchmarks/store.py --postgres postgresql://scn:scn@localhost/postgres

1. Saving one correction: median and 99th percentile over 1,000 ``set_landmark``
   calls (each a durable transaction with its history event).
2. Importing the 96 real hand radiographs (headers + checksums) and their 37
   landmarks from ../shared/data/hand.
3. Database size per 1,000 images: 1,000 generated images, each with 37 imported
   landmarks, three corrections, and one model version's predictions and scores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from scn_annotator.db.records import ScoreRecord
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import import_images, import_labels
from scn_annotator.engine.geometry import SpacingRule
from scn_annotator.io.landmark_files import default_names, write_landmarks

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand"


def database(args: argparse.Namespace) -> tuple[str | None, callable]:
    if not args.postgres:
        return None, lambda: None
    import psycopg

    admin = psycopg.connect(args.postgres, autocommit=True)
    name = f"scn_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return f"{args.postgres.rsplit('/', 1)[0]}/{name}", lambda: admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def bench_corrections(root: Path, args: argparse.Namespace) -> None:
    url, drop = database(args)
    project = Project.create(root / "corrections", default_names(37), database=url, user="bench")
    import_images(project, HAND / "images")
    images = [im.name for im in project.images()]
    rng = np.random.default_rng(0)
    times = []
    for i in range(1000):
        x, y = rng.uniform(100, 1000, 2)
        t = time.perf_counter()
        project.annotations.set(images[i % len(images)], i % 37, float(x), float(y))
        times.append(time.perf_counter() - t)
    ms = 1000 * np.array(times)
    print(
        f"save one correction ({'PostgreSQL' if url else 'SQLite'}): median {np.median(ms):.2f} ms, "
        f"p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms over {len(ms)} calls"
    )
    project.close()
    drop()


def bench_import(root: Path, args: argparse.Namespace) -> None:
    url, drop = database(args)
    t0 = time.perf_counter()
    project = Project.create(root / "hand", default_names(37), database=url, user="bench")
    report = import_images(project, HAND / "images")
    t1 = time.perf_counter()
    labels = import_labels(project, HAND / "all.csv", spacing_rule=SpacingRule(1, 5, 50.0))
    t2 = time.perf_counter()
    print(
        f"import {len(report.added)} real radiographs: {t1 - t0:.2f} s (headers and checksums), "
        f"their {labels.set} landmarks: {t2 - t1:.2f} s, total {t2 - t0:.2f} s"
    )
    project.close()
    drop()


def bench_size(root: Path) -> None:
    folder = root / "thousand"
    folder.mkdir()
    rng = np.random.default_rng(1)
    points = {}
    for i in range(1000):
        pixels = rng.integers(0, 255, (64, 48), dtype=np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(pixels), str(folder / f"img{i:04d}.png"))
        points[f"img{i:04d}"] = rng.uniform(0, 40, (37, 2))
    labels = root / "thousand.csv"
    write_landmarks(labels, default_names(37), points)
    project = Project.create(root / "size", default_names(37), user="bench")
    import_images(project, folder)
    import_labels(project, labels)
    ckpt = root / "m.pt"
    ckpt.write_bytes(b"x")
    version = project.models.register(ckpt, make_current=True)
    for i, name in enumerate(points):
        for j in range(3):
            project.annotations.set(name, (i + j) % 37, 10.0 + j, 20.0)
        scores = [ScoreRecord("disagreement", 0.5, list(rng.uniform(0, 5, 37)), "mm")]
        project.predictions.store(version, name, points[name] + 0.5, rng.uniform(0, 3, 37), scores=scores)
    with project.db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = (root / "size" / "project.sqlite").stat().st_size
    print(
        f"database size: {size / 1e6:.1f} MB per 1,000 images (37 landmarks each, 3 corrections, "
        f"one model version's predictions and scores)"
    )
    project.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", help="an admin URL of a PostgreSQL server to measure instead of SQLite")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scn-store-bench-", dir=os.environ.get("TMPDIR")))
    try:
        bench_corrections(root, args)
        bench_import(root, args)
        if not args.postgres:
            bench_size(root)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
