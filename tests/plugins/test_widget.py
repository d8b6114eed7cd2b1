"""The napari app, driven through a real viewer (make_napari_viewer, pytest-qt, Xvfb in CI)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from scn_annotator.db.store import Project
from scn_annotator.plugins._io import get_reader
from scn_annotator.plugins._keys import SHORTCUTS
from scn_annotator.plugins._widget import AnnotatorWidget

pytestmark = pytest.mark.gui


def drag(points, index: int, row: float, col: float) -> None:
    """What napari does at the end of a mouse drag: move the data, then emit CHANGED."""
    points.data[index] = (row, col)
    points.events.data(value=points.data, action="changed", data_indices=(index,), vertex_indices=((),))


def test_opening_a_project_shows_the_image_heatmaps_and_landmarks(widget):
    layers = {layer.name for layer in widget.viewer.layers}
    assert {"landmarks", "LA x SC"} <= layers and any(n.startswith("radiograph") for n in layers)
    points = widget.layers["points"]
    image = widget.layers["image"]
    assert len(points.data) == 15
    np.testing.assert_allclose(image.scale, (0.6, 0.6))  # physical units: mm
    np.testing.assert_allclose(points.scale, image.scale)
    assert set(points.features["kind"]) == {"prediction"}
    row = next(r for r in widget.session.queue.rows if r.image_id == widget.view.record.id)
    assert len(widget.layers["doubt"].data) == len(row.doubtful) > 0  # a halo per doubtful proposal
    assert widget.table.shape[0] == 24 and widget.view.record.status == "new"
    lo, hi = image.contrast_limits
    assert 0 <= lo < hi <= 255


def test_moving_a_point_is_in_the_store_and_undo_works(widget, trained):
    points = widget.layers["points"]
    image_id = widget.view.record.id
    landmark = int(points.features["landmark"][2])
    drag(points, 2, 40.0, 30.0)  # (row, col) in pixels of the layer's data
    store = Project.open(trained)  # another connection: what is really saved
    saved = store.annotations.of(image_id)[landmark]
    assert (saved.x, saved.y, saved.source) == (30.0, 40.0, "human")
    assert store.annotations.history(image_id)[0].prediction_id is not None  # it started from a proposal
    assert widget.view.landmarks[landmark].kind == "annotation"
    index = list(widget.layers["points"].features["landmark"]).index(landmark)
    assert widget.layers["points"].features["kind"][index] == "annotation"
    widget.undo()
    assert landmark not in store.annotations.of(image_id)
    assert widget.view.landmarks[landmark].kind == "prediction"
    widget.redo()
    assert store.annotations.of(image_id)[landmark].x == 30.0
    store.close()


def test_placing_marking_accepting(widget):
    widget.landmark.value = 4
    points = widget.layers["points"]
    keep = [i for i in range(len(points.data)) if points.features["landmark"][i] != 4]
    points.selected_data = {i for i in range(len(points.data)) if i not in keep}
    points.remove_selected()  # a proposal removed is just not accepted: nothing saved
    assert 4 not in widget.session.project.annotations.of(widget.view.record.id)
    points.add([[20.0, 25.0]])  # a click in add mode places the selected landmark
    ann = widget.session.project.annotations.of(widget.view.record.id)
    assert (ann[4].x, ann[4].y) == (25.0, 20.0)
    widget.landmark.value = 6
    widget.mark_absent()
    widget.landmark.value = 7
    widget.mark_occluded()
    ann = widget.session.project.annotations.of(widget.view.record.id)
    assert ann[6].state == "absent" and ann[7].state == "occluded"
    assert len(widget.layers["points"].data) == 14  # the absent one is not drawn
    widget.accept_all()
    kinds = {lm.kind for lm in widget.view.landmarks if lm.info.index != 6}
    assert kinds == {"annotation"}


def test_done_advances_the_queue(widget, monkeypatch):
    first = widget.view.record.id
    said = []
    monkeypatch.setattr("scn_annotator.plugins._widget.show_info", said.append)
    widget.mark_done()
    assert said and "15 proposals accepted" in said[0]  # done with nothing confirmed: visibly accepted
    assert len(widget.session.project.annotations.of(first)) == 15
    assert widget.view.record.id != first
    assert widget.session.project.image(first).status == "done"
    widget.status_filter.value = "done"
    assert widget.table.shape[0] == 9  # the 8 annotated before, and this one
    widget.next_image()
    assert widget.view.record.status != "done"


def test_heatmap_toggles_and_selected_landmark(widget):
    widget.heatmap_boxes["local"].value = True
    widget.heatmap_boxes["spatial"].value = True
    assert widget.layers["local"].visible and widget.layers["spatial"].visible
    whole = widget.layers["spatial"].data.copy()
    widget.selected_only.value = True
    widget.landmark.value = 3
    assert not np.array_equal(widget.layers["spatial"].data, whole)
    # the landmark's own LA and SC, each with the sign that makes its value at the landmark positive
    h = widget.view.heatmaps
    peak = np.unravel_index(h.final[3].argmax(), h.final[3].shape)
    for kind, maps in (("spatial", h.spatial), ("local", h.local)):
        assert abs(maps[3][peak]) > 0
        assert widget.layers[kind].data[peak] == pytest.approx(abs(maps[3][peak]), rel=1e-3)
    shown = {k: widget.layers[k].data.copy() for k in ("local", "spatial")}
    h.local[3] *= -1  # the network may learn -LA and -SC for a landmark: the overlay must not change
    h.spatial[3] *= -1
    widget._redraw()
    for kind in ("local", "spatial"):
        np.testing.assert_array_equal(widget.layers[kind].data, shown[kind])
    widget.toggle_heatmaps()
    assert not widget.layers["final"].visible and not widget.layers["local"].visible


def test_every_shortcut_is_bound_and_works(widget):
    from app_model.types import KeyBinding

    bound = {str(k): handler for k, handler in widget.viewer.keymap.items()}
    assert {str(KeyBinding.from_str(key)) for key in SHORTCUTS} <= set(bound)

    def press(key: str) -> None:  # what napari calls for the key: the handler bound on the viewer
        bound[str(KeyBinding.from_str(key))](widget.viewer)

    widget.landmark.value = 0
    press("e")
    assert widget.landmark.value == 1
    hidden = widget.help.isHidden()
    press("F1")
    assert widget.help.isHidden() is not hidden
    press("F1")
    assert widget.help.isHidden() is hidden


def test_training_from_the_viewer(widget, qtbot, tiny_policy):
    from scn_annotator.active.policy import RoundPolicy

    project = widget.session.project
    RoundPolicy(initial_steps=40, round_steps=15, overrides=tiny_policy).save(project)
    place = widget.view.record.id
    widget.training.start_round()  # a worker process starts: training never runs in napari's process
    assert widget.training.job_id is not None and not widget.training.start.enabled
    qtbot.waitUntil(lambda: project.jobs.job(widget.training.job_id).state in ("done", "failed"), timeout=180_000)
    widget.training.poll()
    job = project.jobs.job(widget.training.job_id)
    assert job.state == "done", job
    assert "done" in widget.training.state.value
    assert len(widget.training.versions.choices) == 2
    assert widget.view.record.id == place  # the annotator's place is kept


def test_reader_writer_and_sample(widget, trained, tmp_path, monkeypatch):
    assert get_reader(str(trained)) is not None and get_reader(str(trained / "project.json")) is not None
    assert get_reader(str(tmp_path)) is None
    points = widget.layers["points"]
    out = tmp_path / "points.csv"
    points.save(str(out), plugin="scn-annotator")  # through napari's writer machinery
    from scn_annotator.db.transfer import import_labels
    from scn_annotator.io.landmark_files import read_landmarks

    table = read_landmarks(out)
    assert list(table.points) == [widget.view.record.name]  # the image, not the layer's name
    shown = widget.view.points()[0]
    np.testing.assert_allclose(table.points[widget.view.record.name][:, ::-1], shown, atol=1e-3)
    report = import_labels(widget.session.project, out, overwrite=True)  # the project's own import takes it
    assert report.names == [widget.view.record.name] and report.set + report.unchanged == len(shown)

    monkeypatch.setenv("HOME", str(tmp_path))
    viewer = widget.viewer
    viewer.open_sample("scn-annotator", "demo-project")
    assert (tmp_path / ".cache" / "scn-annotator" / "sample" / "project" / "project.json").exists()
    assert widget.location.endswith("project") and widget.session.project.counts()["done"] == 12


def test_the_napari_process_never_imports_torch(trained):
    import subprocess
    import sys

    code = (
        "import sys, napari\n"
        "from scn_annotator.plugins._widget import AnnotatorWidget\n"
        "viewer = napari.Viewer(show=False)\n"
        f"widget = AnnotatorWidget(viewer, project={str(trained)!r})\n"
        "widget.mark_done()\n"
        "print('torch' in sys.modules, len(widget.layers), flush=True)\n"
        "widget.training.close(); viewer.close()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # image, LA x SC, doubt halos, landmarks, measurement lines
    assert result.stdout.splitlines()[-1].split()[:2] == ["False", "5"], (result.stdout, result.stderr[-2000:])


def test_a_store_failure_is_reported_and_the_screen_shows_what_is_saved(widget, monkeypatch):
    """Not only user errors: any failure of a save leaves screen and store agreeing."""
    from sqlalchemy.exc import OperationalError

    points = widget.layers["points"]
    landmark = int(points.features["landmark"][1])
    before = tuple(points.data[1])
    errors = []
    monkeypatch.setattr("scn_annotator.plugins._widget.show_error", errors.append)

    def broken(*_args, **_kwargs):
        raise OperationalError("UPDATE annotations", {}, Exception("disk I/O error"))

    monkeypatch.setattr(widget.session.project.annotations, "set", broken)
    drag(points, 1, before[0] + 9.0, before[1] + 9.0)
    assert errors and "not saved" in errors[0] and "OperationalError" in errors[0]
    index = list(widget.layers["points"].features["landmark"]).index(landmark)
    np.testing.assert_allclose(widget.layers["points"].data[index], before)  # back where the store has it
    assert landmark not in widget.session.project.annotations.of(widget.view.record.id)
    monkeypatch.undo()
    drag(widget.layers["points"], index, before[0] + 5.0, before[1] + 5.0)  # and the next save works
    assert widget.session.project.annotations.of(widget.view.record.id)[landmark].y == pytest.approx(before[0] + 5.0)


def test_the_reader_claims_projects_only(make_napari_viewer, trained, tmp_path):
    """Through viewer.open: a radiograph someone drops is napari's, a project folder is ours."""
    import SimpleITK as sitk
    from npe2 import PluginManager

    png = tmp_path / "radiograph.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30), np.uint8)), str(png))
    ours = [r.command for r in PluginManager.instance().iter_compatible_readers([str(png)])]
    assert not any(c.startswith("scn-annotator") for c in ours)
    viewer = make_napari_viewer()
    layers = viewer.open(str(png))
    assert [layer.data.shape for layer in layers] == [(20, 30)]
    viewer.open(str(trained), plugin="scn-annotator")
    widget = next(w for name, w in viewer.window.dock_widgets.items() if "annotator" in name.lower())
    assert widget.location == str(trained.resolve())
    widget.training.close()
    widget.session.close()


