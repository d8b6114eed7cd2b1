"""``init``, ``import``, ``status``, ``export``: the project store from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ScnError
from ._common import Progress, add_project_options, need, open_project, positive, report_outside, rule

if TYPE_CHECKING:
    from ..db.store import Project

#: the exchange formats of other tools (io/formats), named here so that --help needs no import of them
EXCHANGE = ("coco", "labelme", "slicer", "fcsv", "dlc")


def cmd_init(args: argparse.Namespace) -> int:
    from ..db.store import Project

    objects = None
    if args.landmark_names:
        from ..io.landmark_names import read_landmark_names

        given = read_landmark_names(args.landmark_names)
        names, descriptions, objects = given.names, given.descriptions, given.objects
    else:
        names, descriptions = [f"L{i}" for i in range(args.landmarks)], None
    project = Project.create(
        args.project, names, database=args.db, descriptions=descriptions, objects=objects, user=args.user
    )
    where = project.db.url.render_as_string(hide_password=True)
    grouped = project.objects()
    shape = f" in {len(grouped)} objects" if grouped.grouped else ""
    print(f"created project {project.data_dir} with {len(names)} landmarks{shape}; database {where}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from ..db.transfer import import_images, import_labels, import_readings

    need(args.images or args.labels, "import needs --images, --labels or both")
    project = open_project(args.project, args)
    if args.images:
        with Progress("reading headers", "img") as step:
            report = import_images(project, args.images, progress=step)
        for path, reason in report.failed:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        for path, existing in report.duplicates:
            print(f"duplicate {path}: same content as image {existing}", file=sys.stderr)
        for path in report.changed:
            print(f"changed on disk since it was imported: {path}", file=sys.stderr)
        counts = (len(report.added), len(report.unchanged), len(report.duplicates), len(report.changed))
        print(
            "images: {} added, {} already there, {} duplicates, {} changed".format(*counts)
            + f", {len(report.failed)} unreadable"
        )
    exchange = _exchange_format(args.labels, args.format) if args.labels else None
    if exchange is not None:
        _import_exchange(project, args, exchange)
    elif args.labels and args.reader:
        result = import_readings(
            project, args.labels, args.reader, spacing_rule=rule(args.spacing_from), outside=args.outside
        )
        report_outside(result.outside)
        print(f"reading of {args.reader}: {result.set} landmarks in {result.images} images (the consensus unchanged)")
    elif args.labels:
        result = import_labels(
            project, args.labels, spacing_rule=rule(args.spacing_from), overwrite=args.overwrite, outside=args.outside
        )
        report_outside(result.outside)
        if result.overwritten:
            print(
                f"overwrote {len(result.overwritten)} human corrections: {', '.join(result.overwritten[:5])}",
                file=sys.stderr,
            )
        print(f"landmarks: {result.set} set, {result.unchanged} unchanged, in {result.images} images")
        if args.mark_done:
            for name in result.names:
                project.set_status(name, "done")
            print("those images are marked done")
    return 0


def _exchange_format(path: Path, given: str | None) -> str | None:
    """The exchange format of a --labels file or folder (None: the project's own CSV)."""
    if given == "csv":
        return None
    if given:
        return given
    from ..io.formats import detect

    found = detect(path)
    return found.name if found is not None else None


def _import_exchange(project: Project, args: argparse.Namespace, format_name: str) -> None:
    from ..db.exchange import import_exchange

    report = import_exchange(
        project,
        args.labels,
        format_name,
        reader=args.reader,
        spacing_rule=rule(args.spacing_from),
        overwrite=args.overwrite,
        outside=args.outside,
    )
    report_outside(report.labels.outside)
    images = report.images
    if images.added or images.duplicates:
        counts = len(images.added), len(images.unchanged), len(images.duplicates)
        print("images: {} added, {} already there, {} duplicates".format(*counts))
    if report.labels.overwritten:
        print(f"overwrote {len(report.labels.overwritten)} human corrections", file=sys.stderr)
    readers = f"; readings of {', '.join(report.readers)}" if report.readers else ""
    labels = report.labels
    print(
        f"{report.format}: {labels.set} landmarks set, {labels.unchanged} unchanged, in {labels.images} images{readers}"
    )
    if args.mark_done:
        for name in report.labels.names:
            project.set_status(name, "done")
        print("those images are marked done")


def cmd_status(args: argparse.Namespace) -> int:
    from ..db.jobs import PENDING

    project = open_project(args.project, args)
    settings = project.settings()
    counts = project.counts()
    print(f"project {settings.get('name')} ({project.db.url.render_as_string(hide_password=True)})")
    print(f"  landmarks: {len(project.landmarks())}")
    print(
        f"  images:    {sum(counts.values())} ("
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
        + ")"
    )
    print(f"  image root: {project.image_root}")
    current = project.models.current()
    if current is None:
        print("  model:     none yet")
    else:
        shown = current.metrics.error_text
        error = f", validation error {shown}" if shown else ""
        print(f"  model:     version {current.id} of {len(project.models.all())}{error}")
    jobs = project.jobs.list(PENDING)
    print(f"  jobs:      {len(jobs)} queued or running")
    for j in jobs:
        print(f"    #{j.id} {j.kind} {j.state} {j.stage} {100 * j.progress:.0f} %")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..db.exports import export

    project = open_project(args.project, args)
    measurements = None
    if args.measurements is not None:
        from ..io.measurement_file import read_measurements

        measurements = read_measurements(args.measurements, project.landmark_names)
    if args.format in EXCHANGE:
        from ..db.exports import export_exchange

        files = export_exchange(project, args.out, args.format, include_all=args.all)
        where = args.out if len(files) == 1 else f"{len(files)} files in {args.out}"
        print(f"exported {'all' if args.all else 'done'} images as {args.format} to {where}")
        return 0
    layout = args.format if args.format in ("wide", "long") else args.layout
    manifest = export(project, args.out, layout=layout, include_all=args.all, measurements=measurements)
    states = ", ".join(f"{n} {k}" for k, n in manifest["annotations"].items())
    which = "all" if args.all else "done"
    print(f"exported {manifest['images']} {which} images ({states}) to {args.out} and its manifest")
    if "measurements" in manifest:
        print(f"measurements ({len(manifest['measurements']['definitions'])}) in {manifest['measurements']['file']}")
    return 0


def _gui_missing() -> str | None:
    """What is missing for the napari app, as the one line to say, or None when it is all there."""
    import importlib.util

    missing = [m for m in ("napari", "magicgui", "qtpy") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"the napari app is not installed (no {', '.join(missing)}): "
            'pip install "scn-annotator[gui,qt]" ("scn-annotator[gui]" where napari has a Qt already)'
        )
    try:
        import qtpy  # noqa: F401 - raises when no Qt binding is installed
    except Exception as exc:  # qtpy's QtBindingsNotFoundError is a RuntimeError, not an ImportError
        return f'napari has no Qt binding ({exc}): pip install "scn-annotator[qt]"'
    return None


def cmd_gui(args: argparse.Namespace) -> int:
    import os

    if (missing := _gui_missing()) is not None:
        raise ScnError(missing)
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ScnError(
            "no display to open napari on. On a remote machine use ssh -X, or run it on a virtual screen with "
            "xvfb-run -a scn-annotator gui ...; everything else works headless (scn-annotator --help)"
        )
    from ..plugins import launch

    # the app, and the workers it starts, open the project through the environment
    for flag, variable in (("image_root", "SCN_IMAGE_ROOT"), ("data_dir", "SCN_DATA_DIR")):
        if getattr(args, flag, None):
            os.environ[variable] = str(Path(getattr(args, flag)).resolve())
    if args.project:
        open_project(args.project, args).close()  # fail here, with one line, on a bad project
    launch(args.project)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a project (a folder; SQLite inside, or PostgreSQL with --db)")
    p.add_argument("project", help="folder of the new project")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--landmarks", type=positive(int), metavar="N", help="N landmarks called L0, L1, ...")
    group.add_argument(
        "--landmark-names", metavar="FILE", help="one landmark a line: name[, description][, object=STRUCTURE]"
    )
    p.add_argument("--db", metavar="URL", help="a PostgreSQL URL for a team (default: project.sqlite in the folder)")
    p.add_argument("--user", help="your name in the history (default: your login)")
    p.set_defaults(func=cmd_init)

    _register_import(sub)

    p = sub.add_parser("gui", help="open the napari app with the annotator docked (and a project loaded)")
    p.add_argument("project", nargs="?", help="project folder or database URL")
    add_project_options(p)
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("status", help="images per status, the current model, running jobs")
    p.add_argument("project", help="project folder or database URL")
    add_project_options(p)
    p.set_defaults(func=cmd_status)

    _register_export(sub)


def _register_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="add images and/or landmark files to a project",
        description="Images are recognised by content: a re-import skips what is there and "
        "notices changed files. A landmark file (any layout, px or mm) is imported "
        "whole or not at all; it never overwrites a human correction without "
        "--overwrite.",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("--images", type=Path, metavar="DIR", help="folder of images (recursive)")
    p.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="landmarks: a CSV of images already in the project, or another tool's file or folder (see --format)",
    )
    p.add_argument(
        "--format",
        choices=["csv", *EXCHANGE],
        help="the --labels file's format (default: detected from the file); coco, labelme (a folder of files, "
        "images found beside them or embedded), slicer (.mrk.json), fcsv, dlc (CollectedData_<scorer>.csv)",
    )
    p.add_argument("--spacing-from", metavar="A,B=MM", help="set each image's spacing from two of its landmarks")
    p.add_argument("--overwrite", action="store_true", help="let the file replace human corrections")
    p.add_argument(
        "--outside",
        choices=["error", "missing"],
        default="error",
        help="a landmark outside its image: refuse the file (default), or leave it unannotated (each one is listed)",
    )
    p.add_argument("--mark-done", action="store_true", help="mark the images of the landmark file done")
    p.add_argument(
        "--reader",
        metavar="NAME",
        help="import the landmark file as NAME's own reading (several readers per image; see `agreement`)",
    )
    add_project_options(p)
    p.set_defaults(func=cmd_import)


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the curated landmarks as CSV with a JSON manifest",
        description="Pixels and mm, each landmark's state, each image's spacing and its "
        "source; only images marked done unless --all.",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("out", type=Path, help="the CSV file to write (a .manifest.json goes beside it)")
    p.add_argument(
        "--layout",
        choices=["wide", "long"],
        default="wide",
        help="wide: a row per image; long: a row per landmark (default wide)",
    )
    p.add_argument(
        "--format",
        choices=["csv", *EXCHANGE, "wide", "long"],
        default="csv",
        help="csv (default, with its manifest), or another tool's: coco (one .json), labelme, slicer (.mrk.json) "
        "and fcsv (a folder, a file per image), dlc (CollectedData_<scorer>.csv)",
    )
    p.add_argument("--all", action="store_true", help="every image, not only those marked done")
    p.add_argument(
        "--measurements",
        type=Path,
        metavar="FILE",
        help="also write these measurements per image (NAME = distance(A, B) | angle(A, B, C) | ...); "
        "a spine layout gets its Cobb angles without a file",
    )
    add_project_options(p)
    p.set_defaults(func=cmd_export)
