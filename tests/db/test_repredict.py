"""A model predicting an image again never breaks an open view's corrections or their provenance.

The worker re-predicts images while annotators work on them (a round that keeps the
current model, a rollback and re-rank, ``predict --project``). The earlier run of the
same model used to be deleted: the next drag of a proposal on screen then failed with
a foreign-key error, and every earlier correction lost the prediction it came from.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from scn_annotator.app.annotation_session import AnnotationSession
from scn_annotator.db.models import Event, ImagePrediction, Prediction
from scn_annotator.db.records import ScoreRecord


def _model(project, tmp_path) -> int:
    path = tmp_path / "m.pt"
    path.write_bytes(b"weights")
    return project.models.register(path, make_current=True)


def _predict(project, version, image, offset: float) -> int:
    points = np.tile([[40.0 + offset, 50.0 + offset]], (15, 1)) + np.arange(15)[:, None]
    return project.predictions.store(version, image, points, np.full(15, 1.5), scores=[ScoreRecord("random", offset)])


def test_a_correction_of_a_proposal_on_screen_survives_a_reprediction(loaded, tmp_path):
    version = _model(loaded, tmp_path)
    image = loaded.images()[0]
    _predict(loaded, version, image.id, 0.0)
    session = AnnotationSession(loaded, "random", prefetch=False)
    try:
        view = session.open(image.id)
        shown = view.landmarks[4].prediction_id
        seen = (view.landmarks[4].x, view.landmarks[4].y)
        assert view.landmarks[4].kind == "prediction" and shown is not None
        _predict(loaded, version, image.id, 5.0)  # the worker, meanwhile
        for step in range(3):  # every later drag works too
            view = session.move(4, 70.0 + step, 80.0)
            assert (view.landmarks[4].x, view.landmarks[4].y) == (70.0 + step, 80.0)
        assert loaded.annotations.of(image.id)[4].prediction_id == shown  # the proposal the annotator saw ...
        with loaded.db.read() as s:  # ... and not a new one that reused its row id
            assert s.get(Prediction, shown).x == seen[0] and s.get(Prediction, shown).y == seen[1]
        view = session.move(6, 30.0, 31.0)  # a proposal of the new run, after the view was re-read
        assert view.landmarks[6].prediction_id == loaded.predictions.latest(image.id).prediction_ids[6]
    finally:
        session.close()


def test_provenance_survives_repredictions(loaded, tmp_path):
    version = _model(loaded, tmp_path)
    image = loaded.images()[1].id
    _predict(loaded, version, image, 0.0)
    first = loaded.predictions.latest(image).prediction_ids
    loaded.annotations.set(image, 2, 12.0, 13.0, prediction_id=first[2])
    assert loaded.annotations.accept_predictions(image) == 14
    for offset in (1.0, 2.0):
        _predict(loaded, version, image, offset)
    annotations = loaded.annotations.of(image)
    assert [annotations[i].prediction_id for i in range(15)] == first
    assert {e.prediction_id for e in loaded.annotations.history(image)} == set(first)
    latest = loaded.predictions.latest(image)
    assert latest.points[0].tolist() == [42.0, 52.0]  # the newest run is the one shown
    assert latest.scores["random"].value == 2.0
    with loaded.db.read() as s:
        runs = s.scalar(select(func.count()).select_from(ImagePrediction).where(ImagePrediction.image_id == image))
        dangling = s.scalar(
            select(func.count()).select_from(Event).where(Event.prediction_id.is_(None), Event.landmark_id.is_not(None))
        )
    assert runs == 3 and dangling == 0
    assert loaded.annotations.undo(image) == 14  # undo of the acceptance still knows where it came from
    assert loaded.annotations.redo(image) == 14
    assert loaded.annotations.of(image)[5].prediction_id == first[5]


def test_provenance_must_name_a_proposal_of_that_landmark(loaded, tmp_path):
    version = _model(loaded, tmp_path)
    a, b = (r.id for r in loaded.images()[:2])
    _predict(loaded, version, a, 0.0)
    ids = loaded.predictions.latest(a).prediction_ids
    loaded.annotations.set(b, 3, 10.0, 10.0, prediction_id=ids[3])  # another image's proposal
    loaded.annotations.set(a, 3, 10.0, 10.0, prediction_id=ids[4])  # another landmark's proposal
    loaded.annotations.set(a, 5, 10.0, 10.0, prediction_id=10**9)  # none at all
    assert loaded.annotations.of(b)[3].prediction_id is None
    assert loaded.annotations.of(a)[3].prediction_id is None
    assert loaded.annotations.of(a)[5].prediction_id is None


def test_the_upgrade_keeps_every_prediction_and_reference(backend, tmp_path):
    """0002 -> 0003 rebuilds image_predictions on SQLite: nothing may cascade away."""
    import json

    from sqlalchemy import text

    from scn_annotator.db import migrate
    from scn_annotator.db.session import Database
    from scn_annotator.db.store import Project

    folder = tmp_path / "old"
    folder.mkdir()
    db = Database(backend or folder / "project.sqlite")
    migrate.upgrade(db, "0002")
    statements = [
        "INSERT INTO settings (key, value) VALUES ('data_dir', :d)",
        "INSERT INTO landmarks (id, \"index\", name, color, description) VALUES (1, 0, 'tip', '#ff0000', '')",
        "INSERT INTO images (id, path, name, checksum, file_size, width, height, spacing_source, status, meta,"
        " created_at, updated_at) VALUES (1, 'a.png', 'a', 'abc', 10, 100, 80, 'unknown', 'in_progress', '{}',"
        " '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
        "INSERT INTO model_versions (id, checkpoint, config, training_set, metrics, is_current, created_at, note)"
        " VALUES (1, 'c.pt', '{}', '{}', '{}', true, '2026-01-01 00:00:00', '')",
        "INSERT INTO image_predictions (id, model_version_id, image_id, created_at)"
        " VALUES (1, 1, 1, '2026-01-01 00:00:00')",
        "INSERT INTO predictions (id, run_id, landmark_id, x, y, confidence) VALUES (7, 1, 1, 5.0, 6.0, 1.0)",
        "INSERT INTO scores (run_id, strategy, value, per_landmark) VALUES (1, 'random', 0.5, '{}')",
        "INSERT INTO annotations (image_id, landmark_id, x, y, state, source, author, prediction_id, updated_at)"
        " VALUES (1, 1, 5.5, 6.5, 'placed', 'human', 'ann', 7, '2026-01-01 00:00:00')",
    ]
    with db.engine.execution_options(scn_write=True).begin() as conn:
        for sql in statements:
            conn.execute(text(sql), {"d": json.dumps(str(folder))} if ":d" in sql else {})
        if backend:  # rows inserted with explicit ids leave PostgreSQL's sequences behind
            for table in ("image_predictions", "predictions", "model_versions"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100)"))
    db.dispose()
    (folder / "project.json").write_text(json.dumps({"database": backend}))
    project = Project.open(backend or folder)
    try:
        assert migrate.current_revision(project.db) == migrate.head_revision()
        assert project.annotations.of("a")[0].prediction_id == 7
        prediction = project.predictions.latest("a")
        assert prediction.prediction_ids == [7] and prediction.scores["random"].value == 0.5
        project.predictions.store(1, "a", np.array([[8.0, 9.0]]), np.ones(1))  # and the new rule holds
        assert project.annotations.of("a")[0].prediction_id == 7
        assert project.predictions.latest("a").points[0].tolist() == [8.0, 9.0]
    finally:
        project.close()
