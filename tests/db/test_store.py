from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from scn_annotator.app.sample_project import LANDMARK_NAMES
from scn_annotator.db.models import Annotation, Event, EventKind, ModelVersion
from scn_annotator.db.records import ScoreRecord, VersionMetrics
from scn_annotator.db.store import Project, landmark_colors
from scn_annotator.db.transfer import import_images
from scn_annotator.errors import ScnError


def test_create_and_reopen(project, backend, tmp_path):
    assert project.landmark_names == LANDMARK_NAMES
    colors = [lm.color for lm in project.landmarks()]
    assert colors == landmark_colors(15) and len(set(colors)) == 15
    folder = tmp_path / "project"
    assert (folder / "project.json").exists() and (folder / "checkpoints").is_dir()
    assert (folder / "project.sqlite").exists() == (backend is None)
    again = Project.open(backend or folder)
    assert again.landmark_names == LANDMARK_NAMES
    assert again.settings()["name"] == "project"
    again.close()
    with pytest.raises(ScnError, match="already a project"):
        Project.create(folder, ["a"])


def test_a_project_keeps_the_objects_its_names_file_gave(backend, tmp_path):
    names = ["V1_tl", "V1_tr", "V2_tl", "V2_tr", "tip_a", "tip_b", "nose"]
    given = [None, None, None, None, "tooth", "tooth", None]
    folder = tmp_path / "grouped"
    Project.create(folder, names, database=backend, objects=given).close()
    again = Project.open(backend or folder)
    objects = again.objects()
    # the names file's group, the names' own groups (a repeated V*_tl/tr pattern), and a single
    assert set(objects.members) == {(0, 1), (2, 3), (4, 5), (6,)}
    assert objects.names[objects.owner[4]] == "tooth"
    assert [lm.object_name for lm in again.landmarks()] == given
    again.close()
    with pytest.raises(ScnError, match="3 object names for 2 landmarks"):
        Project.create(tmp_path / "bad", ["a", "b"], objects=["x", "x", "y"])


def test_opening_what_is_not_a_project(tmp_path):
    with pytest.raises(ScnError, match="not a project"):
        Project.open(tmp_path)
    with pytest.raises(ScnError, match="twice"):
        Project.create(tmp_path / "p", ["a", "b", "a"])
    with pytest.raises(ScnError, match="at least one landmark"):
        Project.create(tmp_path / "q", [])


def test_image_import_reports_duplicates_changes_and_failures(project, sample_dir, tmp_path):
    folder = tmp_path / "imgs"
    shutil.copytree(sample_dir / "images", folder)
    shutil.copy(folder / "hand000.mha", folder / "zz_copy.mha")
    (folder / "broken.png").write_text("not an image")
    report = import_images(project, folder)
    assert len(report.added) == 24
    assert report.duplicates == [(str(folder / "zz_copy.mha"), "hand000")]
    assert report.failed == [(str(folder / "broken.png"), "is a text file, not an image")]
    again = import_images(project, folder)
    assert not again.added and len(again.unchanged) == 24
    shutil.copy(folder / "hand002.mha", folder / "hand001.mha")  # the file behind an image changed
    changed = import_images(project, folder)
    assert changed.changed == ["hand001.mha"]
    image = project.image("hand001")
    assert project.resolve(image) == folder / "hand001.mha"
    assert image.spacing == pytest.approx((0.6, 0.6)) and image.spacing_source == "header"
    assert project.counts() == {"new": 24, "in_progress": 0, "done": 0, "skipped": 0}


def test_a_correction_is_stored_with_its_event(loaded):
    event_id = loaded.annotations.set("hand003", "index_tip", 100.5, 50.25, author="ann")
    a = loaded.annotations.of("hand003")[5]
    assert (a.x, a.y, a.state, a.source, a.author) == (100.5, 50.25, "placed", "human", "ann")
    assert loaded.image("hand003").status == "in_progress"
    loaded.annotations.set("hand003", 5, 101.0, 51.0, author="bob")
    history = loaded.annotations.history("hand003")
    assert [h.id for h in history][-1] == event_id
    latest = history[0]
    assert (latest.old_x, latest.new_x, latest.author, latest.landmark) == (
        100.5,
        101.0,
        "bob",
        "index_tip",
    )
    assert latest.old_state == "placed" and latest.kind == EventKind.EDIT


