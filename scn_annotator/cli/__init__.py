"""The ``scn-annotator`` command.

Every subcommand is a thin layer over a core function. User errors (a bad file, a
wrong option) print one line, ``scn-annotator: error: ...``, and exit with code 2;
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
from . import files, projects, rounds

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scn-annotator",
        description="Anatomical landmark annotation on radiographs with a SpatialConfiguration-Net.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens in detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (files, projects, rounds):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
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
