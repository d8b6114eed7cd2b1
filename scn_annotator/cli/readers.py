"""Commands for several readers: their agreement, and the consensus decided from their readings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ScnError
from ..io.atomic import atomic_write_text
from ._common import add_project_options, open_project

__all__ = ["register"]


def cmd_agreement(args: argparse.Namespace) -> int:
    from ..app.agreement_report import agreement_report, bland_altman_plots
    from ..io.measurement_file import read_measurements

    project = open_project(args.project, args)
    measurements = None
    if args.measurements is not None:
        measurements = read_measurements(args.measurements, project.landmark_names)
    report = agreement_report(project, measurements)
    if len(report.readers) < 2:
        print(
            f"{len(report.readers)} reader(s) in this project: import each reader's landmarks with "
            "`scn-annotator import PROJECT --labels CSV --reader NAME` first"
        )
        return 0
    print(report.table())
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2))
        print(f"wrote {args.json}")
    if args.plots:
        for path in bland_altman_plots(report, args.plots):
            print(f"wrote {path}")
    return 0


def cmd_consensus(args: argparse.Namespace) -> int:
    from ..db.transfer import decide_consensus

    project = open_project(args.project, args)
    result = decide_consensus(project, overwrite=args.overwrite)
    if result is None:
        print("no image is read by two readers yet: nothing to decide")
        return 0
    print(
        f"consensus (mean of the readers' points): {result.set} landmarks set, {result.unchanged} unchanged, "
        f"in {result.images} images"
    )
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    import os

    from ..db.roles import grant

    project = open_project(args.project, args)
    password = os.environ.get(args.password_env) if args.password_env else None
    if args.password_env and password is None:
        raise ScnError(f"--password-env {args.password_env}: no such environment variable")
    grant(project, args.role, reviewer=args.reviewer, password=password)
    what = "annotate and review" if args.reviewer else "annotate"
    print(f"role {args.role} may {what} this project; it connects with its own name and password in the URL")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    project = open_project(args.project, args)
    readers = [r.strip() for r in args.readers.split(",")]
    images = [i.strip() for i in args.images.split(",")] if args.images else None
    chosen = project.assignments.assign(readers, images=images, share=args.share, seed=args.seed)
    print(f"{len(chosen)} images to be read by {', '.join(readers)} (each blind to the others until finished)")
    return 0


def cmd_assigned(args: argparse.Namespace) -> int:
    project = open_project(args.project, args)
    who = project.assignments.who(args.reader)
    if args.finish:
        project.assignments.finish(args.finish, who)
        print(f"{who} finished {args.finish}: the other readers' points are visible to {who} now")
        return 0
    images = project.assignments.queue(who, unfinished=not args.all)
    print(f"{len(images)} images for {who}" + (":" if images else ""))
    for image in images:
        print(f"  {image}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from ..app.review_queue import review_queue

    project = open_project(args.project, args)
    if args.image:
        if not args.status:
            raise ScnError("review IMAGE needs --status reviewed|needs_changes")
        verdict = project.reviews.set(args.image, args.status, args.note or "")
        print(
            f"{verdict.image}: {verdict.status} by {verdict.reviewer}" + (f" ({verdict.note})" if verdict.note else "")
        )
        return 0
    items = review_queue(project)
    print(f"{len(items)} images to review, most likely to need it first:")
    for item in items[: args.limit]:
        print(f"  {item.image:<24} {item.status or 'not reviewed':<14} {item.reason}")
    return 0


def cmd_measurements(args: argparse.Namespace) -> int:
    project = open_project(args.project, args)
    defs = project.set_measurements(args.file) if args.file else project.measurements()
    print(f"{len(defs)} measurements" + (" (kept with the project)" if args.file else "") + (":" if defs else ""))
    names = project.landmark_names
    for m in defs:
        shown = ", ".join(names[k] for k in m.landmarks[:4]) + (", ..." if len(m.landmarks) > 4 else "")
        print(f"  {m.name} = {m.kind}({shown})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agreement",
        help="how far the readers' points (and the model's) lie apart, per landmark; measurements' ICC",
        description="Per landmark and overall: the distance between every two readers on the images both "
        "read (mean, median, 95th percentile; mm where every such image has a spacing), the current model "
        "against each reader and the consensus, and each measurement's intraclass correlation (ICC(2,1)) "
        "and Bland-Altman limits. Readers come from `import --reader NAME`.",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write a Bland-Altman PNG per measurement and pair")
    p.add_argument(
        "--measurements",
        type=Path,
        metavar="FILE",
        help="NAME = distance(A, B) | angle(A, B, C) | line_angle(A, B, C, D), one a line "
        "(default: a spine layout's Cobb angles)",
    )
    add_project_options(p)
    p.set_defaults(func=cmd_agreement)

    p = sub.add_parser(
        "consensus",
        help="decide the consensus of every image read twice or more: the mean of the readers' points",
        description="Writes the mean of the readers' points into the project's annotations (what the model "
        "trains on and export writes), through the same checks as an import: a human correction there is "
        "never replaced without --overwrite.",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("--overwrite", action="store_true", help="let the consensus replace human corrections")
    add_project_options(p)
    p.set_defaults(func=cmd_consensus)

    p = sub.add_parser(
        "grant",
        help="PostgreSQL: let a database role annotate (or review) the project",
        description="One role per annotator: the role that connects is the reader, and the database refuses a "
        "reading written in another reader's name unless the role reviews (scn_reviewer). Creates the role, "
        "and the group roles scn_annotator and scn_reviewer, where they do not exist. Run it as the project's "
        "owner or an administrator.",
    )
    p.add_argument("project", help="the project's database URL")
    p.add_argument("role", help="the annotator's role (their name as a reader)")
    p.add_argument("--reviewer", action="store_true", help="may also adjudicate and import in a reader's name")
    p.add_argument("--password-env", metavar="VAR", help="set the role's password from this environment variable")
    add_project_options(p)
    p.set_defaults(func=cmd_grant)

    _register_double_reading(sub)


def _register_double_reading(sub: argparse._SubParsersAction) -> None:
    """``assign``, ``assigned``, ``review``: double reading and its review."""
    p = sub.add_parser(
        "assign",
        help="ask named readers to read a share (or a list) of the images: double reading",
        description="Every reader gets the same images; each reads blind to the others' points until they "
        "finish the image (`assigned --finish IMAGE`). Assignments already there stay.",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("--readers", required=True, metavar="A,B", help="the readers (on PostgreSQL: their roles)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--share", type=float, help="a seeded random share of the project's images, e.g. 0.2")
    group.add_argument("--images", metavar="NAME,NAME", help="these images")
    p.add_argument("--seed", type=int, default=0, help="which share (default 0)")
    add_project_options(p)
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("assigned", help="a reader's images to read (or --finish one)")
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("--reader", help="whose (default: you; on PostgreSQL the role that connects)")
    p.add_argument("--all", action="store_true", help="finished ones too")
    p.add_argument("--finish", metavar="IMAGE", help="you have finished reading IMAGE")
    add_project_options(p)
    p.set_defaults(func=cmd_assigned)

    p = sub.add_parser(
        "review",
        help="the review queue (readers' disagreement, likely label errors), or a verdict on one image",
        description="Without IMAGE: every image with readings or human points, those most likely to need a "
        "reviewer first (read twice: by the readers' disagreement; read once: by how little of the model's "
        "final heatmap lies under the human point). With IMAGE --status: record a verdict.",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("image", nargs="?", help="the image to give a verdict")
    p.add_argument("--status", choices=["reviewed", "needs_changes"])
    p.add_argument("--note", help="what needs changing")
    p.add_argument("--limit", type=int, default=30, help="show this many (default 30)")
    add_project_options(p)
    p.set_defaults(func=cmd_review)

    p = sub.add_parser(
        "measurements",
        help="the measurements taken from the landmarks (shown live in the app, exported, in agreement)",
        description="Without FILE: the project's measurements. With FILE (NAME = distance(A, B) | angle(A, B, C) | "
        "line_angle(A, B, C, D), one a line): check it and keep it with the project, so that the app, export "
        "and agreement use it. A spine layout has its three Cobb angles without a file.",
    )
    p.add_argument("project", help="project folder or database URL")
    p.add_argument("file", nargs="?", type=Path, help="the definitions to keep with the project")
    add_project_options(p)
    p.set_defaults(func=cmd_measurements)