def test_bad_positions_are_refused_and_change_nothing(loaded):
    for x, y in ((-5, 10), (10, 400), (float("nan"), 3)):
        with pytest.raises(ScnError):
            loaded.annotations.set("hand000", 0, x, y)
    with pytest.raises(ScnError, match="absent landmark has no position"):
        loaded.annotations.set("hand000", 0, 3, 3, state="absent")
    with pytest.raises(ScnError, match="no landmark"):
        loaded.annotations.set("hand000", "elbow", 3, 3)
    assert loaded.annotations.of("hand000") == {}
    assert loaded.annotations.history() == []


def test_occluded_and_absent_states(loaded):
    loaded.annotations.set("hand000", 0, 10, 20, state="occluded")
    loaded.annotations.set("hand000", 1, None, None, state="absent")
    ann = loaded.annotations.of("hand000")
    assert ann[0].state == "occluded" and ann[1].state == "absent" and ann[1].x is None
    points = loaded.annotations.points("hand000")
    assert points[0].tolist() == [10, 20] and np.isnan(points[1]).all() and np.isnan(points[2]).all()


def test_undo_and_redo_work_across_saves_and_reopening(loaded, backend, tmp_path):
    loaded.annotations.set("hand005", 0, 10, 10)
    loaded.annotations.set("hand005", 0, 20, 20)
    loaded.annotations.set("hand005", 1, 30, 30)
    assert loaded.annotations.undo("hand005") == 1
    assert 1 not in loaded.annotations.of("hand005")
    loaded.close()
    reopened = Project.open(backend or tmp_path / "project", user="tester")  # the same person, later
    assert reopened.annotations.undo("hand005") == 1
    assert (reopened.annotations.of("hand005")[0].x, reopened.annotations.of("hand005")[0].y) == (10, 10)
    assert reopened.annotations.redo("hand005") == 1
    assert reopened.annotations.of("hand005")[0].x == 20
    assert reopened.annotations.can_undo("hand005") == (True, True)
    reopened.annotations.set("hand005", 2, 5, 5)  # a new change clears the redo stack
    assert reopened.annotations.redo("hand005") == 0
    assert (
        reopened.annotations.undo("hand005") == 1
        and reopened.annotations.undo("hand005") == 1
        and reopened.annotations.undo("hand005") == 1
    )
    assert reopened.annotations.of("hand005") == {}
    assert reopened.annotations.undo("hand005") == 0
    kinds = [h.kind for h in reopened.annotations.history("hand005")]
    assert kinds.count("undo") == 5 and kinds.count("redo") == 1 and kinds.count("edit") == 4
    reopened.close()


def test_model_versions_one_current_and_rollback(loaded, tmp_path):
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"weights-a")
    v1 = loaded.models.register(ckpt, metrics=VersionMetrics(val_error=2.0), make_current=True)
    ckpt.write_bytes(b"weights-b")
    v2 = loaded.models.register(ckpt, metrics=VersionMetrics(val_error=1.0), parent_id=v1, make_current=True)
    assert loaded.models.current().id == v2
    assert loaded.models.file(loaded.models.current()).read_bytes() == b"weights-b"
    loaded.models.make_current(v1)  # rollback
    assert loaded.models.current().id == v1
    assert [v.is_current for v in loaded.models.all()] == [True, False]
    with pytest.raises(ScnError, match="no model version"):
        loaded.models.make_current(99)
    with pytest.raises(sa.exc.IntegrityError), loaded.db.write() as s:  # the database itself refuses two
        s.execute(sa.update(ModelVersion).values(is_current=True))
    assert loaded.models.current().id == v1


def _model(project, tmp_path, name="m.pt") -> int:
    path = tmp_path / name
    path.write_bytes(b"w")
    return project.models.register(path, make_current=True)


