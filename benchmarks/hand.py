"""Train and evaluate on the real hand radiographs in ../shared/data/hand (not a test).

A fixed split: 20 test images, 6 validation images (model selection only) and a
training pool of 70, all chosen by a seeded permutation of the sorted ids. Reports
the papers' evaluation on the test images, training time and throughput, the time
from reading a radiograph to its coordinates, and peak memory.

    python benchmarks/hand.py --model scn --train-count 70 --minutes 30 --tag scn-all

The input size is fitted to the data as the command line does (``--input HxW`` fixes it).
    python benchmarks/hand.py --model unet --train-count 10 --minutes 30 --tag unet-10

Results go to benchmarks/out/<tag>.json and a summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from scn_annotator.engine.config import AugmentConfig, RefineConfig, TrainConfig, preset
from scn_annotator.engine.data import Normalisation, build_samples, labelled_images, match_images, prepare_input
from scn_annotator.engine.evaluation import evaluate
from scn_annotator.engine.geometry import SpacingRule
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.training import fit_input_to_data, train
from scn_annotator.io.atomic import atomic_write_text
from scn_annotator.io.images import find_images, read_image
from scn_annotator.io.landmark_files import read_landmarks

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand"
RULE = SpacingRule(1, 5, 50.0)


def split(ids: list[str], seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    order = np.random.default_rng(seed).permutation(sorted(ids)).tolist()
    return order[:20], order[20:26], order[26:]


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["scn", "unet"], default="scn")
    ap.add_argument("--train-count", type=int, default=70)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--input", type=str, help="HxW, e.g. 256x192")
    ap.add_argument("--filters", type=int)
    ap.add_argument("--first-filters", type=int, help="the LA net's full-resolution width (default: --filters)")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--sigma-alpha", type=float)
    ap.add_argument("--dropout-mode")
    ap.add_argument("--init-std", type=float)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--aug", choices=["preset", "paper", "mild"], default="preset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refine", choices=["preset", "on", "off"], default="preset", help="the local refinement stage")
    ap.add_argument("--hint-rate", type=float, help="train with hint channels (trained conditioning)")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--data", type=Path, default=HAND)
    return ap.parse_args()


def _config(args: argparse.Namespace) -> TrainConfig:
    """The preset with the command line's changes (network fields go into the embedded network)."""
    changes: dict = {"seed": args.seed}
    if args.model == "unet":
        changes["spatial"] = False
    if args.steps:
        changes["steps"] = args.steps
    if args.input:  # as on the command line: a given input size is kept, not fitted to the data
        h, w = (int(v) for v in args.input.lower().split("x"))
        changes["input_size"] = (h, w)
        changes["auto_input_growth"] = 0.0
    if args.filters:
        changes["filters"] = changes["sc_filters"] = args.filters
    for key, value in (
        ("heatmap_init_std", args.init_std),
        ("lr", args.lr),
        ("batch_size", args.batch),
        ("sigma_alpha", args.sigma_alpha),
        ("dropout_mode", args.dropout_mode),
        ("first_filters", args.first_filters),
    ):
        if value is not None:
            changes[key] = value
    if args.aug == "paper":
        changes["augment"] = AugmentConfig()
    elif args.aug == "mild":
        changes["augment"] = AugmentConfig(
            translate=0.05, rotate=0.15, scale=(0.9, 1.1), scale_axis=(0.95, 1.05), elastic=0.02
        )
    if args.hint_rate is not None:
        changes["hint_rate"] = args.hint_rate
    if args.refine != "preset":
        changes["refine"] = RefineConfig() if args.refine == "on" else None
    return preset(args.preset, **changes)


def _progress(last: list[float]) -> Callable:
    def progress(p) -> None:
        if p.val_error is not None or time.perf_counter() - last[0] > 120:
            last[0] = time.perf_counter()
            val = f" val {p.val_error:.3f} {p.unit}" if p.val_error is not None else ""
            print(
                f"  step {p.step}/{p.total_steps} loss {p.loss:.1f} sigma {p.sigma_mean:.2f}{val} "
                f"{p.elapsed / 60:.1f} min {p.images_per_second:.2f} img/s",
                flush=True,
            )

    return progress


