"""One active-learning round on the real hand radiographs, timed stage by stage (not a test).

    python benchmarks/round.py --init benchmarks/out/scn-all.pt --done 50

A project of the 96 radiographs with ``--done`` of them annotated (their true
landmarks) and marked done; ``--init`` registers a trained model as the current
version (as after earlier rounds). Then the worker runs one round exactly as in
the app: fine-tune on the done images, validate against the current model,
register, re-predict and score every image not done, cache heatmaps.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from scn_annotator.active.policy import RoundPolicy
from scn_annotator.app.worker import Worker
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import import_images, import_labels
from scn_annotator.io.landmark_files import default_names, read_landmarks, write_landmarks

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", type=Path, help="a trained checkpoint to start from (the current model)")
    ap.add_argument("--done", type=int, default=50)
    ap.add_argument("--round-steps", type=int, default=500)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="scn-round-bench-"))
    try:
        truth = read_landmarks(HAND / "all.csv")
        project = Project.create(root / "hand", default_names(37), user="bench")
        import_images(project, HAND / "images")
        done = sorted(truth.points)[: args.done]
        write_landmarks(root / "done.csv", default_names(37), {k: truth.points[k] for k in done})
        import_labels(project, root / "done.csv", spacing_rule=None)
        # the data set's convention for physical units: landmarks 1 and 5 are 50 mm apart
        from scn_annotator.engine.geometry import SpacingRule

        rule = SpacingRule(1, 5, 50.0)
        for name, points in truth.points.items():
            project.set_spacing(name, (rule.spacing(points),) * 2, "landmarks")
        for name in done:
            project.set_status(name, "done")
        if args.init:
            project.models.register(args.init.resolve(), make_current=True, note="benchmark start")  # copied in
        RoundPolicy(round_steps=args.round_steps, initial_steps=2800).save(project)
        job = project.jobs.enqueue("round")
        started = time.perf_counter()
        Worker(project.data_dir).run(once=True)
        total = time.perf_counter() - started
        record = project.jobs.job(job)
        print(
            f"round ({record.state}): {total / 60:.1f} min for {args.done} done images and "
            f"{project.counts()['new']} to re-rank, {args.round_steps} fine-tuning steps"
        )
        stamps = []
        for line in record.log_tail.splitlines():
            match = re.match(r"(\d\d:\d\d:\d\d) (.*)", line)
            if match:
                stamps.append((datetime.strptime(match[1], "%H:%M:%S"), match[2]))

        def at(prefix: str) -> datetime:
            return next(t for t, what in stamps if prefix in what)

        stages = [
            ("start and loading", "took job", "training on"),
            ("fine-tuning", "training on", "model version"),
            ("validation, registration", "model version", "re-predicting"),
            ("re-predicting, scoring, heatmaps", "re-predicting", "predicted and scored"),
        ]
        for name, first, last in stages:
            try:
                print(f"  {(at(last) - at(first)).total_seconds():6.0f} s  {name}")
            except StopIteration:
                print(f"  (no log line for {name})")
        print("  log:", *(f"\n    {t:%H:%M:%S} {w}" for t, w in stamps))
        versions = project.models.all()
        print(f"model versions: {[(v['id'], v['is_current'], v['metrics'].get('val_error')) for v in versions]}")
        project.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
