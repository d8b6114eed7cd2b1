"""Errors a user can act on.

Everything the CLI (and later the GUI) should show as one clear line derives from
:class:`ScnError`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["ScnError", "ImageReadError", "LabelFileError", "CheckpointError"]


class ScnError(Exception):
    """A problem with the user's input, reported without a traceback."""


class ImageReadError(ScnError, ValueError):
    """An image file that cannot be used; the message names the file."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LabelFileError(ScnError, ValueError):
    """A landmark file with problems; the message names the file and every bad row."""

    def __init__(self, path: object, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        super().__init__(f"{self.path}: {text}")


class CheckpointError(ScnError, ValueError):
    """A model file that cannot be loaded safely."""