def test_closing_the_widget_leaves_the_viewer_as_it_was(make_napari_viewer, trained, qtbot):
    viewer = make_napari_viewer()
    napari_own = {str(k): v for k, v in viewer.keymap.items()}
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_project(str(trained))
    points = widget.layers["points"]
    assert any(getattr(f, "__name__", "") == "mark_done" for f in viewer.keymap.values())
    widget.close()
    assert not any(getattr(f, "__name__", "") in {m for m, _ in SHORTCUTS.values()} for f in viewer.keymap.values())
    assert {str(k): v for k, v in viewer.keymap.items()} == napari_own
    assert not any(getattr(f, "__name__", "") == "mark_done" for f in points.keymap.values())
    landmark = int(points.features["landmark"][0])
    drag(points, 0, 12.0, 13.0)  # the closed widget no longer saves anything
    assert landmark not in Project.open(trained).annotations.of(widget.view.record.id)
    again = AnnotatorWidget(viewer)  # and a new one works
    viewer.window.add_dock_widget(again)
    again.open_project(str(trained))
    drag(again.layers["points"], 0, 12.0, 13.0)
    saved = again.session.project.annotations.of(again.view.record.id)
    assert int(again.layers["points"].features["landmark"][0]) in saved
    again.close()


@pytest.fixture
def sleeping_workers(monkeypatch):
    """The panel starts a process that only sleeps instead of a worker; the list of those it started."""
    import subprocess
    import sys

    started = []

    def fake_worker(_location, _project, once=False):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        started.append(proc)
        return proc.pid

    monkeypatch.setattr("scn_annotator.plugins._training.ensure_worker", fake_worker)
    yield started
    for proc in started:
        proc.kill()


