"""Reading mode: the session edits a reader's own reading, on their assigned images, with or without proposals."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.app.reading_session import ReadingSession
from scn_annotator.app.sample_project import LANDMARK_NAMES
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import import_images
from scn_annotator.errors import ScnError


@pytest.fixture
def project(sample_dir, tmp_path):
    p = Project.create(tmp_path / "p", LANDMARK_NAMES, user="ann")
    import_images(p, sample_dir / "images")
    p.assignments.assign(["ann", "ben"], images=["hand001", "hand002"])
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"w")
    version = p.models.register(weights, make_current=True)
    p.predictions.store(version, "hand001", np.full((15, 2), 50.0), np.ones(15))
    yield p
    p.close()


def test_a_reading_goes_into_the_readers_own_points_not_the_consensus(project):
    session = ReadingSession(project, prefetch=False)
    assert session.reader == "ann" and [r.name for r in session.queue.rows] == ["hand001", "hand002"]
    view = session.open(session.resume_image())
    assert view.record.name == "hand001" and view.landmarks[0].kind == "prediction"  # proposals shown
    session.move(0, 12.0, 34.0)
    session.mark(1, "absent")
    assert project.annotations.of("hand001") == {}  # the consensus is not touched
    mine = project.readings.tables()["ann"]
    assert tuple(mine.points["hand001"][0]) == (12.0, 34.0) and mine.extra["hand001"]["state"][1] == "absent"
    assert session.undo() == 1  # the absent mark taken back, in the reading's own history
    assert project.readings.tables()["ann"].extra["hand001"]["state"][1] == ""
    history = [e for e in project.annotations.history("hand001") if e.kind.startswith("reading")]
    assert [e.kind for e in history] == ["reading_undo", "reading", "reading"]  # newest first
    assert project.annotations.can_undo("hand001", "ann") == (False, False)  # the consensus's undo is apart
    project.readings.set("hand001", 0, 40.0, 40.0, reader="ben")
    assert list(project.readings.visible("hand001", "ann")) == ["ann"]  # blind while reading
    following, accepted = session.mark_done()  # D: the proposals shown are taken, the reading finished
    assert accepted == 14 and following == session.queue.rows[1].image_id  # 15 less the one moved
    assert sorted(project.readings.visible("hand001", "ann")) == ["ann", "ben"]
    assert [r.status for r in session.queue.rows] == ["done", "in_progress"]
    session.close()


def test_a_reader_may_read_without_the_models_proposals(project):
    session = ReadingSession(project, reader="ben", show_model=False, prefetch=False)
    view = session.open(project.image("hand001").id)
    assert all(lm.kind == "none" for lm in view.landmarks) and view.heatmaps is None
    with pytest.raises(ScnError, match="nothing read"):
        session.mark_done()
    session.close()
