"""Spine radiograph to coordinates, several model files timed side by side (not a test).

    python benchmarks/spine_timing.py benchmarks/out/spine-base-seed0.pt benchmarks/out/spine-la6-seed0.pt

A benchmark run times its own model once, on a machine whose state drifts over
half an hour; two models compared by those figures differ by the drift as much as
by the model. Here the models take turns on the same spines (``--rounds`` times),
and the network alone is timed apart from the rest of ``Predictor.predict(path)``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from spine import SPINE

from scn_annotator.engine.inference import Predictor
from scn_annotator.io.images import find_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--images", type=int, default=12, help="the first this many spines by name")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    paths = sorted(find_images(SPINE / "images"))[: args.images]
    predictors = {m: Predictor.from_checkpoint(m, device="cpu") for m in args.models}
    for _ in range(args.rounds):
        for model, predictor in predictors.items():
            predictor.predict(paths[0])  # warm-up
            seconds = []
            for path in paths:
                t = time.perf_counter()
                predictor.predict(path)
                seconds.append(time.perf_counter() - t)
            x = torch.zeros(1, 1, *predictor.input_size)
            with torch.inference_mode():
                t = time.perf_counter()
                for _ in range(10):
                    predictor.model(x)
                network = (time.perf_counter() - t) / 10
            print(
                f"{model.name}: median {1000 * np.median(seconds):.0f} ms per radiograph, network "
                f"{1000 * network:.0f} ms ({len(paths)} spines, {torch.get_num_threads()} threads)",
                flush=True,
            )


if __name__ == "__main__":
    main()
