"""What corrections are left, and could conditioning save them? (not a test)

Predicts the hand test images (``benchmarks/hand.py``'s split) with a model and sorts
the landmarks outside the tolerance by how far off they are: a few millimetres is a
point on the right joint but not on its centre, which no confirmed neighbour can
fix; beyond about half a joint spacing (10 mm) it is on another structure, which
conditioning can. That bounds the saving of any conditioning on these proposals.

It also tries the obvious alternative to the SC hints, propagating each correction's
residual to the other landmarks through the covariance of the model's errors (a
Gaussian conditional, fitted on the training and validation images' errors with
shrinkage ``--shrink`` towards the diagonal), with the effort oracle's rules.

    python benchmarks/error_anatomy.py --model benchmarks/out/scn-all-preset.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from hand import HAND, RULE, split

from scn_annotator.active.effort import oracle_corrections
from scn_annotator.engine.inference import Predictor
from scn_annotator.io.images import SpacingSource, find_images, image_id, read_image
from scn_annotator.io.landmark_files import LandmarkTable, read_landmarks


def errors_mm(predictor: Predictor, names: list[str], table: LandmarkTable, files: dict) -> np.ndarray:
    """(images, landmarks, 2) prediction minus truth, in mm."""
    out = []
    for name in names:
        truth = table.points[name]
        image = read_image(files[name]).with_spacing(RULE.spacing(truth), SpacingSource.LANDMARKS)
        out.append((predictor.predict(image).points - truth) * np.asarray(image.spacing))
    return np.array(out)


def propagated(error: np.ndarray, cov: np.ndarray, tolerance: float) -> int:
    """Corrections when each one moves the unconfirmed points by the conditional mean of their errors."""

    def replace(confirmed: np.ndarray) -> np.ndarray:
        c = np.repeat(confirmed, 2)
        flat = error.reshape(-1).copy()
        flat[~c] -= cov[~c][:, c] @ np.linalg.solve(cov[c][:, c] + 1e-6 * np.eye(int(c.sum())), flat[c])
        shown = flat.reshape(-1, 2)
        shown[confirmed] = 0.0
        return np.linalg.norm(shown, axis=1)

    present = np.ones(len(error), dtype=bool)
    return oracle_corrections(np.linalg.norm(error, axis=1), present, tolerance, replace)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--tolerance", type=float, default=2.0, help="mm")
    ap.add_argument("--shrink", default="0,0.3,0.6,0.9", help="shrinkage of the error covariance to try")
    args = ap.parse_args()
    torch.set_num_threads(1)
    table = read_landmarks(HAND / "all.csv")
    test, val, train = split(list(table.points))
    files = {image_id(p): p for p in find_images(HAND / "images")}
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    test_err, fit_err = errors_mm(predictor, test, table, files), errors_mm(predictor, val + train, table, files)
    dist = np.linalg.norm(test_err, axis=2)
    per_image = len(test)
    print(f"{args.model.name}: landmarks outside {args.tolerance:g} mm per test image, by how far off")
    for lo, hi in [(args.tolerance, 3), (3, 5), (5, 10), (10, np.inf)]:
        print(f"  {lo:g}-{hi:g} mm: {((dist > lo) & (dist <= hi)).sum() / per_image:.2f}")
    print(f"  all: {(dist > args.tolerance).sum() / per_image:.2f}")
    sample = fit_err.reshape(len(fit_err), -1)
    s = np.cov(sample, rowvar=False)
    print("residual propagation through the error covariance (corrections per test image):")
    for shrink in [float(v) for v in args.shrink.split(",")]:
        cov = (1 - shrink) * s + shrink * np.diag(np.diag(s))
        total = sum(propagated(e, cov, args.tolerance) for e in test_err)
        print(f"  shrinkage {shrink:g}: {total / per_image:.2f}")


if __name__ == "__main__":
    main()