def test_closing_stops_the_worker_the_app_started_when_nothing_is_queued(widget, monkeypatch, sleeping_workers):
    started = sleeping_workers
    panel = widget.training
    panel.start_round()
    assert started and started[0].poll() is None
    said = []
    monkeypatch.setattr("scn_annotator.plugins._training.show_info", said.append)
    panel._stop_workers()  # a round is queued: the worker keeps it, and the user is told
    assert started[0].poll() is None and said and "keeps running" in said[0]
    panel.cancel_round()  # queued, so cancelled at once: nothing left to do
    panel.close()
    assert started[0].wait(timeout=10) is not None  # stopped with the app


def test_closing_stops_the_worker_of_a_round_that_is_being_cancelled(widget, sleeping_workers):
    started = sleeping_workers
    panel = widget.training
    panel.start_round()
    jobs = widget.session.project.jobs
    jobs.claim("worker:1")  # running
    panel.cancel_round()  # asked to stop, still running: no work that needs the worker
    assert jobs.job(panel.job_id).state == "running"
    panel.close()
    assert started[0].wait(timeout=10) is not None


def test_every_image_opens_ready_to_drag_and_fitted_to_the_canvas(widget):
    viewer, points = widget.viewer, widget.layers["points"]
    assert viewer.layers.selection.active is points and points.mode == "select"  # a drag moves a point
    fitted = viewer.scene.camera.zoom
    viewer.scene.camera.zoom = fitted * 6  # the annotator zooms in, then pans the image away
    viewer.scene.camera.center = (0, 5000, 5000)
    viewer.layers.selection.active = widget.layers["image"]
    points.mode = "pan_zoom"
    widget.next_image()
    assert viewer.scene.camera.zoom == pytest.approx(fitted, rel=0.05)  # the whole next image, as on opening
    assert viewer.layers.selection.active is widget.layers["points"] and widget.layers["points"].mode == "select"
    dragged = int(widget.layers["points"].features["landmark"][5])
    drag(widget.layers["points"], 5, 30.0, 40.0)
    assert widget.landmark.value == dragged  # the selector follows the point just dragged


