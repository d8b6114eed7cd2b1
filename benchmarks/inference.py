"""From a 2,000 x 2,000 radiograph file to landmark coordinates, timed (not a test).

    python benchmarks/inference.py --model benchmarks/out/scn-all.pt

Makes a 2,000 x 2,000 8-bit JPEG from a real hand radiograph (padded, as a
detector image would be), then times ``Predictor.predict(path)`` (read, decode,
resample, normalise, network, decode peaks, map back) and its parts, after a
warm-up, on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from scn_annotator.engine.data import prepare_input
from scn_annotator.engine.heatmaps import decode_peaks
from scn_annotator.engine.inference import Predictor
from scn_annotator.io.images import read_image

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    source = read_image(next(iter(sorted((HAND / "images").glob("*.jpg")))))
    canvas = np.zeros((2000, 2000), np.uint8)
    h, w = source.pixels.shape
    canvas[: min(h, 2000), : min(w, 2000)] = source.pixels[:2000, :2000].astype(np.uint8)
    path = Path(tempfile.mkdtemp()) / "big.jpg"
    sitk.WriteImage(sitk.GetImageFromArray(canvas), str(path))
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    for _ in range(3):
        predictor.predict(path)
    total, read, prep, net, peaks = [], [], [], [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        predictor.predict(path)
        total.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        image = read_image(path)
        t1 = time.perf_counter()
        x, _ = prepare_input(image, predictor.input_size, predictor.normalisation)
        t2 = time.perf_counter()
        with torch.inference_mode():
            out = predictor.model(x[None, None])
        t3 = time.perf_counter()
        decode_peaks(out.heatmaps)
        t4 = time.perf_counter()
        for part, dt in zip((read, prep, net, peaks), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            part.append(dt)

    def ms(values: list[float]) -> str:
        return f"{1000 * statistics.median(values):.0f} ms"

    print(
        f"2000 x 2000 JPEG to coordinates ({torch.get_num_threads()} threads, input "
        f"{predictor.input_size[0]}x{predictor.input_size[1]}): median {ms(total)}, max "
        f"{1000 * max(total):.0f} ms over {args.runs}"
    )
    print(f"  read+decode {ms(read)}, resample+normalise {ms(prep)}, network {ms(net)}, peaks {ms(peaks)}")


if __name__ == "__main__":
    main()
