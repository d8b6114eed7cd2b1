"""Corrections per image on real radiographs, with an oracle annotator (not a test).

Uses a model trained by ``benchmarks/hand.py`` or ``benchmarks/spine.py`` and that
script's test images (the same split), and reports the oracle's corrections and
clicks per image for manual placement, today's proposals and conditioned proposals.

    python benchmarks/effort.py hand --model benchmarks/out/scn-all-auto.pt --tolerance 2mm --tag effort-hand
    python benchmarks/effort.py spine --model benchmarks/out/spine-cpu-auto.pt --tolerance 1% --tag effort-spine
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from hand import HAND, RULE
from hand import split as hand_split
from spine import SPINE, patient

from scn_annotator.active.effort import Tolerance, measure_effort
from scn_annotator.engine.conditioner import ConditioningMethod
from scn_annotator.engine.inference import Predictor
from scn_annotator.io.images import SpacingSource, find_images, image_id, read_image
from scn_annotator.io.landmark_files import read_landmarks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("anatomy", choices=["hand", "spine"])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--tolerance", required=True)
    ap.add_argument("--test-share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="only the first N test images (the conditioned oracle is slow)")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--keep-within", type=float, help="the conditioner's rule (default: the package's)")
    ap.add_argument("--method", default="auto", choices=list(ConditioningMethod), help="how to condition")
    args = ap.parse_args()

    if args.anatomy == "hand":
        table = read_landmarks(HAND / "all.csv")
        test_ids, _, _ = hand_split(list(table.points))
        folder = HAND / "images"
    else:
        table = read_landmarks(SPINE / "landmarks.csv")
        patients = sorted({patient(n) for n in table.points})
        shuffled = np.random.default_rng(args.seed).permutation(patients)
        test_patients = set(shuffled[: round(len(patients) * args.test_share)])
        test_ids = sorted(n for n in table.points if patient(n) in test_patients)
        folder = SPINE / "images"
    test_ids = test_ids[: args.limit] if args.limit else test_ids
    files = {image_id(p): p for p in find_images(folder)}
    images = []
    for name in test_ids:
        image = read_image(files[name])
        if args.anatomy == "hand":
            image = image.with_spacing(RULE.spacing(table.points[name]), SpacingSource.LANDMARKS)
        images.append((image, table.points[name]))
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    started = time.perf_counter()
    options: dict = {"method": args.method}
    if args.keep_within is not None:
        options["keep_within"] = args.keep_within
    report = measure_effort(predictor, images, Tolerance.parse(args.tolerance), **options)
    seconds = time.perf_counter() - started
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    record = {
        **report.summary(),
        "model": str(args.model),
        "seconds": seconds,
        "per_image": report.per_image,
        "keep_within": args.keep_within,
        "method": args.method,
    }
    (out / f"{args.tag}.json").write_text(json.dumps(record, indent=2))
    print(report.format())
    print(f"{args.tag}: {len(images)} test images in {seconds:.0f} s")


if __name__ == "__main__":
    main()
