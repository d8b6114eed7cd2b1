"""Durability under SIGKILL and two writing processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from select import select as wait_readable

import numpy as np
import pytest
from sqlalchemy import func, select, text

from scn_annotator.db.models import Annotation, Event, ImagePrediction, Prediction
from scn_annotator.db.records import ScoreRecord
from scn_annotator.db.store import Project

FORK = mp.get_context("fork")


def _location(project: Project, backend: str | None):
    return backend or project.data_dir


def _writer(location, run: int, ack_fd: int) -> None:
    """Save corrections forever, acknowledging each one after the call returned."""
    project = Project.open(location, user=f"run{run}")
    i = 0
    while True:
        image = f"hand{i % 24:03d}"
        x = float((run * 7 + i) % 250)
        project.annotations.set(image, i % 15, x, float(i % 300), author=f"run{run}-{i}")
        os.write(ack_fd, f"{run}-{i} {image} {i % 15} {x}\n".encode())
        i += 1


def _kill_repeatedly(location, kills: int, writer=_writer, seed: int = 0) -> list[str]:
    """Start ``writer`` and SIGKILL it, ``kills`` times; the lines it acknowledged, in order."""
    acked: list[str] = []
    rng = random.Random(seed)
    for run in range(kills):
        read_fd, write_fd = os.pipe()
        child = FORK.Process(target=writer, args=(location, run, write_fd))
        child.start()
        os.close(write_fd)
        # Kill at a random moment after the child has saved something: opening a
        # connection takes longer on a loaded machine, and a kill before the first
        # write would test nothing.
        ready, _, _ = wait_readable([read_fd], [], [], 60.0)
        data = os.read(read_fd, 65536) if ready else b""
        time.sleep(rng.uniform(0.0, 0.1))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        while chunk := os.read(read_fd, 65536):
            data += chunk
        os.close(read_fd)
        acked += [line for line in data.decode().splitlines() if line]
    return acked


@pytest.mark.parametrize("kills", [200])
def test_every_acknowledged_correction_survives_sigkill(loaded, backend, kills):
    location = _location(loaded, backend)
    kills = kills if backend is None else kills // 2  # a PostgreSQL connection takes longer to open
    acked = _kill_repeatedly(location, kills)
    assert len(acked) >= kills  # every child saved at least one correction before its kill
    with loaded.db.read() as s:
        authors = set(s.scalars(select(Event.author)))
        events = s.execute(select(Event).order_by(Event.id)).scalars().all()
        annotations = {(a.image_id, a.landmark_id): a for a in s.scalars(select(Annotation))}
        if loaded.db.is_sqlite:
            assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    missing = [line for line in acked if line.split()[0] not in {a.removeprefix("run") for a in authors}]
    assert not missing, f"{len(missing)} acknowledged corrections lost, first: {missing[:3]}"
    # consistent: every annotation is what its latest event says
    latest = {}
    for e in events:
        latest[(e.image_id, e.landmark_id)] = e
    assert set(latest) == set(annotations)
    for key, a in annotations.items():
        e = latest[key]
        assert (a.x, a.y, a.state.value, a.author) == (e.new_x, e.new_y, e.new_state, e.author)


def _corrections(location, count: int, start: mp.Event, result: mp.Queue) -> None:
    """An annotator correcting proposals it read a while ago (the worker re-predicts meanwhile)."""
    project = Project.open(location, user="annotator")
    start.wait()
    seen: dict[str, list] = {}  # the proposals on screen, per image, refreshed now and then
    try:
        for i in range(count):
            image = f"hand{i % 24:03d}"
            if image not in seen or i % 97 == 0:
                shown = project.predictions.latest(image)
                seen[image] = shown.prediction_ids if shown is not None else [None] * 15
            project.annotations.set(image, i % 15, float(i % 250), 1.0 + (i // 250), prediction_id=seen[image][i % 15])
        result.put(("ok", count))
    except Exception as exc:
        result.put(("error", repr(exc)))


def _predictions(location, version: int, count: int, start: mp.Event, result: mp.Queue) -> None:
    project = Project.open(location, user="worker")
    start.wait()
    rng = np.random.default_rng(1)
    try:
        for i in range(count):
            points = rng.uniform(0, 200, (15, 2))
            project.predictions.store(
                version,
                f"hand{i % 24:03d}",
                points,
                rng.uniform(0, 3, 15),
                scores=[ScoreRecord("disagreement", float(i))],
            )
        result.put(("ok", count))
    except Exception as exc:
        result.put(("error", repr(exc)))


def test_app_and_worker_write_at_once_without_errors_or_lost_rows(loaded, backend, tmp_path):
    location = _location(loaded, backend)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"w")
    version = loaded.models.register(ckpt, make_current=True)
    start, result = FORK.Event(), FORK.Queue()
    n_corrections, n_predictions = 2000, 600
    procs = [
        FORK.Process(target=_corrections, args=(location, n_corrections, start, result)),
        FORK.Process(target=_predictions, args=(location, version, n_predictions, start, result)),
    ]
    for p in procs:
        p.start()
    start.set()
    outcomes = [result.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    with loaded.db.read() as s:
        edits = s.scalar(select(func.count()).select_from(Event).where(Event.kind == "edit"))
        runs = s.scalar(select(func.count()).select_from(ImagePrediction))
        latest = s.scalar(
            select(func.count()).select_from(ImagePrediction).where(ImagePrediction.superseded.is_(False))
        )
        points = s.scalar(select(func.count()).select_from(Prediction))
        annotations = s.scalar(select(func.count()).select_from(Annotation))
    assert edits == n_corrections  # every call changed its landmark: every one has its event
    assert runs == n_predictions and points == n_predictions * 15  # every run kept, complete
    assert latest == 24  # one latest run per image
    assert annotations == len({(i % 24, i % 15) for i in range(n_corrections)})
    with loaded.db.read() as s:  # every recorded origin is a proposal of that very image and landmark
        origins = s.execute(
            select(Annotation.image_id, Annotation.landmark_id, ImagePrediction.image_id, Prediction.landmark_id)
            .join(Prediction, Annotation.prediction_id == Prediction.id)
            .join(ImagePrediction, Prediction.run_id == ImagePrediction.id)
        ).all()
    assert origins and all(a == c and b == d for a, b, c, d in origins)
    assert loaded.predictions.latest("hand005").scores["disagreement"].value == max(
        i for i in range(n_predictions) if i % 24 == 5
    )


def _reader(location, reader: str, count: int, start: mp.Event, result: mp.Queue) -> None:
    """A reader saving their own points on the same three images the other reader is reading."""
    project = Project.open(location, user=reader)
    start.wait()
    try:
        for i in range(count):
            project.readings.set(f"hand{i % 3:03d}", i % 15, float(i % 200), float(len(reader)), reader=reader)
        result.put(("ok", reader))
    except Exception as exc:
        result.put(("error", repr(exc)))


def test_two_readers_saving_the_same_image_at_once_lose_nothing(loaded, backend):
    location = _location(loaded, backend)
    start, result = FORK.Event(), FORK.Queue()
    count = 450  # each (image, landmark) of three images ten times
    procs = [FORK.Process(target=_reader, args=(location, r, count, start, result)) for r in ("ann", "bernadette")]
    for p in procs:
        p.start()
    start.set()
    outcomes = [result.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    tables = loaded.readings.tables()
    assert sorted(tables) == ["ann", "bernadette"]
    last = {(i % 3, i % 15): float(i % 200) for i in range(count)}  # each reader's final write per point
    for reader, table in tables.items():
        assert sorted(table.points) == ["hand000", "hand001", "hand002"]
        for (image, landmark), x in last.items():
            assert tuple(table.points[f"hand{image:03d}"][landmark]) == (x, float(len(reader)))


def _reading_writer(location, run: int, ack_fd: int) -> None:
    """Each (image, landmark) once per run, x = the run: a stored x below an acknowledged one is a lost write."""
    project = Project.open(location, user="reader")
    for i in range(24 * 15):
        project.readings.set(f"hand{i % 24:03d}", i % 15, float(run), float(i % 250), reader="reader")
        os.write(ack_fd, f"{i % 24} {i % 15} {run} {i % 250}\n".encode())
    time.sleep(3600)


def test_every_acknowledged_reading_survives_sigkill(loaded, backend):
    """A reader's process killed again and again: each point it said was saved is there (or a later one)."""
    location = _location(loaded, backend)
    acked: dict[tuple[int, int], tuple[int, int]] = {}
    for line in _kill_repeatedly(location, 40 if backend is None else 20, _reading_writer, seed=1):
        image, landmark, x, y = (int(v) for v in line.split())
        acked[image, landmark] = (x, y)  # the later run's write wins
    points = loaded.readings.tables()["reader"].points
    lost = [
        key
        for key, (x, y) in acked.items()
        if (found := points.get(f"hand{key[0]:03d}")) is None
        or not (found[key[1]][0] > x or tuple(found[key[1]]) == (float(x), float(y)))
    ]
    assert acked and not lost, f"{len(lost)} acknowledged readings lost"
