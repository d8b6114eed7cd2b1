"""Train on the real AP spine radiographs in ../shared/data/spine and evaluate on other patients (not a test).

The split is by patient (``sunhl-1th-<date>-<number>``; several exposures of one
patient stay on one side): a seeded fifth of the patients is the test set. Training
uses the defaults a new user gets (``cpu`` preset, input fitted to the data), with
landmarks outside their image treated as missing (one label of the public set lies
below its image), for at most ``--minutes``.

Reported: median point error in px and as a share of the image height, points within
1 % of the height, and the share of vertebrae whose predicted centre (mean of its four
corners) is nearer another vertebra's true centre than its own: a vertebra labelled
as its neighbour, the ambiguity the SCN exists to resolve.

    python benchmarks/spine.py --minutes 30 --tag spine-cpu
    python benchmarks/spine.py --evaluate benchmarks/out/spine-cpu.pt --tag spine-cpu-retest
    python benchmarks/spine.py --evaluate benchmarks/out/spine-cpu.pt --refit-places --tag spine-cpu-places
    python benchmarks/spine.py --evaluate benchmarks/out/spine-cpu.pt --refit-places --fit-levels --tag spine-cpu-levels
    python benchmarks/spine.py --evaluate benchmarks/out/spine-cpu.pt --refit-steps --tag spine-cpu-polar

Results go to benchmarks/out/<tag>.json and a summary to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from scn_annotator.app.file_operations import load_training_data
from scn_annotator.engine.config import LevelCheckConfig, RefineConfig, TrainConfig, preset
from scn_annotator.engine.data import prepare_input
from scn_annotator.engine.evaluation import cobb_report
from scn_annotator.engine.geometry import fit_transform, inside_image
from scn_annotator.engine.implausible import without_implausible
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.levels import train_level_check
from scn_annotator.engine.measurements import spine_corners
from scn_annotator.engine.model_file import ModelFile
from scn_annotator.engine.objects import ChainPrior, LandmarkObjects
from scn_annotator.engine.training import train
from scn_annotator.io.atomic import atomic_write_text
from scn_annotator.io.images import find_images, image_id, read_image, read_image_info
from scn_annotator.io.landmark_files import read_landmarks, write_landmarks

SPINE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spine"


def patient(name: str) -> str:
    match = re.match(r"(sunhl-1th-\d{2}-[A-Za-z]{3}-\d{4}-\d+)", name)
    return match.group(1) if match else name


def spine_metrics(predicted: dict, truth: dict, heights: dict, names: list[str]) -> dict:
    """Point errors relative to the image height, vertebrae nearer a neighbour than their own, Cobb SMAPE."""
    rel, px, swapped, vertebrae, shifted = [], [], 0, 0, 0
    for name, true in truth.items():
        pred = predicted[name]
        e = np.linalg.norm(pred - true, axis=1)
        ok = ~np.isnan(e)
        px += e[ok].tolist()
        rel += (e[ok] / heights[name]).tolist()
        centres_true = true.reshape(-1, 4, 2).mean(axis=1)  # NaN where a label was set aside (``_clean``)
        centres_pred = np.nanmean(pred.reshape(-1, 4, 2), axis=1)
        offsets = []
        for k, c in enumerate(centres_pred):
            if np.isnan(centres_true[k]).any():
                continue
            d = np.linalg.norm(centres_true - c, axis=1)
            vertebrae += 1
            swapped += int(np.nanargmin(d) != k)
            offsets.append(int(np.nanargmin(d)) - k)
        values, counts = np.unique(offsets, return_counts=True)
        shifted += int(values[counts.argmax()] != 0 and counts.max() >= 0.8 * len(offsets))  # the whole column
    cobb = cobb_report(predicted, truth, heights, spine_corners(names))  # the challenge's rule, every corner
    rel, px = np.array(rel), np.array(px)
    return {
        "images": len(truth),
        "points": int(px.size),
        "median_px": float(np.median(px)),
        "mean_px": float(px.mean()),
        "median_pct_height": float(100 * np.median(rel)),
        "mean_pct_height": float(100 * rel.mean()),
        "within_1pct_height": float((rel <= 0.01).mean()),
        "vertebrae_nearer_a_neighbour": swapped / max(vertebrae, 1),
        "images_whole_column_shifted": shifted,
        "cobb_smape_pct": cobb.smape,
        "cobb_main_abs_error_deg_median": cobb.main_error_median,
    }


def model_arguments() -> argparse.ArgumentParser:
    """The arguments of the scripts that score one spine model on one split (``spine_ends.py``, ``spine_bends.py``)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-share", type=float, default=0.2)
    ap.add_argument("--data", type=Path, default=SPINE)
    return ap


