"""``scn-annotator gui``: napari with the annotator docked and a project open."""

from __future__ import annotations

import napari

from ._widget import AnnotatorWidget

__all__ = ["launch"]


def launch(project: str | None = None, block: bool = True) -> napari.Viewer:
    viewer = napari.Viewer(title="scn-annotator")
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Landmark annotator", area="right")
    if project is not None:
        widget.open_project(str(project))
    if block:
        napari.run()
    return viewer
