"""The readers and measurements panel of the dock widget (a mixin of ``_widget.py``).

Measurements: a table of the project's measurements (a spine's Cobb angles, a
cephalogram's angles and distances) and the lines they are read from, drawn on the
image and recomputed from the landmarks layer on every change of its data, so they
follow a point while it is dragged. Readers: each reader's points in the reader's
colour (only what blind double reading lets this user see), how far apart they are
on the selected landmark, and one button per adjudication action. Thin: the values,
the visibility and the decisions are the app layer's (``measurement_view``,
``adjudication``).
"""

from __future__ import annotations

import tempfile
from html import escape
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, Table
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QTextBrowser, QWidget

from scn_annotator.app.adjudication import Adjudication, ReadersView
from scn_annotator.app.annotation_session import AnnotationSession, ImageView
from scn_annotator.app.conditioning import ConditioningClient
from scn_annotator.app.measurement_view import measure
from scn_annotator.app.reading_session import ReadingSession
from scn_annotator.db.store import Project

__all__ = ["ReadersPanel"]

LINE_COLOR = "#ffd700"
READER_LAYER = "reader: "


class ReadersPanel:
    """Mixin: ``_build_readers_panel`` makes the controls; ``_draw_readers`` and ``_measure_live`` keep them current."""

    def _build_readers_panel(self) -> QWidget:
        self.measure_table = Table(value={"measurement": [], "value": []})
        self.measure_table.read_only = True
        self.measure_table.native.verticalHeader().setVisible(False)
        self.measure_table.native.setMinimumHeight(110)
        self.readers_label = Label(value="no other readings of this image")
        self.read_mine = CheckBox(text="my own reading of my assigned images (blind to the others')", value=False)
        self.show_model = CheckBox(text="with the model's proposals", value=True)
        self.show_readers = CheckBox(text="readers' points", value=True)
        self.reader_choice = ComboBox(label="take from", choices=[])
        self.take_button = PushButton(text="Take this reader's point")
        self.mean_button = PushButton(text="Take the mean")
        self.anew_button = PushButton(text="Place anew")
        self.agreement_button = PushButton(text="Agreement of all readers (the paper's table)")
        self.agreement_text = QTextBrowser()
        self.agreement_text.setVisible(False)
        self.agreement_text.setMinimumHeight(320)
        self.show_readers.changed.connect(lambda _: self._draw_readers())
        for box in (self.read_mine, self.show_model):
            box.changed.connect(lambda _: self.location and self.open_project(self.location))
        self.take_button.changed.connect(lambda: self._adjudicate("take"))
        self.mean_button.changed.connect(lambda: self._adjudicate("mean"))
        self.anew_button.changed.connect(lambda: self._adjudicate("anew"))
        self.agreement_button.changed.connect(self._show_agreement)
        actions = Container(widgets=[self.take_button, self.mean_button, self.anew_button], layout="horizontal")
        actions.labels = False
        panel = Container(
            widgets=[
                self.read_mine,
                self.show_model,
                self.measure_table,
                self.show_readers,
                self.readers_label,
                self.reader_choice,
                actions,
                self.agreement_button,
            ]
        ).native
        panel.layout().addWidget(self.agreement_text)
        return panel

    def _new_session(self, project: Project, helper: ConditioningClient) -> AnnotationSession:
        """The session the switches ask for: on the consensus, or on this user's own reading."""
        if self.read_mine.value:
            session = ReadingSession(project, show_model=self.show_model.value, conditioning=helper)
            if not session.queue.rows:
                show_info(f"no images are assigned to {session.reader} (scn-annotator assign)")
            return session
        return AnnotationSession(project, conditioning=helper)

    # -- drawing -----------------------------------------------------------------

    def _readers_view(self) -> ReadersView | None:
        if self.session is None or self.view is None:
            return None
        return Adjudication(self.session.project).view(self.view.record.name)

    def _draw_readers(self, refresh: bool = True) -> None:
        """The measurements of what is shown; with ``refresh`` (a new image, a switch) the readers' points read
        anew and drawn, else (a correction: the readings did not change) only their spread on the landmark."""
        view: ImageView | None = self.view
        if view is None:
            return
        self._measure_live()
        if not refresh and getattr(self, "_readers_shown", None) is not None:
            self.readers_label.value = self._spread_text(self._readers_shown)
            return
        readers = self._readers_shown = self._readers_view()
        shown = readers.readers if readers is not None and self.show_readers.value else []
        scale = (view.spacing[1], view.spacing[0])
        size = 0.016 * max(view.record.height * scale[0], view.record.width * scale[1])  # a cross inside the disc
        for layer in [layer for layer in self.viewer.layers if layer.name.startswith(READER_LAYER)]:
            if layer.name[len(READER_LAYER) :] not in shown:
                self.viewer.layers.remove(layer)
        for reader in shown:
            points = readers.points[reader]
            placed = ~np.isnan(points[:, 0])
            data = points[placed][:, ::-1]  # (row, col)
            name = READER_LAYER + reader
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data, layer.scale, layer.size = data, scale, size
            else:
                self.viewer.add_points(
                    data, name=name, scale=scale, size=size, symbol="cross", face_color=readers.color(reader)
                )
        self._ready_to_correct()  # adding a layer selects it: hand the mouse back to the landmarks
        with self.reader_choice.changed.blocked():
            self.reader_choice.choices = readers.readers if readers is not None else []
        self.readers_label.value = self._spread_text(readers)

    def _spread_text(self, readers: ReadersView | None) -> str:
        if readers is None or len(readers.readers) < 1:
            return "no other readings of this image (or not yet visible: finish your own reading first)"
        landmark = int(self.landmark.value)
        spread = readers.spread[landmark]
        names = ", ".join(readers.readers)
        if np.isnan(spread):
            return f"readers: {names}"
        name = self.session.project.landmark_names[landmark]
        return (
            f"readers: {names}; on {name} {spread:.2f} {readers.unit} apart (most on the image: "
            f"{np.nanmax(readers.spread):.2f} {readers.unit})"
        )

    def _measure_live(self, event=None) -> None:  # noqa: ANN001 - napari's event, or none
        """The measurements of the landmarks as the layer shows them now (during a drag too), and their lines."""
        view: ImageView | None = self.view
        points_layer = self.layers.get("points") if self.layers else None
        if view is None or points_layer is None or self.session is None:
            return
        n = len(view.landmarks)
        points = np.full((n, 2), np.nan)
        if len(points_layer.data):
            index = np.asarray(points_layer.features["landmark"], dtype=int)
            points[index] = np.asarray(points_layer.data)[:, ::-1]
        spacing = view.spacing if view.spacing_known else None
        shown = measure(self.session.measurements, points, spacing, view.record.height)
        lines = [line[:, ::-1] for line in shown.lines]  # (row, col)
        key = ([r.text for r in shown.rows], [line.round(2).tolist() for line in lines], view.record.id)
        if key == getattr(self, "_measured", None):
            return  # nothing moved that a measurement reads: leave the table and the lines alone
        self._measured = key
        self.measure_table.value = {"measurement": [r.name for r in shown.rows], "value": key[0]}
        self.measure_table.native.resizeColumnsToContents()
        scale = (view.spacing[1], view.spacing[0])
        width = 0.003 * max(view.record.height * scale[0], view.record.width * scale[1])
        layer = self.layers.get("measurements")
        if layer is None or layer not in self.viewer.layers:
            layer = self.viewer.add_shapes(
                lines, shape_type="line", edge_color=LINE_COLOR, edge_width=width, scale=scale, name="measurements"
            )
            self.layers["measurements"] = layer
            self._ready_to_correct()
        else:
            layer.data = []
            if lines:
                layer.add_lines(lines, edge_color=LINE_COLOR, edge_width=width)
            layer.scale = scale

    # -- adjudication ------------------------------------------------------------------

    def _adjudicate(self, action: str) -> None:
        if self.session is None or self.view is None:
            return
        adjudication = Adjudication(self.session.project)
        image, landmark = self.view.record.name, int(self.landmark.value)

        def run(_session) -> None:  # noqa: ANN001
            if action == "take":
                adjudication.take(image, landmark, str(self.reader_choice.value))
            elif action == "mean":
                adjudication.take_mean(image, landmark)
            else:
                adjudication.place_anew(image, landmark)
            self.session.reload()

        self._act(run)

    def _show_agreement(self) -> None:
        """The readers' spread per landmark beside the model's, and each measurement's ICC with its Bland-Altman
        plots (where matplotlib is installed), for the whole project."""
        if self.session is None:
            return
        from scn_annotator.app.agreement_report import agreement_report, bland_altman_plots

        report = agreement_report(self.session.project)
        if len(report.readers) < 2:
            html = "<p>Agreement needs two readers: assign images (scn-annotator assign) or import readings.</p>"
        else:
            html = f"<pre>{escape(report.table())}</pre>"
            try:
                folder = Path(tempfile.mkdtemp(prefix="scn-bland-altman-"))
                html += "".join(
                    f'<p><img src="{p.as_uri()}" width="460"></p>' for p in bland_altman_plots(report, folder)
                )
            except ImportError:
                html += "<p>(Bland-Altman plots need matplotlib: pip install scn-annotator[plot])</p>"
        self.agreement_text.setHtml(html)
        self.agreement_text.setVisible(True)
