"""Adjudication and live measurements: the app layer the napari panels draw."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.app.adjudication import Adjudication
from scn_annotator.app.measurement_view import measure
from scn_annotator.app.sample_project import LANDMARK_NAMES
from scn_annotator.app.sample_spine import generate_spine_sample, spine_names
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import import_images
from scn_annotator.engine.measurements import Measurement, builtin_measurements
from scn_annotator.io.landmark_files import read_landmarks


@pytest.fixture
def project(sample_dir, tmp_path):
    p = Project.create(tmp_path / "p", LANDMARK_NAMES, user="reviewer")
    import_images(p, sample_dir / "images")
    truth = read_landmarks(sample_dir / "labels.csv").points["hand004"]
    for reader, shift in (("ann", (0.0, 0.0)), ("ben", (3.0, 4.0))):
        for j, (x, y) in enumerate(truth):
            p.readings.set("hand004", j, x + shift[0], y + shift[1], reader=reader)
    yield p
    p.close()


def test_the_view_shows_each_readers_points_and_their_spread(project):
    view = Adjudication(project).view("hand004")
    assert view.readers == ["ann", "ben"] and view.color("ann") != view.color("ben")
    np.testing.assert_allclose(view.spread, 5.0 * 0.6)  # a (3, 4) px shift at 0.6 mm/px
    assert view.unit == "mm"


def test_each_action_decides_the_consensus_in_the_reviewers_name(project):
    adjudicate = Adjudication(project)
    ann, ben = (adjudicate.view("hand004").points[r] for r in ("ann", "ben"))
    adjudicate.take("hand004", 0, "ben")
    adjudicate.take_mean("hand004", 1)
    decided = project.annotations.of("hand004")
    assert (decided[0].x, decided[0].y) == tuple(ben[0])
    np.testing.assert_allclose((decided[1].x, decided[1].y), (ann[1] + ben[1]) / 2)
    assert decided[0].author == "reviewer" and decided[0].source.value == "human"
    adjudicate.place_anew("hand004", 0)
    assert 0 not in project.annotations.of("hand004")
    assert project.readings.tables()["ben"].points["hand004"][0].tolist() == ben[0].tolist()  # readings untouched


def test_measurements_follow_the_points_and_draw_their_lines(tmp_path):
    names = spine_names(4)
    labels = generate_spine_sample(tmp_path / "s", count=1, vertebrae=4)
    points = read_landmarks(labels).points["spine000"]
    cobb = builtin_measurements(names)
    view = measure(cobb, points, (0.5, 0.5), 384)
    assert [r.unit for r in view.rows] == ["deg"] * 3 and len(view.lines) == 2  # the main curve's two end axes
    tilted = points.copy()
    tilted[names.index("V1_tr")] += (0.0, -8.0)  # lift the top vertebra's right corners: its axis tilts
    tilted[names.index("V1_br")] += (0.0, -8.0)
    assert measure(cobb, tilted, (0.5, 0.5), 384).rows[0].value != view.rows[0].value
    distance = Measurement("width", "distance", (0, 1))
    row = measure([distance], points, None, 384).rows[0]
    assert row.unit == "px" and row.value == pytest.approx(np.linalg.norm(points[1] - points[0]))
    missing = points.copy()
    missing[0] = np.nan
    shown = measure([distance], missing, None, 384)
    assert shown.rows[0].text == "-" and shown.lines == []
