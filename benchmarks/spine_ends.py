"""How much of a spine model's error is its ends: the test spines decoded with the true T1 and L5 (not a test).

The chain decoding (``engine/chain.py``) takes a centre a person placed as that
object's only candidate and fits the rest of the column to it. Here the first and
the last centre are placed at their labels' (the mean of the four corners) for every
test spine, so what is left wrong is the interior's doing, and the difference to the
plain figures is what a perfect check of the ends (``engine/levels.py``) could gain.
Spines whose T1 or L5 lies outside its image are decoded as they are.

    python benchmarks/spine_ends.py benchmarks/out/spine-polar-seed0.pt --seed 0
    python benchmarks/spine_ends.py benchmarks/out/spine-polar-seed0.pt --seed 0 --vector-steps
    python benchmarks/spine_ends.py benchmarks/out/spine-s42b-seed1.pt --seed 1 --no-bends
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from spine import _split, model_arguments, spine_metrics

import scn_annotator.engine.chain as chain
from scn_annotator.engine.geometry import fit_transform, inside_image
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.objects import ChainPrior
from scn_annotator.io.images import find_images, image_id, read_image_info
from scn_annotator.io.landmark_files import read_landmarks


def main() -> None:
    ap = model_arguments()
    ap.add_argument("--vector-steps", action="store_true", help="decode by the step vector (model files of stop 37)")
    ap.add_argument("--no-bends", action="store_true", help="decode without the bends (as before stop 42)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    table = read_landmarks(args.data / "landmarks.csv")
    test_ids, *_ = _split(table, args.seed, args.test_share)
    by_name = {image_id(p): p for p in find_images(args.data / "images")}
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    layout = predictor.objects
    if layout is None or layout.chain is None:
        raise SystemExit(f"{args.model}: this model decodes no chain")
    if args.vector_steps:
        polar = dict.fromkeys(ChainPrior.POLAR)
        predictor.objects = dataclasses.replace(layout, chain=dataclasses.replace(layout.chain, **polar))
    if args.no_bends:
        chain_prior = dataclasses.replace(predictor.objects.chain, **dict.fromkeys(ChainPrior.BENDS))
        predictor.objects = dataclasses.replace(predictor.objects, chain=chain_prior)
    ends: dict[str, np.ndarray | None] = {"fixed": None}
    plain_peaks = chain.chain_peaks

    def pinned_peaks(*a, **k):  # the plain pass only: a conditioned one has its own fixed centres
        if k.get("fixed") is None:
            k["fixed"] = ends["fixed"]
        return plain_peaks(*a, **k)

    chain.chain_peaks = pinned_peaks
    for pin in (False, True):
        predicted, heights = {}, {}
        for name in test_ids:
            size = read_image_info(by_name[name]).size
            corners = table.points[name]
            centres = corners.reshape(-1, 4, 2).mean(axis=1)
            known = inside_image(corners[:, 0], corners[:, 1], size).reshape(-1, 4).all(axis=1)
            ends["fixed"] = None
            if pin and known[[0, -1]].all():
                fixed = np.full_like(centres, np.nan)
                fixed[[0, -1]] = fit_transform(size, predictor.input_size).to_network(centres[[0, -1]])
                ends["fixed"] = fixed
            predicted[name] = predictor.predict(by_name[name]).points
            heights[name] = size[1]
        m = spine_metrics(predicted, {n: table.points[n] for n in test_ids}, heights, table.names)
        print(
            f"{'true ends' if pin else 'as decoded'}: {100 * m['vertebrae_nearer_a_neighbour']:.1f} % of vertebrae "
            f"nearer a neighbour, {m['images_whole_column_shifted']} whole columns shifted, median "
            f"{m['median_pct_height']:.2f} % of the height, Cobb SMAPE {m['cobb_smape_pct']:.1f} %",
            flush=True,
        )


if __name__ == "__main__":
    main()
