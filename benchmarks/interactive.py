"""How quickly the proposals follow a correction, on 2,000 x 2,000 radiographs (not a test).

    python benchmarks/interactive.py --model benchmarks/out/scn-all-bf16.pt --images 6 --corrections 8

Builds a project of real hand radiographs from ../shared/data/hand, each placed on a
2,000 x 2,000 canvas, with the given hand model as its current model and its
predictions stored. Then, as the app does, through ``AnnotationSession`` and the
conditioning helper process: open an image, and for each correction (a landmark
moved to its true position) time

- the save: ``session.move`` (the correction in the database, the view re-read);
- the follow: from the save's end until the re-placed proposals are on the session's
  view (request to the helper, SC pass and decoding, the local stage when the model
  has one, the conditioned run stored, the reply, the view re-read);
- the helper's own share of it.

The first correction of an image also pays the LA pass unless the helper prepared
the image while it was being opened (the app asks it to on open; so does this).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--corrections", type=int, default=8)
    ap.add_argument("--settle", type=float, default=0.3, help="seconds between an image opening and its first edit")
    args = ap.parse_args()

    from scn_annotator.app.annotation_session import AnnotationSession
    from scn_annotator.app.conditioning import ConditioningClient
    from scn_annotator.app.project_operations import predict_project
    from scn_annotator.db.store import Project
    from scn_annotator.db.transfer import import_images
    from scn_annotator.io.images import read_image
    from scn_annotator.io.landmark_files import read_landmarks

    table = read_landmarks(HAND / "all.csv")
    ids = sorted(table.points)[-args.images :]
    root = Path(tempfile.mkdtemp(prefix="scn-interactive-"))
    (root / "images").mkdir()
    truth = {}
    for i in ids:
        source = read_image(next((HAND / "images").glob(f"{i}.*")))
        canvas = np.zeros((2000, 2000), np.uint8)
        h, w = source.pixels.shape
        canvas[: min(h, 2000), : min(w, 2000)] = source.pixels[:2000, :2000].astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(canvas), str(root / "images" / f"{i}.png"))
        truth[i] = table.points[i]
    project = Project.create(root / "project", table.names, user="bench")
    import_images(project, root / "images")
    project.models.register(args.model, make_current=True)
    predict_project(project)
    by_name = {r.name: r.id for r in project.images()}

    session = AnnotationSession(project, prefetch=False, conditioning=ConditioningClient(project.data_dir))
    saves, follows, helper, first = [], [], [], []
    try:
        for n, name in enumerate(ids):
            session.open(by_name[name])
            time.sleep(args.settle)  # the annotator looks before the first drag; the helper prepares the image
            order = np.random.default_rng(n).permutation(len(table.names))[: args.corrections]
            for c, k in enumerate(order):
                x, y = truth[name][k]
                t0 = time.perf_counter()
                session.move(int(k), float(x), float(y))
                t1 = time.perf_counter()
                token, proposals = session.repropose().result(timeout=120)
                session.apply(token, proposals)
                t2 = time.perf_counter()
                saves.append(t1 - t0)
                (first if c == 0 else follows).append(t2 - t1)
                helper.append(proposals.seconds)
    finally:
        session.close()
        project.close()

    def describe(values: list[float]) -> str:
        ms = sorted(1000 * v for v in values)
        return f"median {statistics.median(ms):.0f} ms, 90th percentile {ms[int(0.9 * (len(ms) - 1))]:.0f} ms"

    print(f"{len(ids)} images of 2000 x 2000, {args.corrections} corrections each, model {args.model.name}")
    print(f"  save a correction:             {describe(saves)}")
    print(f"  proposals follow (first edit): {describe(first)}")
    print(f"  proposals follow (later):      {describe(follows)}")
    print(f"  of which in the helper:        {describe(helper)}")


if __name__ == "__main__":
    main()
