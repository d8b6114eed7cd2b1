"""The ``scn-annotator`` command.

Every subcommand is a thin layer over a core function. User errors (a bad file, a
wrong option) print one line, ``scn-annotator: error: ...``, and exit with code 2;
anything unexpected prints one line naming a log with its traceback (``--debug``
shows it) and exits with code 1;
long steps show a progress bar on stderr; results go to stdout. Heavy modules
(torch, SQLAlchemy) are imported by the subcommand that needs them, so ``--help``
is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import ScnError
from . import files, projects, readers, rounds

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scn-annotator",
        description="Anatomical landmark annotation on radiographs with a SpatialConfiguration-Net.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens in detail")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (files, projects, rounds, readers):
        module.register(sub)
    for command in sub.choices.values():
        _same_spellings(command)
    return parser


def _same_spellings(p: argparse.ArgumentParser) -> None:
    """One spelling for the same thing in every command, whichever a command was written with.

    ``-v`` and ``--debug`` also after the command; a project as ``PROJECT`` or ``--project``;
    the file a command writes as ``--out`` (beside ``--json`` or a positional ``OUT``).
    """
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    by_dest = {a.dest: a for a in p._actions}
    project = by_dest.get("project")
    if project is not None and not project.option_strings:  # positional: --project too
        if project.nargs is None:
            project.nargs, project.required = "?", False
            p.set_defaults(_needs=[*(p.get_default("_needs") or []), "project"])
        p.add_argument("--project", dest="_project", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    elif project is not None:  # an option: PROJECT too
        p.add_argument(
            "_project", nargs="?", metavar="PROJECT", default=argparse.SUPPRESS, help="the same as --project"
        )
    out = by_dest.get("out")
    if out is not None and not out.option_strings:
        out.nargs, out.required = "?", False
        p.set_defaults(_needs=[*(p.get_default("_needs") or []), "out"])
        p.add_argument("--out", dest="_out", type=out.type, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    elif out is None and "json" in by_dest:
        p.add_argument(
            "--out", dest="json", type=by_dest["json"].type, default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )


def _merge_spellings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("project", "out"):
        given = getattr(args, f"_{name}", None)
        if given is not None:
            if getattr(args, name, None) not in (None, given):
                parser.error(f"{name} given twice: {getattr(args, name)} and {given}")
            setattr(args, name, given)
    for name in getattr(args, "_needs", []):
        if getattr(args, name, None) is None:
            parser.error(f"{args.command} needs {name.upper()} (or --{name})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _merge_spellings(parser, args)
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
    except Exception as exc:  # a bug or an environment problem: one line, the traceback in a log
        if args.debug:
            raise
        log = _write_crash_log()
        print(
            f"scn-annotator: unexpected error: {type(exc).__name__}: {exc} (traceback in {log}; "
            "run again with --debug to see it here)",
            file=sys.stderr,
        )
        return 1


def _write_crash_log() -> str:
    """The current exception's traceback in a file under the temporary folder; returns its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="scn-annotator-error-", suffix=".log")
    with open(fd, "w") as fh:
        fh.write(traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())
