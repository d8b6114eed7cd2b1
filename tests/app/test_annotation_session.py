"""The annotator's session, headless: what the napari plugin calls."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.app.annotation_session import AnnotationSession
from scn_annotator.errors import ScnError


@pytest.fixture
def session(trained):
    from scn_annotator.db.store import Project

    project = Project.open(trained, user="annotator")
    s = AnnotationSession(project, "sc_la_mass")
    yield s
    s.close()
    project.close()


def test_opening_the_top_of_the_queue(session):
    first = session.resume_image()
    assert first == session.queue.rows[0].image_id
    view = session.open(first)
    assert view.record.status == "new" and view.model_version == 1
    assert view.spacing == pytest.approx((0.6, 0.6)) and view.spacing_known
    assert view.heatmaps is not None and view.heatmaps.final.shape[0] == 15
    assert [lm.kind for lm in view.landmarks] == ["prediction"] * 15
    row = next(r for r in session.queue.rows if r.image_id == first)
    assert sum(lm.doubtful for lm in view.landmarks) == len(row.doubtful) > 0  # the top of the queue has some
    data, index = view.points()
    assert data.shape == (15, 2) and index == list(range(15))
    lo, hi = view.contrast
    assert 0 <= lo < hi <= 255


def test_moving_a_prediction_makes_a_correction_that_remembers_it(session):
    view = session.open(session.resume_image())
    pid = view.landmarks[3].prediction_id
    view = session.move(3, 50.25, 60.5)
    lm = view.landmarks[3]
    assert (lm.kind, lm.source, lm.x, lm.y, lm.prediction_id) == ("annotation", "human", 50.25, 60.5, pid)
    assert session.project.annotations.history(view.record.id)[0].prediction_id == pid
    assert view.record.status == "in_progress"
    view = session.move(3, -40, 9999)  # dropped beyond the edge: kept on the image
    assert (view.landmarks[3].x, view.landmarks[3].y) == (-0.5, view.record.height - 0.5)


def test_marks_accept_undo_redo(session):
    view = session.open(session.resume_image())
    view = session.mark(0, "occluded")
    assert view.landmarks[0].state == "occluded" and view.landmarks[0].x is not None
    view = session.mark(1, "absent")
    assert view.landmarks[1].kind == "annotation" and view.landmarks[1].x is None
    assert session.accept_all() == 13
    assert {lm.kind for lm in session.current.landmarks} == {"annotation"}
    assert session.undo() == 13
    assert session.current.landmarks[5].kind == "prediction"
    assert session.redo() == 13
    with pytest.raises(ScnError, match="no position"):
        session.mark(1, "occluded")  # absent: nothing to mark occluded
    assert session.clear(1).landmarks[1].kind == "prediction"  # cleared: the model's proposal shows again


def _row(session, image_id):
    return next(r for r in session.queue.rows if r.image_id == image_id)


def test_the_queue_row_follows_a_first_correction_and_its_undo(session):
    view = session.open(session.resume_image())
    image = view.record.id
    assert _row(session, image).status == "new"
    session.move(2, 40.0, 41.0)
    assert session.current.record.status == "in_progress" and _row(session, image).status == "in_progress"
    session.undo()
    assert session.project.image(image).status == "new"  # undone to before the first change: new again
    assert session.current.record.status == "new" and _row(session, image).status == "new"
    session.redo()
    assert _row(session, image).status == "in_progress"


def test_ctrl_z_right_after_done_takes_the_done_and_its_accepted_proposals_back(session):
    view = session.open(session.resume_image())
    image = view.record.id
    session.move(0, 30.0, 31.0)
    following, accepted = session.mark_done()
    assert accepted == 14 and session.project.image(image).status == "done"
    session.open(following)
    assert session.can_undo_done
    assert session.undo_done() == image
    assert session.project.image(image).status == "in_progress"  # as it was before D
    annotations = session.project.annotations.of(image)
    assert set(annotations) == {0} and (annotations[0].x, annotations[0].y) == (30.0, 31.0)  # the correction stays
    assert _row(session, image).status == "in_progress"
    assert not session.can_undo_done


def test_done_is_taken_back_only_right_after_it(session):
    session.open(session.resume_image())
    following, _ = session.mark_done()
    session.open(following)
    session.move(1, 20.0, 20.0)  # work on the next image: Ctrl+Z is about that now
    assert not session.can_undo_done
    with pytest.raises(ScnError, match="no image was just marked done"):
        session.undo_done()


def test_done_moves_on_and_the_place_is_remembered(session, trained):
    from scn_annotator.db.store import Project

    first = session.resume_image()
    session.open(first)
    nxt, accepted = session.mark_done()
    assert nxt is not None and nxt != first
    assert accepted == 15  # nothing was confirmed: done confirms every proposal shown, as it was
    annotations = session.project.annotations.of(first)
    assert len(annotations) == 15 and {a.source for a in annotations.values()} == {"model_accepted"}
    assert next(r for r in session.queue.rows if r.image_id == first).status == "done"
    session.open(nxt)
    again = AnnotationSession(Project.open(session.project.data_dir, user="annotator"), prefetch=False)
    assert again.resume_image() == nxt  # the same annotator resumes where they were
    other = AnnotationSession(Project.open(session.project.data_dir, user="someone else"), prefetch=False)
    assert other.resume_image() == other.queue.next_after(None).image_id


def test_a_human_correction_survives_a_new_model(session):
    view = session.open(session.resume_image())
    session.move(2, 11.0, 12.0)
    version = session.project.models.current().id
    session.project.predictions.store(version, view.record.id, np.full((15, 2), 99.0), np.ones(15))
    view = session.reload()
    assert (view.landmarks[2].x, view.landmarks[2].y, view.landmarks[2].kind) == (11.0, 12.0, "annotation")
    assert view.landmarks[4].x == 99.0 and view.landmarks[4].kind == "prediction"


def test_a_proposal_beyond_the_edge_is_marked_where_a_drag_would_put_it(session):
    """One rule for a point off the image: marking occluded clamps it, as a drag and accept-all do."""
    view = session.open(session.resume_image())
    w = view.record.width
    prediction = session.project.predictions.latest(view.record.id)
    points = prediction.points.copy()
    points[2] = (w + 3.0, -4.0)  # the model put it just outside the image
    session.project.predictions.store(view.model_version, view.record.id, points, prediction.confidence)
    view = session.reload()
    assert (view.landmarks[2].x, view.landmarks[2].y) == (w + 3.0, -4.0)
    view = session.mark(2, "occluded")
    assert (view.landmarks[2].x, view.landmarks[2].y, view.landmarks[2].state) == (w - 0.5, -0.5, "occluded")


def test_export_from_the_session(session, tmp_path):
    manifest = session.export(tmp_path / "out.csv")
    assert manifest["images"] == 8 and (tmp_path / "out.csv").read_text().count("\n") == 9


def test_an_image_with_nothing_to_confirm_is_not_marked_done(session):
    view = session.open(session.resume_image())
    blank = session.project.data_dir / "blank.pt"
    blank.write_bytes(b"a model that has predicted nothing yet")
    session.project.models.register(blank, make_current=True)
    assert {lm.kind for lm in session.reload().landmarks} == {"none"}
    with pytest.raises(ScnError, match="no landmark to confirm"):
        session.mark_done()
    assert session.project.image(view.record.id).status != "done"


def test_proposals_follow_the_confirmed_landmarks_through_a_helper_process(trained):
    """The app's interactive loop, headless: a correction re-places the others, undo brings them back."""
    from scn_annotator.app.conditioning import ConditioningClient
    from scn_annotator.db.store import Project
    from scn_annotator.engine.inference import Predictor

    project = Project.open(trained, user="annotator")
    session = AnnotationSession(project, conditioning=ConditioningClient(trained))
    try:
        view = session.open(session.resume_image())
        image_id = view.record.id
        plain = view.points()[0].copy()

        def follow() -> None:
            token, proposals = session.repropose().result(timeout=120)
            assert session.apply(token, proposals) is not None

        assert session.repropose() is None  # nothing confirmed yet: the model's own proposals stay
        session.move(0, 20.0, 30.0)
        follow()
        view = session.current
        assert (view.landmarks[0].x, view.landmarks[0].kind) == (20.0, "annotation")  # never moved by a model
        shown = [lm for lm in view.landmarks if lm.kind == "prediction"]
        assert len(shown) == 14 and {lm.source for lm in shown} == {"conditioned"}
        # they are what the model predicts given the confirmed landmark (the helper's answer, not a guess)
        predictor = Predictor.from_checkpoint(project.models.file(project.models.current()), device="cpu")
        hints = np.full((15, 2), np.nan)
        hints[0] = (20.0, 30.0)
        expected = predictor.predict(project.resolve(view.record), hints=hints).points
        assert np.allclose([[lm.x, lm.y] for lm in shown], expected[1:], atol=1e-3)
        assert plain.shape == (15, 2)
        first = [(lm.x, lm.y) for lm in shown]

        # a correction of a conditioned proposal records the proposal the annotator saw
        seen = view.landmarks[3].prediction_id
        session.move(3, 50.0, 60.0)
        assert project.annotations.of(image_id)[3].prediction_id == seen
        assert project.annotations.history(image_id)[0].prediction_id == seen
        follow()
        assert session.current.landmarks[3].kind == "annotation" and session.proposals.hints == [0, 3]

        session.undo()  # landmark 3 is a proposal again, and the proposals are those given landmark 0 alone
        follow()
        again = [(lm.x, lm.y) for lm in session.current.landmarks if lm.kind == "prediction"]
        assert np.allclose(again, first, atol=1e-6)

        # accepting takes what is on screen, and switching off shows the model's own proposals
        session.set_follow(False)
        assert {lm.source for lm in session.current.landmarks if lm.kind == "prediction"} == {"model"}
        session.set_follow(True)
        follow()
        on_screen = {lm.info.index: (lm.x, lm.y) for lm in session.current.landmarks if lm.kind == "prediction"}
        assert session.accept_all() == 14
        saved = project.annotations.of(image_id)
        assert all(np.allclose((saved[k].x, saved[k].y), xy) for k, xy in on_screen.items())
        # a stale reply (an older request) is never shown
        stale = session.repropose()
        assert stale is None  # every landmark is confirmed now: nothing to re-place
    finally:
        session.close()
        project.close()


