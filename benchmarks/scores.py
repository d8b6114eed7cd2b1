"""Which doubt scores point at real errors? Rank correlation with the true error (not a test).

    python benchmarks/scores.py benchmarks/out/scn-10.pt benchmarks/out/scn-all.pt

For each trained model (from benchmarks/hand.py) and each strategy of
``scn_annotator.active.scores``, on the 20 test images of hand.py's split: the Spearman
rank correlation between a strategy's per-landmark value and that landmark's
error (740 pairs), and between its image score and the image's mean error (20
pairs). A score that ranks images for annotation is only useful if it is high
where the model is wrong; this measures that without any retraining.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from hand import HAND, RULE, split
from scipy.stats import spearmanr

from scn_annotator.active.scores import STRATEGIES, ScoreInput
from scn_annotator.engine.data import build_samples, labelled_images, match_images
from scn_annotator.engine.inference import Predictor
from scn_annotator.io.images import find_images
from scn_annotator.io.landmark_files import read_landmarks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--mc-passes", type=int, default=8)
    args = ap.parse_args()
    table = read_landmarks(HAND / "all.csv")
    test_ids, _, _ = split(list(table.points))
    pairs, _ = match_images(find_images(HAND / "images"), table)
    by_id = {i: p for p, i in pairs}
    for path in args.models:
        predictor = Predictor.from_checkpoint(path, "cpu")
        samples = build_samples(
            labelled_images([(by_id[i], i) for i in test_ids], table),
            predictor.input_size,
            predictor.normalisation,
            None,
            RULE,
        )
        # what the worker scores: the app's prediction with heatmaps (MC passes seeded by the image id)
        inputs = [ScoreInput.of(predictor.predict(s.path, heatmaps=True, mc_passes=args.mc_passes)) for s in samples]
        errors = np.stack(
            [np.linalg.norm((x.points - s.points) * np.asarray(s.spacing), axis=1) for x, s in zip(inputs, samples)]
        )
        print(f"\n{path.name}: test error mean {np.nanmean(errors):.2f} mm over {errors.size} landmarks")
        print(f"  {'strategy':<20}{'per landmark':>14}{'per image':>12}")
        for name, strategy in STRATEGIES.items():
            if name == "random":
                continue
            scored = [strategy.score(x) for x in inputs]
            per = np.stack([s.per_landmark for s in scored]).ravel()
            ok = np.isfinite(per) & np.isfinite(errors.ravel())
            rho_lm = spearmanr(per[ok], errors.ravel()[ok]).statistic if ok.any() else float("nan")
            rho_img = spearmanr([s.value for s in scored], np.nanmean(errors, axis=1)).statistic
            print(f"  {name:<20}{rho_lm:>14.2f}{rho_img:>12.2f}")


if __name__ == "__main__":
    main()