def test_predictions_never_touch_human_corrections(loaded, tmp_path):
    loaded.annotations.set("hand007", 0, 11, 12, author="ann")
    version = _model(loaded, tmp_path)
    points = np.tile([[50.0, 60.0]], (15, 1))
    loaded.predictions.store(version, "hand007", points, np.full(15, 2.5), scores=[ScoreRecord("random", 0.3)])
    assert loaded.annotations.of("hand007")[0].x == 11  # untouched
    pred = loaded.predictions.latest("hand007")
    assert pred.model_version == version and pred.points[3].tolist() == [50, 60]
    assert pred.scores["random"].value == pytest.approx(0.3)
    assert loaded.annotations.accept_predictions("hand007", author="ann") == 14
    ann = loaded.annotations.of("hand007")
    assert ann[0].x == 11 and ann[0].source == "human"
    assert ann[5].source == "model_accepted" and ann[5].prediction_id == pred.prediction_ids[5]
    assert loaded.annotations.undo("hand007", author="ann") == 14  # accepting is one step (undone by who accepted)
    assert list(loaded.annotations.of("hand007")) == [0]
    # a later model run replaces its predictions, still without touching annotations
    loaded.predictions.store(version, "hand007", points + 1, np.full(15, 2.0))
    assert loaded.predictions.latest("hand007").points[0].tolist() == [51, 61]
    assert loaded.annotations.of("hand007")[0].x == 11


def test_every_change_has_an_event(loaded, tmp_path):
    version = _model(loaded, tmp_path)
    loaded.predictions.store(version, "hand001", np.full((15, 2), 40.0), np.ones(15))
    changes = 0
    for i in range(6):
        loaded.annotations.set("hand001", i, 10 + i, 20)
        changes += 1
    loaded.annotations.set("hand001", 0, 10, 20)  # no change: no event
    changes += loaded.annotations.accept_predictions("hand001")
    changes += loaded.annotations.undo("hand001")
    changes += loaded.annotations.redo("hand001")
    loaded.annotations.clear("hand001", 2)
    changes += 1
    loaded.set_status("hand001", "done")
    with loaded.db.read() as s:
        landmark_events = s.scalar(select(func.count()).select_from(Event).where(Event.landmark_id.is_not(None)))
        status_events = s.scalar(select(func.count()).select_from(Event).where(Event.kind == "status"))
        annotations = s.scalar(select(func.count()).select_from(Annotation))
    assert landmark_events == changes and status_events == 1
    assert annotations == 14


def test_settings_are_json(project):
    project.set_setting("policy", {"every": 5, "on": True})
    assert project.settings()["policy"] == {"every": 5, "on": True}
    assert json.loads(json.dumps(project.settings()))


def test_jobs_queue_and_cancel(project):
    a = project.jobs.enqueue("round", {"steps": 10})
    b = project.jobs.enqueue("predict")
    project.jobs.request_cancel(a)
    assert project.jobs.job(a).state == "cancelled"
    assert [j.id for j in project.jobs.list(["queued"])] == [b]


def test_undo_is_per_person_in_a_team(loaded, backend, tmp_path):
    other = Project.open(backend or tmp_path / "project", user="bea")
    try:
        loaded.annotations.set("hand003", 0, 10, 10)  # tester
        other.annotations.set("hand003", 1, 20, 20)  # bea, later
        assert other.annotations.can_undo("hand003") == (True, False)
        assert loaded.annotations.undo("hand003") == 1  # tester's undo reverts tester's change, not bea's later one
        assert 0 not in loaded.annotations.of("hand003") and loaded.annotations.of("hand003")[1].x == 20
        assert loaded.annotations.history("hand003")[0].author == "tester"
        assert loaded.annotations.undo("hand003") == 0  # nothing more of tester's
        loaded.annotations.redo("hand003")
        other.annotations.set("hand003", 0, 30, 30)  # bea changes the landmark tester set
        with pytest.raises(ScnError, match=r"cannot undo on image hand003: changed since: thumb_base \(by bea\)"):
            loaded.annotations.undo("hand003")
        assert loaded.annotations.of("hand003")[0].x == 30  # refused: nothing changed
        assert other.annotations.undo("hand003") == 1 and loaded.annotations.of("hand003")[0].x == 10
    finally:
        other.close()
