"""What every subcommand shares: progress bars, option parsers, opening a project."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ScnError

if TYPE_CHECKING:  # imported where used: --help must not wait for torch or SQLAlchemy
    from ..db.store import Project
    from ..engine.config import TrainConfig
    from ..engine.geometry import SpacingRule
    from ..engine.trainer import TrainProgress

__all__ = [
    "Progress",
    "add_device",
    "command",
    "device",
    "fraction",
    "open_project",
    "positive",
    "rule",
    "size",
    "train_config",
]


class Progress:
    """A progress bar on stderr that appears only once there is progress to show.

    Input is checked before any slow work starts, so an error on bad input stays
    one line. In a log (CI, a pipe) the bar is redrawn twice a minute, not every step.
    """

    def __init__(self, desc: str, unit: str = "it", rate: bool = True) -> None:
        self.desc, self.unit, self.rate, self.bar = desc, unit, rate, None

    def __call__(self, done: int, total: int, **postfix: str) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            interval = 0.2 if sys.stderr.isatty() else 30.0
            # without a meaningful rate (a percentage of a job), no rate and no tqdm estimate: the caller's
            # postfix says how long is left
            fmt = None if self.rate else "{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}"
            self.bar = tqdm(
                total=total,
                desc=self.desc,
                unit=self.unit,
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=interval,
                leave=False,
                bar_format=fmt,
            )
        self.bar.total = total
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    def refresh(self) -> None:
        """Draw the bar now (its last state), whatever the redraw interval."""
        if self.bar is not None:
            self.bar.refresh()

    def write(self, line: str) -> None:
        """A line above the bar (never onto it, in a terminal or a log)."""
        if self.bar is None:
            print(line, file=sys.stderr)
        else:
            self.bar.write(line, file=sys.stderr)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def command() -> str:
    """How to run this program again, as the user can type it: the bare name only when it is on the PATH."""
    import shutil

    here = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("scn-annotator")
    if found and here is not None and Path(found).resolve() == here:
        return "scn-annotator"
    beside = Path(sys.executable).parent / "scn-annotator"
    if beside.exists():
        return str(beside)
    return f"{sys.executable} -m scn_annotator"


def rule(text: str | None) -> SpacingRule | None:
    from ..engine.geometry import SpacingRule

    return SpacingRule.parse(text) if text else None


def positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 256x192, not {text!r}") from None
    if h <= 0 or w <= 0 or h % 16 or w % 16:
        raise argparse.ArgumentTypeError(f"height and width must be positive multiples of 16, not {text}")
    return h, w


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="where the network runs (default: CUDA, then Apple MPS, then the CPU)",
    )


def device(args: argparse.Namespace) -> str | None:
    return None if args.device == "auto" else args.device


def add_project_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-root", help="where this machine finds the project's images (default: as imported)")
    parser.add_argument(
        "--data-dir",
        help="this machine's folder for checkpoints, heatmaps and exports; a team "
        "project fetches what it lacks from the database (default: the "
        "project folder, or SCN_DATA_DIR)",
    )
    parser.add_argument("--user", help="the name recorded with every change (default: your login)")


def open_project(location: str, args: argparse.Namespace) -> Project:
    from ..db.store import Project

    return Project.open(
        location,
        image_root=getattr(args, "image_root", None),
        data_dir=getattr(args, "data_dir", None),
        user=getattr(args, "user", None),
    )


def add_train_options(p: argparse.ArgumentParser) -> None:
    from ..engine.config import PRESETS  # no torch there: --help stays quick

    p.add_argument(
        "--preset",
        default="auto",
        choices=["auto", *PRESETS],
        help="auto (default): gpu where CUDA or MPS computes, cpu otherwise; cpu: minutes on a laptop; "
        "gpu: a larger input and net for a GPU; paper: the published settings",
    )
    p.add_argument(
        "--model",
        default="scn",
        choices=["scn", "unet"],
        help="scn, or unet: the local-appearance net alone, the paper's baseline",
    )
    p.add_argument("--steps", type=positive(int), help="training steps (default: the preset's)")
    p.add_argument(
        "--input-size",
        type=size,
        metavar="HxW",
        help="network input, multiples of 16, e.g. 256x192 (default: the cpu preset fits the aspect "
        "and size to the training images and landmarks; the paper preset uses 512x512)",
    )
    p.add_argument("--filters", type=positive(int), help="filters per layer (default: the preset's)")
    p.add_argument("--max-minutes", type=positive(float), help="stop after this many minutes")
    p.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.1,
        help="share of labelled images held out for model selection (default 0.1)",
    )
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument(
        "--outside",
        choices=["error", "missing"],
        default="error",
        help="a landmark outside its image: refuse the file (default), or treat it as missing (each one is listed)",
    )
    p.add_argument(
        "--refine",
        choices=["on", "off"],
        help="the local refinement stage after the coarse SCN (default: the preset's)",
    )
    p.add_argument(
        "--hint-rate",
        type=fraction,
        metavar="P",
        help="train the SC component with hint channels for conditioned proposals: the share of "
        "images that get hints (default 0: none; conditioning then works training-free)",
    )


def report_outside(notes: list[str]) -> None:
    """List, on stderr, every landmark that was treated as missing because it lay outside its image."""
    if notes:
        print(f"note: {len(notes)} landmarks outside their images were treated as missing:", file=sys.stderr)
        for line in notes:
            print(f"  {line}", file=sys.stderr)


def train_config(args: argparse.Namespace) -> TrainConfig:
    from ..engine.config import preset

    changes: dict[str, Any] = {}
    if args.steps:
        changes["steps"] = args.steps
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.model == "unet":
        changes["spatial"] = False
    if args.input_size:  # the user's input size wins over the rule that fits it to the data
        changes["input_size"] = args.input_size
        changes["auto_input_growth"] = 0.0
    if args.filters:
        changes["filters"] = changes["sc_filters"] = args.filters
    if getattr(args, "refine", None):
        from ..engine.config import RefineConfig

        changes["refine"] = RefineConfig() if args.refine == "on" else None
    if getattr(args, "hint_rate", None) is not None:
        changes["hint_rate"] = args.hint_rate
    return preset(args.preset, **changes)


def training_bar(bar: Progress) -> Callable[[TrainProgress], None]:
    def report(p: TrainProgress) -> None:
        if p.stage == "refine":  # the local stage counts its own steps: say so rather than rewind the bar
            bar(p.step, p.total_steps, stage="local refinement", loss=f"{p.loss:.3g}")
            return
        post = {"loss": f"{p.loss:.3g}", "img/s": f"{p.images_per_second:.1f}"}
        if p.best_val_error is not None:
            post["best val"] = f"{p.best_val_error:.2f} {p.unit}"
        bar(p.step, p.total_steps, **post)

    return report


def need(value: object, message: str) -> None:
    if not value:
        raise ScnError(message)
