"""The ``scn-annotator`` command.

Every subcommand is a thin layer over a core function. User errors (a bad file, a
wrong option) print one line, ``scn-annotator: error: ...``, and exit with code 2;
long steps show a progress bar on stderr; results go to stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import ScnError

__all__ = ["main"]

log = logging.getLogger("scn_annotator")


class _Progress:
    """A progress bar on stderr that appears only once there is progress to show.

    Input is checked before any slow work starts, so an error on bad input stays
    one line. In a log (CI, a pipe) the bar is redrawn twice a minute, not every step.
    """

    def __init__(self, desc: str, unit: str = "it") -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int, **postfix: str) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            interval = 0.2 if sys.stderr.isatty() else 30.0
            self.bar = tqdm(
                total=total, desc=self.desc, unit=self.unit, file=sys.stderr,
                dynamic_ncols=True, mininterval=interval, leave=False,
            )  # fmt: skip
        self.bar.total = total
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _rule(text: str | None):  # noqa: ANN202
    from .geometry import SpacingRule

    return SpacingRule.parse(text) if text else None


def _positive(kind: type):  # noqa: ANN202
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 256x192, not {text!r}") from None
    if h <= 0 or w <= 0 or h % 16 or w % 16:
        raise argparse.ArgumentTypeError(f"height and width must be positive multiples of 16, not {text}")
    return h, w


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


# --------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import load_training_data
    from .training import TrainProgress, preset, train

    changes = {}
    if args.steps:
        changes["steps"] = args.steps
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.model == "unet":
        changes["spatial"] = False
    if args.input_size:
        changes["input_size"] = args.input_size
    if args.filters:
        changes["filters"] = changes["sc_filters"] = args.filters
    cfg = preset(args.preset, **changes)
    rule = _rule(args.spacing_from)
    with _Progress("reading images", "img") as loaded:
        data = load_training_data(
            args.images, args.labels, cfg, val_fraction=args.val_fraction, spacing_rule=rule, progress=loaded
        )
    if data.labels_without_image:
        print(
            f"note: {len(data.labels_without_image)} label rows have no image in {args.images} "
            f"(first: {data.labels_without_image[0]})",
            file=sys.stderr,
        )
    print(
        f"training {'SCN' if cfg.spatial else 'U-Net baseline'} ({args.preset} preset) on "
        f"{len(data.train)} images, validating on {len(data.val)}, {len(data.names)} landmarks",
        file=sys.stderr,
    )
    with _Progress("training", "step") as bar:

        def report(p: TrainProgress) -> None:
            post = {"loss": f"{p.loss:.3g}", "img/s": f"{p.images_per_second:.1f}"}
            if p.best_val_error is not None:
                post["best val"] = f"{p.best_val_error:.2f} {p.unit}"
            bar(p.step, p.total_steps, **post)

        result = train(
            cfg,
            data.train,
            data.val,
            data.names,
            args.out,
            progress=report,
            max_minutes=args.max_minutes,
            resume=args.resume,
            init_from=args.init,
            device=None if args.device == "auto" else args.device,
        )
    best = (
        f"best validation error {result.best_val_error:.2f} {result.unit} at step {result.best_step}"
        if result.best_val_error is not None
        else "no validation images"
    )
    print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min ({result.stopped}); {best}")
    print(f"model written to {args.out}")
    return 0


# ------------------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import Predictor
    from .pipeline import predict_folder

    predictor = Predictor.from_checkpoint(args.model, device=None if args.device == "auto" else args.device)
    with _Progress("predicting", "img") as step:
        done, failed = predict_folder(predictor, args.images, args.out, progress=step)
    for error in failed:
        print(f"skipped: {error}", file=sys.stderr)
    if not done:
        raise ScnError(f"{args.images}: no image could be read")
    seconds = sum(p.seconds for p in done) / len(done)
    print(
        f"predicted {len(predictor.names)} landmarks in {len(done)} images "
        f"({1000 * seconds:.0f} ms per image){f', skipped {len(failed)}' if failed else ''}"
    )
    print(f"written to {args.out}")
    return 0


# ------------------------------------------------------------------------ evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .pipeline import evaluate_files

    report = evaluate_files(
        args.pred,
        args.truth,
        spacing_rule=_rule(args.spacing_from),
        images=args.images,
        user_spacing=args.spacing,
    )
    print(report.format(per_landmark=not args.summary))
    if args.json:
        report.write_json(args.json)
        print(f"\nwritten to {args.json}")
    return 0


# -------------------------------------------------------------------- sample, demo


def cmd_sample(args: argparse.Namespace) -> int:
    from .sample import generate_sample

    labels = generate_sample(args.folder, count=args.count, seed=args.seed, suffix=args.format)
    print(f"{args.count} generated radiographs in {Path(args.folder) / 'images'}, landmarks in {labels}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a sample, train on most of it, predict and evaluate the rest."""
    import shutil

    from .inference import Predictor
    from .pipeline import evaluate_files, load_training_data, predict_folder
    from .sample import generate_sample
    from .training import preset, train

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scn-demo-"))
    started = time.perf_counter()
    print(f"1/4 generating {args.count} phantom hand radiographs in {root}")
    labels = generate_sample(root / "train", count=args.count, seed=1)
    test_labels = generate_sample(root / "test", count=8, seed=2)
    cfg = preset("cpu", input_size=(160, 128), steps=args.steps, validate_every=50)
    data = load_training_data(root / "train" / "images", labels, cfg, val_fraction=0.15)
    print(
        f"2/4 training the CPU preset for {args.steps} steps on {len(data.train)} images "
        f"(validating on {len(data.val)})"
    )
    model = root / "model.pt"
    with _Progress("training", "step") as bar:
        result = train(
            cfg,
            data.train,
            data.val,
            data.names,
            model,
            progress=lambda p: bar(p.step, p.total_steps),
            max_minutes=args.max_minutes,
        )
    print(
        f"    {result.steps} steps in {result.seconds:.0f} s, best validation error "
        f"{result.best_val_error:.2f} {result.unit}"
    )
    print("3/4 predicting 8 new radiographs")
    predictor = Predictor.from_checkpoint(model)
    predict_folder(predictor, root / "test" / "images", root / "predictions.csv")
    print("4/4 evaluating against their true landmarks")
    report = evaluate_files(root / "predictions.csv", test_labels, images=root / "test" / "images")
    print(report.format(per_landmark=False))
    print(
        f"\nmodel: {model}\npredictions: {root / 'predictions.csv'}\n"
        f"done in {(time.perf_counter() - started) / 60:.1f} min"
    )
    if args.clean:
        shutil.rmtree(root)
    return 0


