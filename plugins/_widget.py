"""The landmark annotator dock widget: queue, landmarks, heatmaps, corrections, training.

A thin layer: layer events become :class:`~scn_annotator.app.annotation_session.AnnotationSession`
calls, and the layers are redrawn from what the session (that is, the store) says
afterwards. Nothing is kept only on screen: every drag, mark and acceptance is in
the database when the call returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from operator import methodcaller
from pathlib import Path
from typing import TypeVar

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import (
    QWidget,
)

from scn_annotator.app.annotation_session import AnnotationSession, ImageView, Shown
from scn_annotator.app.conditioning import ConditioningClient
from scn_annotator.db.store import Project
from scn_annotator.errors import ScnError

from . import _keys as keys
from ._canvas import Canvas
from ._controls import Controls
from ._layers import update_layers
from ._readers import ReadersPanel
from ._training import TrainingPanel

__all__ = ["AnnotatorWidget"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Arrivals(QObject):
    """Carries replies of the conditioning helper (read on a thread) to the GUI thread."""

    proposals = Signal(object)


class AnnotatorWidget(ReadersPanel, Controls, Canvas, QWidget):
    """The dock widget; ``napari_viewer`` is passed by napari."""

    def __init__(self, napari_viewer, project: str | Path | None = None) -> None:  # noqa: ANN001
        super().__init__()
        self.viewer = napari_viewer
        self.session: AnnotationSession | None = None
        self.location: str | None = None
        self.layers: dict = {}
        self.view: ImageView | None = None
        self.show_names = False

        self.training = TrainingPanel(self._new_model, self._strategy)
        self._build_controls(self.training.native)
        self._arrivals = _Arrivals()
        self._arrivals.proposals.connect(self._proposals_arrived)

        self.open_button.changed.connect(lambda: self.open_project(str(self.project_path.value)))
        self.status_filter.changed.connect(lambda _: self._fill_table())
        self.table.native.cellDoubleClicked.connect(self._table_jump)
        self.next_button.changed.connect(self.next_image)
        self.done_button.changed.connect(self.mark_done)
        self.landmark.changed.connect(self._landmark_changed)
        self.accept_button.changed.connect(self.accept_all)
        self.occluded_button.changed.connect(self.mark_occluded)
        self.absent_button.changed.connect(self.mark_absent)
        self.clear_button.changed.connect(self.clear_landmark)
        self.undo_button.changed.connect(self.undo)
        self.redo_button.changed.connect(self.redo)
        self.follow.changed.connect(self._follow_changed)
        for box in (*self.heatmap_boxes.values(), self.selected_only):
            box.changed.connect(lambda _: self._redraw())
        self.names.changed.connect(self._names_changed)
        self.export_button.changed.connect(self.export)
        keys.bind(self.viewer, self)
        if (canvas := self._canvas()) is not None:  # napari has no public resize event of the canvas
            canvas.installEventFilter(self)
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        if project is not None:
            self.open_project(str(project))
        else:
            for layer in list(self.viewer.layers):
                self._layer_inserted(type("E", (), {"value": layer})())

    # -- opening --------------------------------------------------------------------

    def _layer_inserted(self, event) -> None:  # noqa: ANN001
        """A layer from our reader or sample carries its project: open it."""
        location = getattr(event.value, "metadata", {}).get("scn_project")
        if location and location != self.location:
            layer = event.value
            self.open_project(location)

            def drop() -> None:  # after napari has finished adding it: our own layers replace it
                if layer in self.viewer.layers and layer not in self.layers.values():
                    self.viewer.layers.remove(layer)

            QTimer.singleShot(0, drop)

    def open_project(self, location: str) -> None:
        try:
            project = Project.open(location)
        except ScnError as exc:
            show_error(str(exc))
            return
        if self.session is not None:
            self.session.close()
        helper = ConditioningClient(location, data_dir=project.data_dir, image_root=project.image_root)
        self.session = self._new_session(project, helper)  # the consensus, or my own reading
        self.session.set_follow(self.follow.value)
        self.location = location
        if "://" not in location:  # a database URL is not a folder the file picker could show
            with self.project_path.changed.blocked():
                self.project_path.value = location
        self.project_label.value = f"{project.settings().get('name')}: {sum(project.counts().values())} images"
        with self.landmark.changed.blocked():
            self.landmark.choices = [(f"{lm.index}: {lm.name}", lm.index) for lm in project.landmarks()]
            self.landmark.value = 0
        self.training.attach(self.session, location)
        self._fill_table()
        first = self.session.resume_image()
        if first is not None:
            self.open_image(first)

    def open_image(self, image_id: int) -> None:
        try:
            self.view = self.session.open(image_id)
        except ScnError as exc:
            show_error(str(exc))
            return
        self._redraw(new_image=True)
        self._fit()
        self._ready_to_correct()
        self._select_row(image_id)
        self._repropose()  # an image opened with landmarks confirmed earlier: proposals that follow them

    def _ready_to_correct(self) -> None:
        """The landmarks layer selected and in select mode: a drag on a point moves it, not the camera."""
        points = self.layers.get("points")
        if points is None or points not in self.viewer.layers:
            return
        self.viewer.layers.selection.active = points
        if points.mode not in ("select", "add"):
            points.mode = "select"

    # -- drawing --------------------------------------------------------------------

    def _redraw(self, new_image: bool = False) -> None:
        if self.view is None:
            return
        shown = {k: box.value for k, box in self.heatmap_boxes.items()}
        landmark = self.landmark.value if self.selected_only.value else None
        first = "points" not in self.layers
        self.layers = update_layers(
            self.viewer,
            self.view,
            self.layers,
            heatmaps=shown,
            landmark=landmark,
            names=self.show_names,
            new_image=new_image,
        )
        if first:
            self.layers["points"].events.data.connect(self._points_changed)
            self.layers["points"].events.data.connect(self._measure_live)  # measurements follow a drag
            keys.bind(self.layers["points"], self)  # the landmarks layer has keys of its own; ours win
        v = self.view
        spacing = f"{v.spacing[0]:.3f} mm/px ({v.record.spacing_source})" if v.spacing_known else "spacing unknown (px)"
        score = f", {v.strategy} {v.score:.3f}" if v.score is not None else ""
        self.image_label.value = f"{v.record.name}: {v.record.status.replace('_', ' ')}{score}; {spacing}"
        self._show_row_status(v.record.id, v.record.status)
        self._describe_landmark()
        self._draw_readers(refresh=new_image)

    def _describe_landmark(self) -> None:
        if self.view is None or self.landmark.value is None:
            return
        lm = self.view.landmarks[self.landmark.value]
        parts = [lm.kind if lm.kind != "annotation" else f"{lm.state} ({lm.source}, {lm.author})"]
        if lm.confidence is not None:
            parts.append(f"peak {lm.confidence:.2f}")
        if lm.doubt is not None:
            parts.append(f"doubt {lm.doubt:.2f}" + (" - doubtful" if lm.doubtful else ""))
        self.landmark_label.value = ", ".join(parts)

    def _names_changed(self, value: bool) -> None:
        self.show_names = value
        self._redraw()

    def _fill_table(self) -> None:
        if self.session is None:
            return
        wanted = self.status_filter.value
        rows = [r for r in self.session.queue.rows if wanted == "all" or r.status == wanted]
        self._table_ids = [r.image_id for r in rows]
        self.table.value = {
            "image": [r.name for r in rows],
            "status": [r.status.replace("_", " ") for r in rows],
            "score": ["" if r.score is None else f"{r.score:.3f}" for r in rows],
            "doubtful": [
                f"{len(r.doubtful)}: " + ", ".join(n for n, _ in r.doubtful[:3]) if r.doubtful else "" for r in rows
            ],
        }
        self.table.native.resizeColumnsToContents()
        self.table.native.horizontalHeader().setStretchLastSection(True)  # the doubtful landmarks get the rest
        if self.view is not None:
            self._select_row(self.view.record.id)

    def _show_row_status(self, image_id: int, status: str) -> None:
        """The queue row says what the header says (a first correction, an undo), without refilling the table."""
        ids = getattr(self, "_table_ids", [])
        if image_id in ids:
            item = self.table.native.item(ids.index(image_id), 1)
            text = status.replace("_", " ")
            if item is not None and item.text() != text:
                item.setText(text)

    def _select_row(self, image_id: int) -> None:
        ids = getattr(self, "_table_ids", [])
        if image_id in ids:
            self.table.native.selectRow(ids.index(image_id))

    def _table_jump(self, row: int, _column: int) -> None:
        self.open_image(self._table_ids[row])
        self._focus_canvas()

    # -- editing --------------------------------------------------------------------

    def _points_changed(self, event) -> None:  # noqa: ANN001
        """A point was dragged, added or deleted: save it, then show what the store has."""
        # napari's ActionType is a string enum; its strings are the public face of it
        if self.view is None or event.action not in ("changed", "added", "removed"):
            return
        points = self.layers["points"]
        try:
            if event.action == "changed":
                for i in event.data_indices:
                    row, col = points.data[i]
                    moved = int(points.features["landmark"][i])
                    self.view = self.session.move(moved, col, row)
                    with self.landmark.changed.blocked():  # the selector follows the point just dragged
                        self.landmark.value = moved
            elif event.action == "added":
                for i in event.data_indices:
                    row, col = points.data[i]
                    self.view = self.session.move(int(self.landmark.value), col, row)
            else:  # removed: the landmarks no longer on the layer lose their annotation
                remaining = set(points.features["landmark"].tolist()) if len(points.data) else set()
                for lm in self.view.landmarks:
                    if lm.x is not None and lm.info.index not in remaining and lm.kind == Shown.ANNOTATION:
                        self.view = self.session.clear(lm.info.index)
        except Exception as exc:  # any store failure: say so, show what is saved
            self._recover(exc)
        self._redraw()
        self._repropose()

    # -- proposals that follow the annotator ------------------------------------------

    def _repropose(self) -> None:
        """Ask the helper for proposals given what is confirmed now; they are drawn when they arrive."""
        if self.session is None or self.view is None:
            return
        try:
            future = self.session.repropose()
        except Exception as exc:
            self._recover(exc)
            return
        if future is None:  # nothing to follow: the model's own proposals (the session re-read them)
            if self.session.current is not self.view:
                self.view = self.session.current
                self._redraw()
            return
        future.add_done_callback(self._arrivals.proposals.emit)  # emitted on the helper's reader thread

    def _proposals_arrived(self, future) -> None:  # noqa: ANN001
        if self.session is None:
            return
        try:
            token, proposals = future.result()
        except Exception as exc:  # the helper failed: the model's own proposals stay; say it once
            message = str(exc)
            if self.session.conditioning is not None and self.session.conditioning.error != message:
                self.session.conditioning.error = message
                show_info(f"proposals do not follow corrections now: {message}")
            return
        view = self.session.apply(token, proposals)
        if view is not None:
            self.view = view
            self._redraw()

    def _follow_changed(self, on: bool) -> None:
        if self.session is None:
            return
        self.session.set_follow(on)
        self.view = self.session.current
        self._redraw()
        self._repropose()

    def _recover(self, exc: Exception) -> None:
        """A session call failed: say so, then show exactly what the store holds.

        A user error (``ScnError``) is shown as it is; anything else (a lost database
        connection, a bug) is logged with its traceback and reported as a change that
        was not saved. Either way the layers are redrawn from the store, so the screen
        never shows a point the database does not have.
        """
        if isinstance(exc, ScnError):
            show_error(str(exc))
        else:
            log.exception("a change could not be saved")
            show_error(f"this change was not saved ({type(exc).__name__}: {exc}); the view shows what is saved")
        try:
            self.view = self.session.reload()
        except Exception:  # the store is unreachable: keep the last view (reported)
            log.exception("could not re-read the image from the store")

    def _landmark_changed(self, index: int) -> None:
        if "points" in self.layers:
            self.layers["points"].feature_defaults["landmark"] = index
        if self.selected_only.value:
            self._redraw()
        self._describe_landmark()
        self.readers_label.value = self._spread_text(self._readers_view())

    def _act(
        self, action: Callable[[AnnotationSession], T], *, redraw: bool = True, repropose: bool = True
    ) -> T | None:
        """Run a session action on the open image, show an error instead of raising, redraw.

        Returns the action's result, or None when it failed (and was reported). With
        ``redraw`` False the caller shows what comes next itself; ``repropose``: the
        action changed landmarks, so the other proposals follow them.
        """
        if self.session is None or self.view is None:
            return None
        try:
            result = action(self.session)
        except Exception as exc:  # see _recover
            self._recover(exc)
            self._redraw()
            return None
        self.view = self.session.current
        if redraw:
            self._redraw()
        if repropose:
            self._repropose()
        return result

    def accept_all(self) -> None:
        count = self._act(methodcaller("accept_all"))
        if count is not None:
            show_info(f"accepted {count} proposals")

    def mark_occluded(self) -> None:
        landmark = int(self.landmark.value)
        self._act(lambda s: s.mark(landmark, "occluded"))

    def mark_absent(self) -> None:
        landmark = int(self.landmark.value)
        self._act(lambda s: s.mark(landmark, "absent"))

    def clear_landmark(self) -> None:
        landmark = int(self.landmark.value)
        self._act(lambda s: s.clear(landmark))

    def undo(self) -> None:
        if self.session is not None and self.session.can_undo_done:  # Ctrl+Z right after D: back to that image
            image = self._act(methodcaller("undo_done"), redraw=False, repropose=False)
            if image is not None:
                self._fill_table()
                self.open_image(image)
                show_info(f"{self.view.record.name} is no longer done")
            return
        if self._act(methodcaller("undo")) == 0:
            show_info("nothing to undo for this image")

    def redo(self) -> None:
        if self._act(methodcaller("redo")) == 0:
            show_info("nothing to redo")

    def mark_done(self) -> None:
        if self.session is None or self.view is None:
            return
        name = self.view.record.name
        done = self._act(methodcaller("mark_done"), redraw=False, repropose=False)
        if done is None:
            return
        following, accepted = done
        show_info(f"{name} done" + (f": {accepted} proposals accepted as they were" if accepted else ""))
        self.training.auto_trigger()
        self._fill_table()
        if following is None:
            show_info("every image is done")
            self._redraw()  # the session re-read the image when it marked it done
        else:
            self.open_image(following)

    def next_image(self) -> None:
        if self.session is not None and (following := self.session.next_image(include_done=False)) is not None:
            self.open_image(following)

    def previous_image(self) -> None:
        if self.session is not None and (before := self.session.next_image(-1)) is not None:
            self.open_image(before)

    def next_landmark(self, step: int = 1) -> None:
        if self.landmark.choices:
            self.landmark.value = (int(self.landmark.value) + step) % len(self.landmark.choices)

    def previous_landmark(self) -> None:
        self.next_landmark(-1)

    def toggle_heatmaps(self) -> None:
        on = not any(box.value for box in self.heatmap_boxes.values())
        with self.heatmap_boxes["final"].changed.blocked():
            for key, box in self.heatmap_boxes.items():
                box.value = on and key == "final"
        self._redraw()

    def toggle_names(self) -> None:
        self.names.value = not self.names.value

    def toggle_help(self) -> None:
        self.help.setHidden(not self.help.isHidden())  # isVisible() is False whenever the dock is: not the state
        if not self.help.isHidden():
            self.scroll.verticalScrollBar().setValue(0)  # the help sits at the top of the dock: show it

    def export(self) -> None:
        if self.session is None:
            return
        path = Path(str(self.export_path.value))
        if path.suffix.lower() != ".csv":
            show_error("choose a .csv file to export to")
            return
        try:
            manifest = self.session.export(path, include_all=self.export_all.value)
        except ScnError as exc:
            show_error(str(exc))
            return
        show_info(f"exported {manifest['images']} images to {path}")

    # -- training callbacks ---------------------------------------------------------

    def _new_model(self) -> None:
        """A round finished or the current model changed: new proposals, scores and queue, same place."""
        if self.session is None:
            return
        self.session.refresh_queue()
        self._fill_table()
        if self.view is not None:
            self.view = self.session.reload()
            self._redraw()

    def _strategy(self, name: str) -> None:
        if self.session is not None:
            self.session.set_strategy(name)
            self.view = self.session.current
            self._fill_table()
            self._redraw()

    # -- keys -----------------------------------------------------------------------

    def _unbind(self) -> None:
        """Leave the viewer as it was: our keys unbound (napari's own come back), our handlers disconnected."""
        keys.unbind(self.viewer)
        if (canvas := self._canvas()) is not None:
            canvas.removeEventFilter(self)
        self.viewer.layers.events.inserted.disconnect(self._layer_inserted)
        points = self.layers.get("points")
        if points is not None:
            points.events.data.disconnect(self._points_changed)
            points.events.data.disconnect(self._measure_live)
            keys.unbind(points)

    def closeEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt's name
        self._unbind()
        self.training.close()
        if self.session is not None:
            self.session.close()
            self.session = None
        super().closeEvent(event)