def _test(model_path: Path, cfg: TrainConfig, table, by_id: dict, test_ids: list[str]) -> dict:
    """The test images through the app's predictor: the report, the coarse SCN alone, and the times."""
    predictor = Predictor.from_checkpoint(model_path, device="cpu")
    predicted, spacing, seconds = {}, {}, []
    for i in test_ids:
        t = time.perf_counter()
        pred = predictor.predict(by_id[i])  # read + resample + network + decode
        seconds.append(time.perf_counter() - t)
        predicted[i] = pred.points
        spacing[i] = (RULE.spacing(table.points[i]),) * 2
    # network alone, for comparison with the calibration figure
    x, _ = prepare_input(read_image(by_id[test_ids[0]]), cfg.input_size, Normalisation(*cfg.normalisation))
    net_times = []
    for _ in range(10):
        t = time.perf_counter()
        predictor.forward(x[None, None])
        net_times.append(time.perf_counter() - t)
    truth = {i: table.points[i] for i in test_ids}
    report = evaluate(predicted, truth, spacing, table.names)
    coarse_summary = None
    if predictor.refiner is not None:  # the same run's coarse SCN alone, on the same test images
        predictor.refiner = None
        coarse = {i: predictor.predict(by_id[i]).points for i in test_ids}
        coarse_summary = evaluate(coarse, truth, spacing, table.names).summary()
    times = {
        "median": 1000 * float(np.median(seconds)),
        "max": 1000 * float(np.max(seconds)),
        "network_median": 1000 * float(np.median(net_times)),
    }
    return {"report": report, "coarse": coarse_summary, "inference_ms": times}


def main() -> None:
    args = _arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = _config(args)
    table = read_landmarks(args.data / "all.csv")
    test_ids, val_ids, pool = split(list(table.points))
    train_ids = pool[: args.train_count]
    pairs, _ = match_images(find_images(args.data / "images"), table)
    by_id = {i: p for p, i in pairs}
    cfg = fit_input_to_data(cfg, labelled_images([(by_id[i], i) for i in train_ids + val_ids], table))
    if cfg.input_rule:
        print(f"{args.tag}: {cfg.input_rule['text']}", flush=True)
    norm = Normalisation(*cfg.normalisation)
    t0 = time.perf_counter()
    train_s = build_samples(
        labelled_images([(by_id[i], i) for i in train_ids], table), cfg.input_size, norm, cfg.cache_factor, RULE
    )
    val_cache = cfg.cache_factor if cfg.refine else None  # the local stage is validated at the cache's resolution
    val_items = labelled_images([(by_id[i], i) for i in val_ids], table)
    val_s = build_samples(val_items, cfg.input_size, norm, val_cache, RULE)
    load_s = time.perf_counter() - t0
    print(f"{args.tag}: loaded {len(train_s)} train / {len(val_s)} val in {load_s:.1f}s; config {cfg}", flush=True)

    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    model_path = out / f"{args.tag}.pt"
    progress = _progress([time.perf_counter()])
    result = train(
        cfg, train_s, val_s, table.names, model_path, progress=progress, max_minutes=args.minutes, device="cpu"
    )
    peak_train_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tested = _test(model_path, cfg, table, by_id, test_ids)
    report = tested["report"]
    record = {
        "tag": args.tag,
        "model": args.model,
        "train_images": len(train_s),
        "val_images": len(val_s),
        "test_images": len(test_ids),
        "config": cfg.to_dict(),
        "train": {
            "steps": result.steps,
            "best_step": result.best_step,
            "seconds": result.seconds,
            "stopped": result.stopped,
            "best_val_mm": result.best_val_error,
            "images_per_second": result.steps * cfg.batch_size / max(result.timings["data_and_step"], 1e-9),
            "timings": result.timings,
            "history": result.history,
        },
        "load_seconds": load_s,
        "test": report.summary(),
        "test_coarse_only": tested["coarse"],
        "refine": None if result.refine is None else result.refine.describe(),
        "per_landmark": report.per_landmark(),
        "inference_ms": tested["inference_ms"],
        "peak_rss_mb_after_training": peak_train_mb,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    atomic_write_text(out / f"{args.tag}.json", json.dumps(record, indent=2))
    print(report.format(per_landmark=False))
    print(
        f"{args.tag}: {result.steps} steps in {result.seconds / 60:.1f} min ({result.stopped}), "
        f"best val {result.best_val_error:.3f} mm at {result.best_step}; inference "
        f"{record['inference_ms']['median']:.0f} ms/image "
        f"(network {record['inference_ms']['network_median']:.0f} ms); peak RSS {peak_train_mb:.0f} MB",
        flush=True,
    )
    if result.refine is not None:
        print(f"{args.tag}: {result.refine.describe()}")
    if tested["coarse"] is not None:
        print(f"{args.tag}: the coarse SCN alone on the test images: {tested['coarse']}")


if __name__ == "__main__":
    main()
