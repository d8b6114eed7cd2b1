"""The measurements and readers panel, and reading mode, in the napari app."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from scn_annotator.db.store import Project

pytestmark = pytest.mark.gui


def test_measurements_follow_a_drag_and_readers_are_drawn_and_adjudicated(widget, trained, tmp_path):
    project = Project.open(trained)
    names = project.landmark_names
    definitions = tmp_path / "measurements.txt"
    definitions.write_text(f"thumb = distance({names[0]}, {names[2]})\n")
    project.set_measurements(definitions)
    image = widget.view.record.name
    for reader, shift in (("ann", 0.0), ("ben", 2.0)):
        for j in range(len(names)):
            project.readings.set(image, j, 20.0 + j + shift, 30.0, reader=reader)
    widget.open_project(str(trained))
    assert widget.view.record.name == image
    assert widget.measure_table.value["data"][0][0] == "thumb"
    before = widget.measure_table.value["data"][0][1]
    points = widget.layers["points"]
    index = list(points.features["landmark"]).index(2)
    points.data[index] = (5.0, 5.0)  # the end of a drag, as napari emits it
    points.events.data(value=points.data, action="changed", data_indices=(index,), vertex_indices=((),))
    assert widget.measure_table.value["data"][0][1] != before  # the table follows the point
    assert len(widget.layers["measurements"].data) == 1  # the distance's line on the image
    readers = [layer.name for layer in widget.viewer.layers if layer.name.startswith("reader: ")]
    assert readers == ["reader: ann", "reader: ben"]
    widget.landmark.value = 4
    assert "1.20 mm apart" in widget.readers_label.value  # 2 px at 0.6 mm/px
    widget.reader_choice.value = "ben"
    widget._adjudicate("take")
    decided = Project.open(trained).annotations.of(image)[4]
    assert (decided.x, decided.y) == (26.0, 30.0) and decided.source == "human"
    widget._show_agreement()  # the project's agreement table, in the app
    shown = widget.agreement_text.toPlainText()
    assert not widget.agreement_text.isHidden() and "2 readers (ann, ben), 1 images read twice or more" in shown
    assert "thumb (mm): ICC" in shown


def test_reading_mode_edits_my_own_reading_on_my_assigned_images(widget, trained):
    from scn_annotator.app.reading_session import ReadingSession

    project = Project.open(trained)
    me = project.assignments.who()
    images = [r.name for r in widget.session.queue.rows[:2]]
    project.assignments.assign([me, "other"], images=images)
    widget.show_model.value = False
    widget.read_mine.value = True  # reopens the project in reading mode
    assert isinstance(widget.session, ReadingSession) and not widget.session.show_model
    assert sorted(r.name for r in widget.session.queue.rows) == sorted(images)
    assert len(widget.layers["points"].data) == 0  # no proposals: an unprompted reading
    widget.landmark.value = 3
    name = widget.view.record.name
    consensus = project.annotations.of(name)
    widget.layers["points"].add([[40.0, 30.0]])  # a click in add mode: landmark 3 placed at (x 30, y 40)
    assert tuple(Project.open(trained).readings.tables()[me].points[name][3]) == (30.0, 40.0)
    assert Project.open(trained).annotations.of(name) == consensus  # the consensus is not touched
    widget.read_mine.value = False
    assert not isinstance(widget.session, ReadingSession)
