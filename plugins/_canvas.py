"""The widget's hold on napari's canvas: finding it, fitting the image to it, giving it the keyboard.

A mixin, like ``_controls.py``. The canvas is reached through ``window._qt_viewer``,
which napari warns it will remove no earlier than 0.10: it has no public way to the
canvas yet, and this is the one place that depends on it.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

__all__ = ["Canvas"]


class Canvas:
    """``viewer`` and ``view`` are the widget's."""

    viewer: Any
    view: Any

    def _canvas(self) -> QWidget | None:
        """The canvas's Qt widget, or None: napari has no public way to it (focus, resize) yet."""
        qt_viewer = getattr(self.viewer.window, "_qt_viewer", None)
        return getattr(getattr(qt_viewer, "canvas", None), "native", None)

    def _camera(self):  # noqa: ANN202
        """napari 0.9 moved the camera to ``viewer.scene``; older releases have only ``viewer.camera``."""
        scene = getattr(self.viewer, "scene", None)
        return scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera

    def _fit(self) -> None:
        """The whole image, whatever the window size; remembered, so that a resize refits it."""
        self.viewer.reset_view()
        self._fitted_zoom = self._camera().zoom

    def eventFilter(self, watched, event) -> bool:  # noqa: ANN001, N802 - Qt's name
        """The canvas was resized: refit the image, unless the annotator has zoomed since it was fitted."""
        from qtpy.QtCore import QEvent

        if event.type() == QEvent.Type.Resize and self.view is not None:
            fitted = getattr(self, "_fitted_zoom", None)
            if fitted is not None and abs(self._camera().zoom - fitted) <= 1e-6 * max(fitted, 1e-9):
                QTimer.singleShot(0, self._fit)  # after the canvas has taken its new size
        return False

    def _focus_canvas(self, *_args: object) -> None:
        """Give the keyboard to the image, once the click that took it has been handled."""

        def focus() -> None:
            if (canvas := self._canvas()) is not None:
                canvas.setFocus()

        QTimer.singleShot(0, focus)
