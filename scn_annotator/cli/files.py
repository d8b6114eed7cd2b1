"""``train``, ``predict``, ``evaluate`` on a folder and a CSV, or on a project; ``sample``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ScnError
from ._common import (
    Progress,
    add_device,
    add_project_options,
    add_train_options,
    device,
    need,
    open_project,
    positive,
    report_outside,
    rule,
    train_config,
    training_bar,
)

# --------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    cfg = train_config(args)
    if args.project:
        return _train_project(args, cfg)
    need(args.images and args.labels and args.out, "train needs --images, --labels and --out (or --project)")
    from ..app.file_operations import load_training_data
    from ..engine.training import train

    with Progress("reading images", "img") as loaded:
        data = load_training_data(
            args.images,
            args.labels,
            cfg,
            val_fraction=args.val_fraction,
            spacing_rule=rule(args.spacing_from),
            progress=loaded,
            outside=args.outside,
            start=args.init,
        )
    report_outside(data.outside)
    cfg = data.config or cfg
    if cfg.input_rule:
        print(cfg.input_rule["text"], file=sys.stderr)
    if data.labels_without_image:
        print(
            f"note: {len(data.labels_without_image)} label rows have no image in {args.images} "
            f"(first: {data.labels_without_image[0]})",
            file=sys.stderr,
        )
    from ..engine.config import auto_preset

    name = auto_preset() + " (auto)" if args.preset == "auto" else args.preset
    print(
        f"training {'SCN' if cfg.network.spatial else 'U-Net baseline'} ({name} preset) on {len(data.train)} "
        f"images, validating on {len(data.val)}, {len(data.names)} landmarks",
        file=sys.stderr,
    )
    with Progress("training", "step") as bar:
        result = train(
            cfg,
            data.train,
            data.val,
            data.names,
            args.out,
            progress=training_bar(bar),
            max_minutes=args.max_minutes,
            resume=args.resume,
            init_from=args.init,
            device=device(args),
        )
    if not Path(args.out).is_file():  # never announce a model that is not there
        raise ScnError(f"training ended ({result.stopped}) without writing {args.out}")
    from ..engine.inference import checkpoint_error

    error, unit = checkpoint_error(args.out, data.val, device=device(args)) if data.val else (None, "")
    if error is not None:  # the model as written, local stage and all: the figure a project stores
        best = f"validation error {error:.2f} {unit} (step {result.best_step} selected)"
    else:
        best = "no validation image with landmarks: the last step is kept" if data.val else "no validation images"
    print(f"{result.describe()}; {best}")
    print(f"model written to {args.out}")
    return 0


def _train_project(args: argparse.Namespace, cfg) -> int:  # noqa: ANN001
    from ..app.project_operations import train_project

    project = open_project(args.project, args)
    init = args.init
    if init is None and not args.fresh and (current := project.models.current()):
        from ..engine.training import warm_startable

        init = project.models.file(current)  # fine-tune the current model
        if not warm_startable(init, cfg):
            print(
                f"note: the current model (version {current.id}) has another architecture than asked for; "
                "training from scratch",
                file=sys.stderr,
            )
            init = None
    with Progress("reading images", "img") as loaded, Progress("training", "step") as bar:
        out = train_project(
            project,
            cfg,
            val_fraction=args.val_fraction,
            init_from=init,
            progress=training_bar(bar),
            loading=loaded,
            max_minutes=args.max_minutes,
            device=device(args),
        )
    print(out.result.describe())
    print(out.verdict())
    return 0


# ------------------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    if args.project:
        from ..app.project_operations import predict_project

        project = open_project(args.project, args)
        with Progress("predicting", "img") as step:
            done, failed = predict_project(project, version_id=args.version, progress=step, device=device(args))
        for name, reason in failed:
            print(f"skipped {name}: {reason}", file=sys.stderr)
        print(f"predicted {done} images of {args.project} (those not marked done); annotations untouched")
        return 0
    need(args.model and args.images and args.out, "predict needs --model, --images and --out (or --project)")
    from ..app.file_operations import predict_folder
    from ..engine.inference import Predictor

    predictor = Predictor.from_checkpoint(args.model, device=device(args))
    with Progress("predicting", "img") as step:
        done, failed = predict_folder(predictor, args.images, args.out, progress=step, hints=args.hints)
    for error in failed:
        print(f"skipped: {error}", file=sys.stderr)
    if not done:
        raise ScnError(f"{args.images}: no image could be read")
    seconds = sum(p.seconds for p in done) / len(done)
    skipped = f", skipped {len(failed)}" if failed else ""
    print(
        f"predicted {len(predictor.names)} landmarks in {len(done)} images ({1000 * seconds:.0f} ms per image){skipped}"
    )
    print(f"written to {args.out}")
    return 0


# ------------------------------------------------------------------------ evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.project:
        from ..app.project_operations import evaluate_project

        report = evaluate_project(open_project(args.project, args), version_id=args.version)
        print(
            "the current model on the done images it was not trained on:"
            if args.version is None
            else f"model version {args.version} on the done images it was not trained on:"
        )
    else:
        need(args.pred and args.truth, "evaluate needs --pred and --truth (or --project)")
        from ..app.file_operations import evaluate_files

        report = evaluate_files(
            args.pred, args.truth, spacing_rule=rule(args.spacing_from), images=args.images, user_spacing=args.spacing
        )
    print(report.format(per_landmark=not args.summary))
    if report.cobb is None:
        from ..engine.measurements import spine_corners

        if spine_corners(report.names) is not None:
            print("  Cobb angles: give --images, the rule needs each image's height")
    if args.json:
        report.write_json(args.json)
        print(f"\nwritten to {args.json}")
    return 0


# ---------------------------------------------------------------------- effort


def cmd_effort(args: argparse.Namespace) -> int:
    from ..active.effort import Tolerance, measure_effort
    from ..app.file_operations import in_model_order
    from ..engine.data import match_images
    from ..engine.inference import Predictor
    from ..io.images import SpacingSource, find_images, read_image
    from ..io.landmark_files import read_landmarks

    tolerance = Tolerance.parse(args.tolerance)
    predictor = Predictor.from_checkpoint(args.model, device=device(args))
    table = read_landmarks(args.labels)
    truth = in_model_order(table, predictor.names)
    pairs, _ = match_images(find_images(args.images), table)
    if not pairs:
        raise ScnError(f"{args.labels}: none of its images is in {args.images}")
    spacing_rule = rule(args.spacing_from)
    images = []
    for path, name in pairs:
        image = read_image(path)
        if spacing_rule is not None and (value := spacing_rule.spacing(truth[name])) is not None:
            image = image.with_spacing(value, SpacingSource.LANDMARKS)
        images.append((image, truth[name]))
    with Progress("oracle annotating", "img") as bar:
        report = measure_effort(predictor, images, tolerance, progress=bar)
    print(report.format())
    if args.json:
        report.write_json(args.json)
        print(f"\nwritten to {args.json}")
    return 0


# -------------------------------------------------------------------- sample, demo


def cmd_sample(args: argparse.Namespace) -> int:
    from ..app.sample_project import generate_sample

    labels = generate_sample(args.folder, count=args.count, seed=args.seed, suffix=args.format)
    print(f"{args.count} generated radiographs in {Path(args.folder) / 'images'}, landmarks in {labels}")
    return 0


# -------------------------------------------------------------------------- parser


def register(sub: argparse._SubParsersAction) -> None:
    _register_train(sub)
    _register_predict(sub)
    _register_effort(sub)
    _register_evaluate(sub)
    _register_sample(sub)


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a folder and a landmark CSV, or on a project",
        description="Train an SCN (or the U-Net baseline) and keep the best step by validation "
        "error. With --project: train on the images marked done, fine-tuning the "
        "current model, and register a model version.",
    )
    p.add_argument("--images", type=Path, help="folder of images (searched recursively)")
    p.add_argument(
        "--labels",
        type=Path,
        help="landmark CSV: headerless id,x0,y0,..., wide image,<name>_x,<name>_y,... or "
        "long image,landmark,x,y (pixels)",
    )
    p.add_argument("--out", type=Path, help="model file to write (MODEL.pt)")
    p.add_argument("--project", help="train on this project (a folder or a database URL) instead")
    add_train_options(p)
    p.add_argument(
        "--spacing-from", metavar="A,B=MM", help="pixel spacing from two landmarks a known distance apart, e.g. 1,5=50"
    )
    p.add_argument("--init", type=Path, help="start from the weights of this model (fine-tuning)")
    p.add_argument("--fresh", action="store_true", help="with --project: start from scratch, not the current model")
    p.add_argument("--resume", action="store_true", help="continue OUT's interrupted run")
    add_device(p)
    add_project_options(p)
    p.set_defaults(func=cmd_train)


def _register_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict landmarks for a folder of images, or a project",
        description="Write a wide CSV (image,<name>_x,<name>_y,<name>_confidence) in pixels. "
        "With --project: predict every image not marked done with the current model "
        "and store predictions and heatmaps (never annotations).",
    )
    p.add_argument("--model", type=Path, help="model file written by train")
    p.add_argument("--images", type=Path, help="folder of images")
    p.add_argument("--out", type=Path, help="CSV file to write")
    p.add_argument(
        "--hints",
        type=Path,
        metavar="CSV",
        help="landmarks a person confirmed (any landmark file, px; the others empty): they come back as "
        "given and the other landmarks are predicted consistently with them",
    )
    p.add_argument("--project", help="predict this project's images instead")
    p.add_argument("--version", type=int, help="with --project: this model version (default: the current)")
    add_device(p)
    add_project_options(p)
    p.set_defaults(func=cmd_predict)


def _register_effort(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "effort",
        help="corrections per image an annotator needs, measured with an oracle",
        description="An oracle annotator accepts every proposal within --tolerance of the truth and "
        "corrects the worst remaining landmark, one at a time. Reports corrections and "
        "clicks per image for manual placement, today's proposals, and proposals "
        "re-placed after every correction (conditioned).",
    )
    p.add_argument("--model", type=Path, required=True, help="model file written by train")
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument("--labels", type=Path, required=True, help="their true landmarks (any layout, px)")
    p.add_argument("--tolerance", required=True, help="2mm, 25px or 1%% (of the image height)")
    p.add_argument("--spacing-from", metavar="A,B=MM", help="each image's spacing from two of its landmarks")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    add_device(p)
    p.set_defaults(func=cmd_effort)


def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare predicted landmarks with the truth",
        description="Point error (mean, SD, median), per-landmark table, success detection "
        "rate at 2/2.5/3/4/10 and errors > 10; in mm when a spacing is known. "
        "With --project: the current model on done images it did not train on.",
    )
    p.add_argument("--pred", type=Path, help="predicted landmarks (CSV)")
    p.add_argument("--truth", type=Path, help="true landmarks (CSV)")
    p.add_argument("--project", help="evaluate on this project instead")
    p.add_argument("--version", type=int, help="with --project: this model version (default: the current)")
    p.add_argument("--spacing-from", metavar="A,B=MM", help="spacing from two true landmarks, e.g. 1,5=50")
    p.add_argument(
        "--images",
        type=Path,
        help="read pixel spacings (and, for a spine layout, the heights Cobb angles need) from these images' headers",
    )
    p.add_argument("--spacing", type=positive(float), metavar="MM", help="one pixel spacing for all images")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.add_argument("--summary", action="store_true", help="leave out the per-landmark table")
    add_project_options(p)
    p.set_defaults(func=cmd_evaluate)


def _register_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate phantom radiographs with landmarks (for trying things out)")
    p.add_argument("folder", type=Path)
    p.add_argument("--count", type=positive(int), default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", default=".mha", choices=[".mha", ".png", ".nrrd", ".tif"])
    p.set_defaults(func=cmd_sample)