def test_a_model_without_hint_channels_leaves_the_proposals_where_they_are(trained, tmp_path):
    """Training-free conditioning costs corrections (benchmarks/RESULTS.md): the app does not use it."""
    import shutil

    from scn_annotator.app.conditioning import ConditioningClient
    from scn_annotator.db.store import Project
    from scn_annotator.engine.checkpoint import load_checkpoint, save_checkpoint

    project = Project.open(trained, user="annotator")
    current = project.models.current()
    payload = load_checkpoint(project.models.file(current))
    payload["network"]["hint_channels"] = False  # as a checkpoint from before hint channels
    first = payload["model"]["spatial.body.0.weight"]
    payload["model"]["spatial.body.0.weight"] = first[:, : first.shape[1] // 2].clone()
    old = tmp_path / "old.pt"
    save_checkpoint(old, payload)
    project.models.register(shutil.copy(old, tmp_path / "old-copy.pt"), make_current=True)
    from scn_annotator.app.project_operations import predict_project

    predict_project(project)
    session = AnnotationSession(project, conditioning=ConditioningClient(trained))
    try:
        session.open(session.resume_image())
        session.move(0, 20.0, 30.0)
        with pytest.raises(ScnError, match="without hint channels"):
            session.repropose().result(timeout=120)
        assert {lm.source for lm in session.current.landmarks if lm.kind == "prediction"} == {"model"}
    finally:
        session.close()
        project.close()
