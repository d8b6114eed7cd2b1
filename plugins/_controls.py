"""The dock widget's controls and their layout, apart from what they do (``_widget.py``).

A mixin, so that the controls stay attributes of the widget (``widget.table``,
``widget.landmark``: what its methods and the tests use) while the long list of
their construction lives here.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton, Table
from qtpy.QtWidgets import QAbstractButton, QComboBox, QGroupBox, QScrollArea, QTextBrowser, QVBoxLayout, QWidget

from ._keys import help_html

__all__ = ["STATUSES", "Controls"]

STATUSES = ["all", "new", "in_progress", "done", "skipped"]


def _group(title: str, *widgets: QWidget) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(6, 6, 6, 6)
    for w in widgets:
        layout.addWidget(w)
    return box


class Controls:
    """Builds the widget's controls as its attributes, grouped and scrollable, with the training panel."""

    def _build_controls(self, training: QWidget) -> None:
        self.project_path = FileEdit(label="project", mode="d")
        self.open_button = PushButton(text="Open project")
        self.project_label = Label(value="no project open")
        self.status_filter = ComboBox(label="show", choices=STATUSES, value="all")
        self.table = Table(value={"image": [], "status": [], "score": [], "doubtful": []})
        self.table.read_only = True
        self.table.native.setMinimumHeight(200)
        self.table.native.verticalHeader().setVisible(False)
        self.next_button = PushButton(text="Next image (N)")
        self.done_button = PushButton(text="Done, next (D)")
        self.image_label = Label(value="")
        self.landmark = ComboBox(label="landmark", choices=[])
        self.landmark_label = Label(value="")
        self.accept_button = PushButton(text="Accept all proposals (Y)")
        self.occluded_button = PushButton(text="Occluded (O)")
        self.absent_button = PushButton(text="Absent (X)")
        self.clear_button = PushButton(text="Clear")
        self.undo_button = PushButton(text="Undo (Ctrl+Z)")
        self.redo_button = PushButton(text="Redo")
        self.follow = CheckBox(text="re-place the other proposals after each correction", value=True)
        self.heatmap_boxes = {
            k: CheckBox(text=t, value=v)
            for k, t, v in (("final", "LA x SC", True), ("local", "LA", False), ("spatial", "SC", False))
        }
        self.selected_only = CheckBox(text="selected landmark only", value=False)
        self.names = CheckBox(text="names (T)", value=False)
        self.export_path = FileEdit(label="export to", mode="w", filter="*.csv")
        self.export_all = CheckBox(text="all images, not only done", value=False)
        self.export_button = PushButton(text="Export CSV")
        self.help = QTextBrowser()
        self.help.setHtml(help_html())
        self.help.setVisible(False)
        self.help.setMinimumHeight(280)

        self._lay_out(training)

    def _lay_out(self, training: QWidget) -> None:
        """The controls in titled groups, in a scroll area; the help on top, where F1 shows it."""
        opening = Container(widgets=[self.project_path, self.open_button, self.project_label])
        queue = Container(
            widgets=[
                self.status_filter,
                self.table,
                Container(widgets=[self.next_button, self.done_button], layout="horizontal", labels=False),
            ]
        )
        edit = Container(
            widgets=[
                self.image_label,
                self.landmark,
                self.landmark_label,
                self.accept_button,
                Container(
                    widgets=[self.occluded_button, self.absent_button, self.clear_button],
                    layout="horizontal",
                    labels=False,
                ),
                Container(widgets=[self.undo_button, self.redo_button], layout="horizontal", labels=False),
                self.follow,
            ]
        )
        boxes = Container(widgets=list(self.heatmap_boxes.values()), layout="horizontal", labels=False)
        view = Container(widgets=[boxes, self.selected_only, self.names])
        export = Container(widgets=[self.export_path, self.export_all, self.export_button])

        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(self.help)  # on top, where F1 shows it in view
        for title, widget in (
            ("Project", opening.native),
            ("Queue (most doubtful first)", queue.native),
            ("Landmarks", edit.native),
            ("Heatmaps", view.native),
            ("Measurements and readers", self._build_readers_panel()),
            ("Training", training),
            ("Export", export.native),
        ):
            layout.addWidget(_group(title, widget))
        layout.addStretch()
        scroll = self.scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)  # type: ignore[arg-type]
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        # a click on a button or a choice in a drop-down hands the keys back to the canvas: napari's keys
        # (2, 3, 4) and ours work right after, without a click on the image first
        for button in inner.findChildren(QAbstractButton):
            button.clicked.connect(self._focus_canvas)  # type: ignore[attr-defined]
        for box in inner.findChildren(QComboBox):
            box.activated.connect(self._focus_canvas)  # type: ignore[attr-defined]
        self.setMinimumWidth(540)  # type: ignore[attr-defined]