def test_a_drag_re_places_the_other_proposals_and_undo_restores_them(widget, qtbot):
    points = widget.layers["points"]
    before = np.array(points.data)
    assert set(points.features["source"]) == {"model"}
    index = 4
    landmark = int(points.features["landmark"][index])
    drag(points, index, before[index][0] + 6, before[index][1] + 6)

    def following() -> bool:
        sources = list(widget.layers["points"].features["source"])
        return sources.count("conditioned") == 14

    qtbot.waitUntil(following, timeout=120_000)
    after = widget.layers["points"]
    moved = list(after.features["landmark"]).index(landmark)
    assert after.features["kind"][moved] == "annotation"
    np.testing.assert_allclose(after.data[moved], before[index] + 6)  # the correction stays where it was put
    proposals = widget.session.proposals  # what the helper answered is what the layer shows
    assert proposals is not None and proposals.hints == [landmark]
    for i in range(len(after.data)):
        if i != moved:
            k = int(after.features["landmark"][i])
            np.testing.assert_allclose(after.data[i][::-1], proposals.points[k], atol=1e-6)
    widget.undo()  # nothing confirmed again: the model's own proposals, exactly as before
    qtbot.waitUntil(lambda: set(widget.layers["points"].features["source"]) == {"model"}, timeout=10_000)
    np.testing.assert_allclose(widget.layers["points"].data, before)
    widget.follow.value = False  # switched off, a drag moves only the dragged point
    drag(widget.layers["points"], index, before[index][0] + 6, before[index][1] + 6)
    qtbot.wait(500)
    assert "conditioned" not in set(widget.layers["points"].features["source"])


def test_a_progress_bar_lives_only_while_a_live_worker_runs_the_job(widget, monkeypatch):
    from scn_annotator.plugins import _training

    panel = widget.training
    jobs = widget.session.project.jobs
    monkeypatch.setattr(_training, "ensure_worker", lambda *a, **k: None)  # nobody will take the job
    panel.start_round()
    assert panel._bar is None and "no worker runs it" in panel.state.value
    assert panel.timer.interval() == _training.BUSY_POLL_MS and panel.start.enabled  # it can be started again
    panel.cancel_round()  # a queued job is cancelled at once
    panel.poll()
    assert panel._bar is None and panel.timer.interval() == _training.IDLE_POLL_MS
    # a job a live worker runs has a bar; it goes when the job ends, or when its worker dies
    job = jobs.enqueue("round")
    panel.job_id = job
    worker = jobs.register_worker("elsewhere:1", "cpu")
    jobs.claim("elsewhere:1")
    panel.poll()
    assert panel._bar is not None and not panel.start.enabled
    jobs.worker_stopped(worker)  # the worker died without finishing the job
    panel.poll()
    assert panel._bar is None and panel.start.enabled
    jobs.finish(job, "elsewhere:1", "cancelled")
    panel.poll()
    assert panel._bar is None and panel.timer.interval() == _training.IDLE_POLL_MS


