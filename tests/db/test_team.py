"""A team on PostgreSQL: a GPU worker and an annotator's laptop share the database and nothing else."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scn_annotator.active.policy import RoundPolicy
from scn_annotator.app.sample_project import LANDMARK_NAMES, annotate_from_truth
from scn_annotator.app.worker import Worker
from scn_annotator.db import artifacts
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import import_images
from scn_annotator.engine.inference import Predictor
from scn_annotator.io.heatmap_cache import load_heatmaps
from scn_annotator.io.landmark_files import read_landmarks


def test_a_laptop_sees_the_servers_models_and_overlays_and_rolls_back(
    postgres_url, sample_dir, tmp_path, monkeypatch, tiny_policy
):
    # the GPU server: its own data folder and its own copy of the images
    server_images = shutil.copytree(sample_dir / "images", tmp_path / "server-images")
    server = Project.create(tmp_path / "server", LANDMARK_NAMES, database=postgres_url, user="server")
    import_images(server, server_images)
    truth = read_landmarks(sample_dir / "labels.csv")
    annotate_from_truth(server, truth.points, sorted(truth.points)[:8])
    RoundPolicy(initial_steps=30, round_steps=20, overrides=tiny_policy).save(server)
    assert server.shares_files
    server.jobs.enqueue("round")
    monkeypatch.setenv("SCN_DATA_DIR", str(tmp_path / "server"))
    Worker(postgres_url, device="cpu", image_root=str(server_images)).run(once=True)
    monkeypatch.delenv("SCN_DATA_DIR")
    first = server.models.current()
    assert first is not None

    # the laptop: another data folder, another image folder, the same database
    laptop_images = shutil.copytree(sample_dir / "images", tmp_path / "laptop-images")
    laptop = Project.open(postgres_url, data_dir=tmp_path / "laptop", image_root=laptop_images, user="annotator")
    assert not (tmp_path / "laptop" / first.checkpoint).exists()
    path = laptop.models.file(laptop.models.current())
    assert path.is_relative_to(tmp_path / "laptop")
    assert path.read_bytes() == server.models.file(first).read_bytes()
    image = laptop.images()[10]
    prediction = laptop.predictions.latest(image.id)
    assert prediction is not None and prediction.heatmaps
    overlay = laptop.predictions.heatmap_file(prediction)
    assert overlay is not None and overlay.is_relative_to(tmp_path / "laptop")
    heat = load_heatmaps(overlay)
    assert heat.final.shape[0] == len(LANDMARK_NAMES)
    # the laptop's own prediction with the fetched model is the server's
    again = Predictor.from_checkpoint(path, device="cpu").predict(laptop.resolve(image)).points
    assert np.allclose(again, prediction.points, atol=1e-3)

    # the server registers a newer version; the laptop sees it, then rolls back to the first
    newer = server.models.register(shutil.copy(server.models.file(first), tmp_path / "newer.pt"), make_current=True)
    assert laptop.models.current().id == newer
    assert laptop.models.file(laptop.models.current()).is_file()
    laptop.models.make_current(first.id)
    assert server.models.current().id == first.id
    assert laptop.models.file(first.id).read_bytes() == path.read_bytes()
    laptop.close()
    server.close()


def test_a_damaged_copy_in_the_database_is_refused_not_written(postgres_url, tmp_path):
    project = Project.create(tmp_path / "p", LANDMARK_NAMES, database=postgres_url)
    source = tmp_path / "weights.bin"
    source.write_bytes(np.random.default_rng(0).bytes(artifacts.CHUNK_BYTES + 1000))  # two chunks
    version = project.models.register(source)
    from sqlalchemy import update

    from scn_annotator.db.models import ArtifactChunk

    with project.db.write() as s:
        s.execute(update(ArtifactChunk).where(ArtifactChunk.seq == 1).values(data=b"x" * 1000))
    elsewhere = Project.open(postgres_url, data_dir=tmp_path / "other")
    with pytest.raises(OSError, match="damaged"):
        elsewhere.models.file(version)
    assert not (tmp_path / "other" / project.models.get(version).checkpoint).exists()
    elsewhere.close()
    project.close()


def test_a_sqlite_project_keeps_its_files_as_files(tmp_path):
    project = Project.create(tmp_path / "p", LANDMARK_NAMES)
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights")
    version = project.models.register(source)
    assert not project.shares_files
    from sqlalchemy import func, select

    from scn_annotator.db.models import Artifact

    with project.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Artifact)) == 0
    assert project.models.file(version).read_bytes() == b"weights"
    project.close()
