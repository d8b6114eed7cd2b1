"""The widget's keyboard shortcuts and the help that lists them: one table, so they cannot disagree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["SHORTCUTS", "bind", "help_html", "unbind"]

#: key -> (method name, description); bound on the viewer while the widget is open.
SHORTCUTS = {
    "n": ("next_image", "next image in the queue"),
    "Shift-N": ("previous_image", "previous image in the queue"),
    "d": ("mark_done", "mark the image done and go to the next"),
    "e": ("next_landmark", "next landmark"),
    "q": ("previous_landmark", "previous landmark"),
    "y": ("accept_all", "yes to every proposal: accept the model's position of each landmark not yet annotated"),
    "o": ("mark_occluded", "mark the current landmark occluded (position estimated)"),
    "x": ("mark_absent", "mark the current landmark absent from this image"),
    "h": ("toggle_heatmaps", "show or hide the heatmaps"),
    "t": ("toggle_names", "show or hide landmark names"),
    "Control-z": ("undo", "undo the last change to this image"),
    "Control-Shift-z": ("redo", "redo"),
    "F1": ("toggle_help", "show or hide this help"),
}


def help_html() -> str:
    """The F1 help: every shortcut, and what the marks on the image mean."""
    rows = "".join(f"<tr><td><b>{k.replace('-', '+')}</b></td><td>{d}</td></tr>" for k, (_, d) in SHORTCUTS.items())
    return (
        "<p><b>Keyboard shortcuts</b></p><table>" + rows + "</table>"
        "<p>Drag a landmark to correct it. napari's own keys work as everywhere in napari: <b>2</b> add "
        "mode (a click places the selected landmark), <b>3</b> select mode (drag), <b>4</b> pan and zoom. "
        "Rings are the model's proposals, discs are annotations, squares occluded landmarks, each in its "
        "landmark's colour; a white halo marks a proposal the model is doubtful about. Every change is "
        "saved at once. Ctrl+Z undoes your last change to the image; right after D it takes the done back "
        "(with the proposals D accepted) and reopens the image.</p>"
    )


def bind(target: Any, widget: Any) -> None:
    """Bind every shortcut on ``target`` (the viewer, or a layer, whose own keys ours then override)."""
    for key, (method, _) in SHORTCUTS.items():
        target.bind_key(key, _handler(widget, method), overwrite=True)


def unbind(target: Any) -> None:
    """Our keys off ``target`` again; napari's own come back."""
    for key in SHORTCUTS:
        target.bind_key(key, None)


def _handler(widget: Any, method: str) -> Callable[[Any], None]:
    def handler(_viewer_or_layer: Any) -> None:
        getattr(widget, method)()

    handler.__name__ = method  # what napari's keymap shows, and what a test looks for
    return handler
