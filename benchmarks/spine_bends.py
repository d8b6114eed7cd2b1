"""The chain decoded with a prior on how each step follows the previous one (not a test).

Before stop 42 the chain prior judged every step from one vertebra to the next on its own: its length
against the training median for that pair, its direction against the median direction.
Both spreads are mostly patients' (a tall patient's steps are all longer, a scoliotic
column's all turned), so a true column far from the median pays on every step, and stop
40 found that the true chain loses to the chosen one mostly on the step cost. Along one
column, though, a step is much like the one before it: its length ratio and its turn
from the previous step vary far less than the lengths and directions themselves. A
skipped or doubled vertebra breaks exactly that (a ratio of 2 or near 0). So the
chain prior now also holds how each step follows the previous one (``ChainPrior.bends``),
and the chain is decoded over pairs of candidates. This scores one model both ways: with
the bends its run fitted (or, for a model file from before, fitted here from the same
split's training labels) and without them.

    python benchmarks/spine_bends.py benchmarks/out/spine-s42-seed0.pt --seed 0
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
from spine import _clean, _refit_chain, _split, model_arguments, spine_metrics

import scn_annotator.engine.chain as chain_module
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.objects import ChainPrior
from scn_annotator.io.images import find_images, image_id, read_image_info
from scn_annotator.io.landmark_files import read_landmarks


def _anatomy(predicted: dict, truth: dict) -> None:
    """Where the wrong vertebrae come from: where along a column the offset (nearest true vertebra minus own)
    changes, is the predicted step there a skip (> 1.5 x its neighbours'), a double (< 0.5 x) or neither
    (a drift of several steps)?"""
    kinds = {"skip": 0, "double": 0, "drift": 0}
    for name, true in truth.items():
        c_true = true.reshape(-1, 4, 2).mean(axis=1)
        c_pred = np.nanmean(predicted[name].reshape(-1, 4, 2), axis=1)
        offset = np.array(
            [
                np.nanargmin(np.linalg.norm(c_true - c, axis=1)) - k if not np.isnan(c_true[k]).any() else 0
                for k, c in enumerate(c_pred)
            ]
        )
        step = np.linalg.norm(np.diff(c_pred, axis=0), axis=1)
        typical = np.nanmedian(step)
        for k in np.flatnonzero(np.diff(offset) != 0):
            ratio = step[k] / typical
            kinds["skip" if ratio > 1.5 else "double" if ratio < 0.5 else "drift"] += 1
    print(f"  where the offset changes: {kinds}", flush=True)


def main() -> None:
    ap = model_arguments()
    ap.add_argument("--weights", default="0,1", help="the bends' weights to score (0: without)")
    ap.add_argument("--candidates", type=int, help="each channel's candidates with bends (default: the engine's)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.candidates is not None:
        chain_module.BEND_CANDIDATES = args.candidates
    table = read_landmarks(args.data / "landmarks.csv")
    test_ids, train_ids, *_ = _split(table, args.seed, args.test_share)
    by_name = {image_id(p): p for p in find_images(args.data / "images")}
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    layout = predictor.objects
    if layout is None or layout.chain is None:
        raise SystemExit(f"{args.model}: this model decodes no chain")
    prior = layout.chain
    if prior.ratios is None:
        _refit_chain(predictor, table, train_ids, by_name, ChainPrior.BENDS)
        prior = predictor.objects.chain
        print("bends fitted from the split's training labels (a model file from before)", flush=True)
    heights = {n: read_image_info(by_name[n]).size[1] for n in test_ids}
    truth = _clean({n: table.points[n] for n in test_ids}, table.names)
    for weight in (float(w) for w in args.weights.split(",")):
        if weight == 0:
            chain = dataclasses.replace(prior, **dict.fromkeys(ChainPrior.BENDS))
        else:
            chain = dataclasses.replace(prior, bend_weight=weight)
        predictor.objects = dataclasses.replace(layout, chain=chain)
        t = time.perf_counter()
        predicted = {n: predictor.predict(by_name[n]).points for n in test_ids}
        ms = 1000 * (time.perf_counter() - t) / len(test_ids)
        m = spine_metrics(predicted, truth, heights, table.names)
        print(
            f"bends x{weight}: {100 * m['vertebrae_nearer_a_neighbour']:.1f} % on a neighbour, "
            f"{m['images_whole_column_shifted']} whole columns shifted, median {m['median_pct_height']:.2f} %, "
            f"{100 * m['within_1pct_height']:.0f} % within 1 %, Cobb SMAPE {m['cobb_smape_pct']:.1f} %, "
            f"{ms:.0f} ms per radiograph (one thread)",
            flush=True,
        )
        _anatomy(predicted, truth)


if __name__ == "__main__":
    main()
