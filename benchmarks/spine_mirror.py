"""Stage 1 seen both ways: a spine model's test figures with its SCN heatmaps averaged with those of the
mirrored radiograph, against plain (a trial, not a test). A vertebra's centre is its own mirror image, so
the channels need no swapping; what a mirror could not keep is the heart's side.

    python benchmarks/spine_mirror.py benchmarks/out/MODEL.pt [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import spine

from scn_annotator.engine import inference
from scn_annotator.engine.chain import decode_centres
from scn_annotator.io.landmark_files import read_landmarks


@torch.inference_mode()
def both_ways(self: inference.Predictor, inputs: torch.Tensor):
    inputs = inputs.to(self.device)
    out = self.model(inputs)
    mirrored = self.model(torch.flip(inputs, dims=[-1])).heatmaps
    heat = (out.heatmaps.float() + torch.flip(mirrored.float(), dims=[-1])) / 2
    points, values = decode_centres(heat, self.objects, inputs)
    return points, values, out._replace(heatmaps=heat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    table = read_landmarks(spine.SPINE / "landmarks.csv")
    test_ids, *_ = spine._split(table, args.seed, 0.2)
    for name, forward in (("plain", inference.Predictor.forward), ("mirror-averaged", both_ways)):
        inference.Predictor.forward = forward
        metrics, _, coarse, seconds = spine._test(args.model, spine.SPINE, table, test_ids)
        spine._print(name, metrics, coarse, 1000 * sorted(seconds)[len(seconds) // 2])


if __name__ == "__main__":
    main()