def test_points_stay_readable_layers_fit_and_help_shows_at_the_top(widget):
    points = widget.layers["points"]
    assert points.canvas_size_limits[0] >= 10  # never a speck, whatever the zoom
    assert (points.border_color[:, :3] < 0.2).all()  # a dark outline on bright bone
    assert (points.border_width <= 0.1).all()  # thin: the ring shows its landmark's colour at the opening zoom
    assert all(len(layer.name) <= 16 for layer in widget.viewer.layers)
    widget.scroll.verticalScrollBar().setValue(widget.scroll.verticalScrollBar().maximum())
    widget.toggle_help()
    assert not widget.help.isHidden() and widget.scroll.verticalScrollBar().value() == 0
    assert (
        widget.help.geometry().top()
        < widget.table.native.mapTo(widget.help.parentWidget(), widget.table.native.rect().topLeft()).y()
    )
    widget.toggle_help()
    assert widget.help.isHidden()


def test_doubt_is_a_white_halo_under_the_point_not_a_landmark_colour(widget):
    points, halo = widget.layers["points"], widget.layers["doubt"]
    colours = np.array(
        [[int(lm.color[i : i + 2], 16) / 255 for i in (1, 3, 5)] for lm in widget.session.project.landmarks()]
    )
    assert np.abs(colours - 1.0).sum(axis=1).min() > 0.3  # no landmark is (near) white
    np.testing.assert_allclose(halo.face_color[:, :3], 1.0)
    layers = list(widget.viewer.layers)
    assert layers.index(halo) < layers.index(points)  # under the point: the point and the joint stay in view
    doubtful = [lm for lm in widget.view.landmarks if lm.doubtful and lm.kind == "prediction"]
    np.testing.assert_allclose(sorted(map(tuple, halo.data)), sorted((lm.y, lm.x) for lm in doubtful))
    np.testing.assert_allclose(
        points.face_color[:, :3],
        [
            [int(widget.view.landmarks[i].info.color[j : j + 2], 16) / 255 for j in (1, 3, 5)]
            for i in points.features["landmark"]
        ],
        atol=1e-6,
    )
    worst = doubtful[0].info.index
    x, y = doubtful[0].x, doubtful[0].y
    index = list(points.features["landmark"]).index(worst)
    drag(points, index, y + 1.0, x + 1.0)  # corrected: a person's point has no halo
    assert len(widget.layers["doubt"].data) == len(doubtful) - 1


def test_keys_work_after_a_drop_down_in_the_dock_took_the_focus(widget, qtbot):
    from qtpy.QtCore import Qt

    window = widget.viewer.window._qt_window
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()  # Xvfb has no window manager to do it
    qtbot.waitUntil(window.isActiveWindow)
    canvas = widget.viewer.window._qt_viewer.canvas.native
    box = widget.training.versions.native
    box.setFocus()
    qtbot.waitUntil(box.hasFocus)
    box.activated.emit(0)  # a version chosen from the drop-down
    qtbot.waitUntil(canvas.hasFocus, timeout=2000)
    points = widget.layers["points"]
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    assert points.mode == "add"  # napari's own key, where napari users expect it
    qtbot.keyClick(canvas, Qt.Key.Key_3)
    assert points.mode == "select"
    widget.landmark.value = 0
    qtbot.keyClick(canvas, Qt.Key.Key_E)
    assert widget.landmark.value == 1  # and ours


def test_the_image_refits_when_the_window_is_resized_unless_zoomed(widget, qtbot):
    window = widget.viewer.window._qt_window
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    widget._fit()
    before = widget._camera().zoom
    window.resize(900, 700)
    qtbot.waitUntil(lambda: abs(widget._camera().zoom - before) > 1e-6, timeout=3000)
    shrunk = widget._camera().zoom
    assert shrunk < before  # refitted to the smaller canvas
    widget._camera().zoom = shrunk * 3  # the annotator zoomed in: a resize leaves it alone
    window.resize(1000, 800)
    qtbot.wait(300)
    assert widget._camera().zoom == pytest.approx(shrunk * 3)
    assert "0: never" in widget.training.auto_every.label  # superqt's spin box shows no special value text


def test_ctrl_z_right_after_done_reopens_the_image_no_longer_done(widget, monkeypatch):
    monkeypatch.setattr("scn_annotator.plugins._widget.show_info", lambda *_: None)
    image = widget.view.record.id
    widget.mark_done()
    assert widget.view.record.id != image and widget.session.project.image(image).status == "done"
    widget.undo()
    assert widget.view.record.id == image and widget.view.record.status == "new"
    assert not widget.session.project.annotations.of(image)  # the proposals D accepted are taken back
    row = widget._table_ids.index(image)
    assert widget.table.native.item(row, 1).text() == "new"