# ---------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scn-annotator",
        description="Anatomical landmark detection and annotation with a SpatialConfiguration-Net.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens in detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model on a folder of images and a landmark CSV",
        description="Train an SCN (or the U-Net baseline) and write the best model by validation error.",
    )
    p.add_argument("--images", required=True, type=Path, help="folder of images (searched recursively)")
    p.add_argument(
        "--labels",
        required=True,
        type=Path,
        help="landmark CSV: headerless id,x0,y0,..., wide image,<name>_x,<name>_y,... or "
        "long image,landmark,x,y (pixels)",
    )
    p.add_argument("--out", required=True, type=Path, help="model file to write (MODEL.pt)")
    p.add_argument(
        "--preset",
        default="cpu",
        choices=["cpu", "paper"],
        help="cpu: minutes on a laptop; paper: the published settings, for a GPU (default cpu)",
    )
    p.add_argument(
        "--model",
        default="scn",
        choices=["scn", "unet"],
        help="scn, or unet: the local-appearance net alone, the paper's baseline",
    )
    p.add_argument("--steps", type=_positive(int), help="training steps (default: the preset's)")
    p.add_argument(
        "--input-size",
        type=_size,
        metavar="HxW",
        help="network input, multiples of 16, e.g. 256x192 (default: the preset's)",
    )
    p.add_argument("--filters", type=_positive(int), help="filters per layer (default: the preset's)")
    p.add_argument("--max-minutes", type=_positive(float), help="stop after this many minutes")
    p.add_argument(
        "--spacing-from",
        metavar="A,B=MM",
        help="pixel spacing from two landmarks a known distance apart, e.g. 1,5=50",
    )
    p.add_argument(
        "--val-fraction",
        type=_fraction,
        default=0.1,
        help="share of labelled images held out for model selection (default 0.1)",
    )
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--init", type=Path, help="start from the weights of this model (fine-tuning)")
    p.add_argument("--resume", action="store_true", help="continue OUT's interrupted run")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "predict",
        help="predict landmarks for a folder of images",
        description="Write a wide CSV (image,<name>_x,<name>_y,<name>_confidence) in pixels.",
    )
    p.add_argument("--model", required=True, type=Path, help="model file written by train")
    p.add_argument("--images", required=True, type=Path, help="folder of images")
    p.add_argument("--out", required=True, type=Path, help="CSV file to write")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "evaluate",
        help="compare predicted landmarks with the truth",
        description="Point error (mean, SD, median), per-landmark table, success detection "
        "rate at 2/2.5/3/4/10 and errors > 10; in mm when a spacing is known.",
    )
    p.add_argument("--pred", required=True, type=Path, help="predicted landmarks (CSV)")
    p.add_argument("--truth", required=True, type=Path, help="true landmarks (CSV)")
    p.add_argument("--spacing-from", metavar="A,B=MM", help="spacing from two true landmarks, e.g. 1,5=50")
    p.add_argument("--images", type=Path, help="read pixel spacings from these images' headers")
    p.add_argument("--spacing", type=_positive(float), metavar="MM", help="one pixel spacing for all images")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.add_argument("--summary", action="store_true", help="leave out the per-landmark table")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="generate phantom radiographs with landmarks (for trying things out)")
    p.add_argument("folder", type=Path)
    p.add_argument("--count", type=_positive(int), default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", default=".mha", choices=[".mha", ".png", ".nrrd", ".tif"])
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("demo", help="the headless pipeline on generated data: train, predict, evaluate")
    p.add_argument("--dir", type=Path, help="where to put the demo (default: a new temporary folder)")
    p.add_argument("--count", type=_positive(int), default=48, help="training radiographs to generate")
    p.add_argument("--steps", type=_positive(int), default=600)
    p.add_argument("--max-minutes", type=_positive(float), default=5.0)
    p.add_argument("--clean", action="store_true", help="delete the demo folder afterwards")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except ScnError as exc:
        print(f"scn-annotator: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scn-annotator: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