def _progress(last: list[float]) -> Callable:
    def progress(p) -> None:
        if p.val_error is not None or time.perf_counter() - last[0] > 120:
            last[0] = time.perf_counter()
            val = f" val {p.val_error:.2f} {p.unit}" if p.val_error is not None else ""
            print(f"  step {p.step}/{p.total_steps} loss {p.loss:.1f}{val} {p.elapsed / 60:.1f} min", flush=True)

    return progress


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--input", type=str, help="HxW; default: fitted to the data")
    ap.add_argument("--filters", type=int)
    ap.add_argument(
        "--levels",
        type=int,
        help="the LA net's least levels (the input rule adds more to see the column; --input fixes)",
    )
    ap.add_argument("--first-filters", type=int, help="the LA net's full-resolution width (default: --filters)")
    ap.add_argument("--dropout", type=float, help="the LA net's dropout (default: the preset's 0.5)")
    ap.add_argument("--test-share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--data", type=Path, default=SPINE)
    ap.add_argument("--refine", choices=["preset", "on", "off"], default="preset", help="the local refinement stage")
    ap.add_argument("--sc-downsample", type=int, help="the SC component's pooling (default: the preset's 16)")
    ap.add_argument("--sc-kernel", type=int, help="the SC component's kernel (default: the preset's 11)")
    ap.add_argument("--hint-rate", type=float, help="train with hint channels (trained conditioning)")
    ap.add_argument("--cache-factor", type=float, help="the local stage's resolution, times the network's (2)")
    ap.add_argument("--objects", choices=["on", "off"], default="on", help="two stages by vertebra (default) or none")
    ap.add_argument("--evaluate", type=Path, metavar="MODEL", help="test this model file instead of training one")
    ap.add_argument(
        "--refit-places",
        action="store_true",
        help="with --evaluate: fit the chain's place prior from this split's training labels (model files of stop 28)",
    )
    ap.add_argument(
        "--refit-steps",
        action="store_true",
        help="with --evaluate: fit the chain's polar steps from this split's training labels (model files of stop 37)",
    )
    ap.add_argument(
        "--refit-bends",
        action="store_true",
        help="with --evaluate: fit how the chain's steps follow each other from this split's training labels "
        "(model files before stop 42)",
    )
    ap.add_argument("--level-reach", type=float, help="with --fit-levels: the crops' reach in steps (default 3)")
    ap.add_argument("--level-steps", type=int, help="with --fit-levels: its training steps (default 1000)")
    ap.add_argument("--level-crop", type=int, help="with --fit-levels: the crops' side in px (default 64)")
    ap.add_argument("--save-model", type=Path, help="with --evaluate: write the model as tested (refitted) here")
    ap.add_argument(
        "--fit-levels",
        action="store_true",
        help="with --evaluate: train the chain's level check from this split's training images (older model files)",
    )
    return ap.parse_args()


