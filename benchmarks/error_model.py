"""Fit the error model (``scn_annotator.engine.error_model``) onto a spine model file trained before it existed.

A ``train`` run now fits it at its end, from its own labelled images; this does the same for a
model file of ``benchmarks/spine.py`` from that run's list of training images (``--tag``-train.csv),
so that corrections can be compared on the same network with and without it (not a test):

    python benchmarks/error_model.py benchmarks/out/spine-aside-seed1.pt benchmarks/out/spine-aside-seed1-train.csv \\
        benchmarks/out/spine-errors-seed1.pt
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np
from spine import SPINE

from scn_annotator.engine.data import prepare_input
from scn_annotator.engine.error_model import ErrorModel
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.model_file import ModelFile
from scn_annotator.io.images import find_images, image_id, read_image
from scn_annotator.io.landmark_files import read_landmarks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("train_list", type=Path, help="the run's training images (its -train.csv)")
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    layout = predictor.objects
    if layout is None:
        raise SystemExit(f"{args.model}: not a model of objects")
    table = read_landmarks(SPINE / "landmarks.csv")
    files = {image_id(p): p for p in find_images(SPINE / "images")}
    with args.train_list.open() as f:
        names = [row["image"] for row in csv.DictReader(f)]
    errors = []
    for name in names:
        image = read_image(files[name])
        _, transform = prepare_input(image, predictor.input_size, predictor.normalisation, "cpu")
        predicted = predictor.predict(image).points
        errors.append(transform.to_network(table.points[name]) - transform.to_network(predicted))
    model = ErrorModel.fit(layout.objects.members, errors, layout.gap)
    if model is None:
        raise SystemExit("no error model: objects of unequal sizes, or no vertebra found right")
    print(f"{len(names)} training images; correlation by distance along the chain: {np.round(model.lags, 2)}")
    held = ModelFile.load(args.model)
    held.objects = dataclasses.replace(held.objects, errors=model)
    held.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
