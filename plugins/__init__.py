"""The napari plugin (``scn_annotator.plugins``): the only place Qt is imported.

Thin widgets over the Qt-free core: :class:`~scn_annotator.app.annotation_session.AnnotationSession`
does the work, the widgets show it. Contributions are declared in ``napari.yaml``.
"""

__all__ = ["launch"]


def launch(project: str | None = None, block: bool = True):  # noqa: ANN201 - napari.Viewer
    """Open napari with the annotator docked (and ``project`` loaded)."""
    from .app import launch as _launch

    return _launch(project, block)
