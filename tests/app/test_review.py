"""Double reading and review: assignments, blind reading, verdicts, and the queue a reviewer works through."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.app.review_queue import heat_under, review_queue
from scn_annotator.app.sample_project import LANDMARK_NAMES
from scn_annotator.app.sample_spine import generate_spine_sample
from scn_annotator.cli import main
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import import_images
from scn_annotator.errors import ScnError
from scn_annotator.io.landmark_files import read_landmarks


@pytest.fixture
def project(sample_dir, tmp_path):
    p = Project.create(tmp_path / "p", LANDMARK_NAMES, user="coordinator")
    import_images(p, sample_dir / "images")
    yield p
    p.close()


def test_a_share_is_assigned_to_every_reader_and_each_reads_blind_until_finished(project, sample_dir):
    chosen = project.assignments.assign(["ann", "ben"], share=0.25, seed=3)
    assert len(chosen) == 6 and chosen == project.assignments.assign(["ann", "ben"], share=0.25, seed=3)
    assert project.assignments.queue("ann") == chosen == project.assignments.queue("ben")
    truth = read_landmarks(sample_dir / "labels.csv").points
    image = chosen[0]
    for reader, shift in (("ann", 0.0), ("ben", 3.0)):
        for j, (x, y) in enumerate(truth[image]):
            project.readings.set(image, j, float(x) + shift, float(y), reader=reader)
    assert list(project.readings.visible(image, "ann")) == ["ann"]  # ben's points hidden from ann
    project.assignments.finish(image, "ann")
    assert sorted(project.readings.visible(image, "ann")) == ["ann", "ben"]
    assert list(project.readings.visible(image, "ben")) == ["ben"]  # ben has not finished
    assert image not in project.assignments.queue("ann") and image in project.assignments.queue("ann", unfinished=False)
    with pytest.raises(ScnError, match="not asked to read"):
        project.assignments.finish(image, "carl")
    with pytest.raises(ScnError, match="different readers"):
        project.assignments.assign(["ann", "ann"], share=0.1)


def test_verdicts_are_kept_as_a_history_and_needs_changes_says_what(project):
    with pytest.raises(ScnError, match="needs a note"):
        project.reviews.set("hand003", "needs_changes")
    project.reviews.set("hand003", "needs_changes", "thumb tip on the nail, not the bone")
    project.reviews.set("hand003", "reviewed")
    assert [r.status for r in project.reviews.history("hand003")] == ["needs_changes", "reviewed"]
    assert project.reviews.statuses()["hand003"].reviewer == "coordinator"
    with pytest.raises(ScnError, match="reviewed or needs_changes"):
        project.reviews.set("hand003", "fine")


def test_the_queue_puts_the_readers_strongest_disagreement_first(project, sample_dir):
    truth = read_landmarks(sample_dir / "labels.csv").points
    for image, shift in (("hand001", 1.0), ("hand002", 6.0), ("hand003", 3.0)):
        for reader, d in (("ann", 0.0), ("ben", shift)):
            for j, (x, y) in enumerate(truth[image]):
                project.readings.set(image, j, float(x) + (d if j == 4 else 0.0), float(y), reader=reader)
    project.annotations.set("hand010", 0, 20.0, 30.0)  # read once, no model yet
    project.reviews.set("hand002", "reviewed")
    queue = review_queue(project)
    assert [i.image for i in queue] == ["hand003", "hand001", "hand010", "hand002"]  # reviewed ones last
    first = queue[0]
    assert first.landmark == LANDMARK_NAMES[4] and first.disagreement == pytest.approx(3.0 * 0.6)  # mm
    assert "2 readers 1.80 mm apart" in first.reason and queue[2].heat is None


def test_heat_under_a_point_is_its_share_of_the_peak():
    final = np.zeros((2, 10, 10))
    final[0, 5, 5], final[0, 5, 6] = 1.0, 0.5
    final[1, 2, 2] = 4.0
    shares = heat_under(final, np.array([[5.5, 5.0], [7.0, 7.0]]))
    np.testing.assert_allclose(shares, [0.75, 0.0])
    assert np.isnan(heat_under(final, np.array([[np.nan, np.nan], [1.0, 1.0]]))[0])


def test_assign_assigned_and_review_from_the_command_line(project, capsys):
    where = str(project.data_dir)
    assert main(["assign", where, "--readers", "ann,ben", "--images", "hand001,hand002"]) == 0
    assert main(["assigned", where, "--reader", "ann"]) == 0
    assert "2 images for ann:\n  hand001\n  hand002" in capsys.readouterr().out
    assert main(["assigned", where, "--reader", "ann", "--finish", "hand001"]) == 0
    assert main(["review", where, "hand001", "--status", "needs_changes", "--note", "check L4"]) == 0
    assert "hand001: needs_changes by" in capsys.readouterr().out
    assert main(["review", where]) == 0
    assert "0 images to review" in capsys.readouterr().out  # nobody has placed a point yet


def test_a_vertebra_out_of_line_with_its_column_comes_first_among_single_reads(tmp_path):
    labels = generate_spine_sample(tmp_path / "spines", count=3, seed=5, vertebrae=6)
    table = read_landmarks(labels)
    p = Project.create(tmp_path / "p", table.names, user="coordinator")
    try:
        import_images(p, tmp_path / "spines" / "images")
        first, second = sorted(table.points)[:2]
        slipped = table.points[second].copy()
        slipped[-4:] = slipped[:4] - [0.0, 20.0]  # the last vertebra's corners above the first's
        for image, points in ((first, table.points[first]), (second, slipped)):
            for j, (x, y) in enumerate(points):
                p.annotations.set(image, j, float(x), float(y))
        queue = review_queue(p)
        assert [i.image for i in queue] == [second, first]
        assert queue[0].out_of_line == ("V6",) and "V6 out of line" in queue[0].reason
        assert queue[1].out_of_line == ()
    finally:
        p.close()


def test_hands_are_not_judged_as_a_chain(project, sample_dir):
    truth = read_landmarks(sample_dir / "labels.csv").points
    for image in ("hand010", "hand011", "hand012"):
        for j, (x, y) in enumerate(truth[image]):
            project.annotations.set(image, j, float(x), float(y))
    assert all(item.out_of_line == () for item in review_queue(project))