def _config(args: argparse.Namespace) -> TrainConfig:
    changes: dict = {"seed": args.seed}
    if args.steps:
        changes["steps"] = args.steps
    if args.input:
        changes["input_size"] = tuple(int(v) for v in args.input.lower().split("x"))
        changes["auto_input_growth"] = 0.0
    if args.filters:
        changes["filters"] = changes["sc_filters"] = args.filters
    for key in ("sc_downsample", "sc_kernel", "hint_rate", "cache_factor", "levels", "dropout", "first_filters"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if args.objects == "off":
        changes["objects"] = False
    if args.refine != "preset":
        changes["refine"] = RefineConfig() if args.refine == "on" else None
    return preset("cpu", **changes)


def _refit_chain(
    predictor: Predictor, table, train_ids: list[str], by_name: dict[str, Path], fields: tuple[str, ...]
) -> None:
    """Give an older model's chain the ``fields`` of the prior a training run fits today (its place prior, its
    polar steps), from the same training labels."""
    layout = predictor.objects
    if layout is None or layout.chain is None:
        raise SystemExit("--refit-places / --refit-steps: this model decodes no chain")
    labels = []
    for name in train_ids:
        size = read_image_info(by_name[name]).size
        points = _clean({name: table.points[name]}, table.names)[name]  # as training treats slips: set aside
        points[~inside_image(points[:, 0], points[:, 1], size)] = np.nan  # and labels outside: missing
        labels.append(fit_transform(size, predictor.input_size).to_network(points))
    fitted = ChainPrior.fit([layout.objects.centres(p) for p in labels])
    chain = dataclasses.replace(layout.chain, **{name: getattr(fitted, name) for name in fields})
    predictor.objects = dataclasses.replace(layout, chain=chain)


def _with_levels(
    predictor: Predictor, table, train_ids: list[str], by_name: dict[str, Path], changes: dict | None = None
) -> None:
    """Give an older model the level check a training run trains today, from the same training images."""
    layout = predictor.objects
    if layout is None or layout.chain is None:
        raise SystemExit("--fit-levels: this model decodes no chain")
    cfg = (predictor.train_config.level_check if predictor.train_config else None) or LevelCheckConfig()
    cfg = cfg.replace(**{k: v for k, v in (changes or {}).items() if v is not None})
    inputs, centres = [], []
    for name in train_ids:
        image = read_image(by_name[name])
        net_input, transform = prepare_input(image, predictor.input_size, predictor.normalisation, "cpu")
        points = _clean({name: table.points[name]}, table.names)[name]  # as a training run sets them aside
        points[~inside_image(points[:, 0], points[:, 1], image.size)] = np.nan
        inputs.append(net_input)
        centres.append(layout.objects.centres(transform.to_network(points)))
    t = time.perf_counter()
    torch.manual_seed(0)
    check = train_level_check(inputs[:-20], centres[:-20], cfg, val_images=inputs[-20:], val_centres=centres[-20:])
    assert check is not None
    print(
        f"level check: {cfg.steps} steps in {(time.perf_counter() - t) / 60:.1f} min, "
        f"{100 * (check.accuracy or 0):.0f} % of 20 held-out training images' ends named right",
        flush=True,
    )
    predictor.objects = dataclasses.replace(layout, levels=check.to(predictor.device))


def _test(
    model_path: Path,
    data: Path,
    table,
    test_ids: list[str],
    refit_from: list[str] | None = None,
    refit: tuple[str, ...] = (),
    levels_from: list[str] | None = None,
    save_to: Path | None = None,
    level_changes: dict | None = None,
) -> tuple[dict, dict, dict | None, list[float]]:
    """The test images through the app's predictor; the coarse SCN alone too, when there is a local stage."""
    predictor = Predictor.from_checkpoint(model_path, device="cpu")
    by_name = {image_id(p): p for p in find_images(data / "images")}
    if refit_from is not None:
        _refit_chain(predictor, table, refit_from, by_name, refit)
    if levels_from is not None:
        _with_levels(predictor, table, levels_from, by_name, level_changes)
    if save_to is not None:
        held = ModelFile.load(model_path)
        held.objects = predictor.objects
        held.save(save_to)
    predicted, heights, seconds = {}, {}, []
    for name in test_ids:
        t = time.perf_counter()
        predicted[name] = predictor.predict(by_name[name]).points
        seconds.append(time.perf_counter() - t)
        heights[name] = read_image_info(by_name[name]).size[1]
    truth = {n: table.points[n] for n in test_ids}
    metrics = spine_metrics(predicted, truth, heights, table.names)
    metrics_clean = spine_metrics(predicted, _clean(truth, table.names), heights, table.names)
    coarse_metrics = None
    if predictor.refiner is not None:  # the same run's coarse SCN alone, on the same test images
        predictor.refiner = None
        coarse = {n: predictor.predict(by_name[n]).points for n in test_ids}
        coarse_metrics = spine_metrics(coarse, truth, heights, table.names)
    return metrics, metrics_clean, coarse_metrics, seconds


def _clean(truth: dict, names: list[str]) -> dict:
    """The labels with every vertebra no column can have set aside (NaN), as training sets them aside
    (``engine/implausible.py``: 5 of seed 0's 101 test spines, 8 of seed 1's 82)."""
    objects = LandmarkObjects.infer(names)
    return {name: without_implausible(points, objects)[0] for name, points in truth.items()}


def _split(table, seed: int, test_share: float) -> tuple[list[str], list[str], int, int]:
    """Test and training image ids, split by patient; and how many patients in all and in the test set."""
    patients = sorted({patient(n) for n in table.points})
    shuffled = np.random.default_rng(seed).permutation(patients)
    test_patients = set(shuffled[: round(len(patients) * test_share)])
    test_ids = sorted(n for n in table.points if patient(n) in test_patients)
    train_ids = sorted(n for n in table.points if patient(n) not in test_patients)
    return test_ids, train_ids, len(patients), len(test_patients)


def _train(args: argparse.Namespace, table, train_ids: list[str], out: Path, note: str) -> tuple[Path, dict]:
    cfg = _config(args)
    train_csv = out / f"{args.tag}-train.csv"
    write_landmarks(train_csv, table.names, {i: table.points[i] for i in train_ids})
    t0 = time.perf_counter()
    data = load_training_data(args.data / "images", train_csv, cfg, val_fraction=0.05, outside="missing")
    cfg, loaded = data.config, time.perf_counter() - t0
    print(
        f"{args.tag}: {note}; loaded {len(data.train)} train / {len(data.val)} val in {loaded:.0f} s; "
        f"{cfg.input_rule['text'] if cfg.input_rule else cfg.input_size}; {len(data.outside)} labels outside "
        f"their image treated as missing",
        flush=True,
    )
    model_path = out / f"{args.tag}.pt"
    progress = _progress([time.perf_counter()])
    result = train(
        cfg, data.train, data.val, data.names, model_path, progress=progress, max_minutes=args.minutes, device="cpu"
    )
    print(f"{args.tag}: {result.describe()}", flush=True)  # the stages after stage 1 included
    record = {
        "config": cfg.to_dict(),
        "train_images": len(data.train),
        "train": {
            "steps": result.steps,
            "planned_steps": result.planned_steps,
            "seconds": result.seconds,
            "stopped": result.stopped,
            "best_step": result.best_step,
            "best_val_px": result.best_val_error,
        },
        "refine": None if result.refine is None else result.refine.describe(),
    }
    return model_path, record


def _print(tag: str, metrics: dict, coarse: dict | None, ms: float) -> None:
    print(
        f"{tag}: test on {metrics['images']} images of other patients: median "
        f"{metrics['median_px']:.1f} px ({metrics['median_pct_height']:.2f} % of the height), mean "
        f"{metrics['mean_pct_height']:.2f} %, {100 * metrics['within_1pct_height']:.0f} % within 1 %, "
        f"{100 * metrics['vertebrae_nearer_a_neighbour']:.1f} % of vertebrae nearer a neighbour "
        f"({metrics['images_whole_column_shifted']} images with the whole column shifted), Cobb SMAPE "
        f"{metrics['cobb_smape_pct']:.1f} % (main angle {metrics['cobb_main_abs_error_deg_median']:.1f} deg off, "
        f"median); {ms:.0f} ms/image",
        flush=True,
    )
    if coarse is not None:
        print(
            f"{tag}: without stage 2 / the local stage: median {coarse['median_pct_height']:.2f} % of the height, "
            f"{100 * coarse['within_1pct_height']:.0f} % within 1 %, "
            f"{100 * coarse['vertebrae_nearer_a_neighbour']:.1f} % of vertebrae nearer a neighbour, "
            f"Cobb SMAPE {coarse['cobb_smape_pct']:.1f} %",
            flush=True,
        )


def main() -> None:
    args = _arguments()
    table = read_landmarks(args.data / "landmarks.csv")
    test_ids, train_ids, patients, test_patients = _split(table, args.seed, args.test_share)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    note = f"{patients} patients, {len(test_ids)} test images of {test_patients} patients"
    if args.evaluate is not None:  # an earlier run's model, through today's predictor
        model_path, record = args.evaluate, {"model": str(args.evaluate)}
        print(f"{args.tag}: {note}; testing {model_path}", flush=True)
    else:
        model_path, record = _train(args, table, train_ids, out, note)
    refit = (("places", "place_spread") if args.refit_places else ()) + (ChainPrior.POLAR if args.refit_steps else ())
    refit += ChainPrior.BENDS if args.refit_bends else ()
    refit_from = train_ids if refit else None
    levels_from = train_ids if args.fit_levels else None
    metrics, metrics_clean, coarse_metrics, seconds = _test(
        model_path,
        args.data,
        table,
        test_ids,
        refit_from,
        refit,
        levels_from,
        args.save_model,
        {"reach": args.level_reach, "steps": args.level_steps, "crop": args.level_crop},
    )
    record = {
        "tag": args.tag,
        **record,
        "test_images": len(test_ids),
        "test": metrics,
        "test_labels_set_aside": metrics_clean,
        "test_coarse_only": coarse_metrics,
        "inference_ms_median": 1000 * float(np.median(seconds)),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    atomic_write_text(out / f"{args.tag}.json", json.dumps(record, indent=2))
    _print(args.tag, metrics, coarse_metrics, record["inference_ms_median"])
    _print(f"{args.tag} (labels out of line set aside)", metrics_clean, None, record["inference_ms_median"])


if __name__ == "__main__":
    main()
