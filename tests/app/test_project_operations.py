"""Training on a project: which model becomes current, and on which images that is decided."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import scn_annotator.app.project_operations as project_ops
from scn_annotator.engine.data import split_samples
from scn_annotator.engine.trainer import TrainResult


def test_split_without_a_current_model_is_the_seeded_permutation():
    ids = [str(i) for i in range(20)]
    train, val = split_samples(ids, 0.2, seed=7)
    assert len(val) == 4 and sorted(train + val, key=int) == ids
    assert split_samples(ids, 0.2, seed=7) == (train, val)


def test_split_keeps_the_current_models_validation_images_and_avoids_its_training_images():
    old = [str(i) for i in range(8)]
    _, old_val = split_samples(old, 0.15, seed=0)
    old_train = [i for i in old if i not in old_val]
    grown = [str(i) for i in range(24)]  # three times the images, as in a second round
    train, val = split_samples(grown, 0.15, seed=0, held_out=old_val, trained=old_train)
    assert len(val) == 4
    assert set(old_val) <= set(val)
    assert not set(val) & set(old_train)  # enough new images: none the current model trained on
    assert set(train) | set(val) == set(grown)


def _fake_train(checkpoint: Path, reported: float):
    """A ``train`` that writes ``checkpoint`` as its model and reports ``reported`` as its validation."""

    def train(cfg, train_s, val_s, names, out, **_kwargs):
        shutil.copyfile(checkpoint, out)
        return TrainResult(
            steps=1,
            best_step=1,
            best_val_error=reported,
            unit="mm",
            seconds=0.1,
            stopped="finished",
            checkpoint=Path(out),
        )

    return train


@pytest.fixture
def two_models(labelled_project, tiny_cfg, tmp_path):
    """A project whose current model is a briefly trained one, and a file of a better (longer trained) one."""
    project, _truth = labelled_project
    weak = project_ops.train_project(project, tiny_cfg.replace(steps=2, validate_every=1))
    assert weak.made_current
    strong = tmp_path / "strong.pt"
    from scn_annotator.engine.inference import checkpoint_error

    out = project_ops.train_project(project, tiny_cfg.replace(steps=120), init_from=None)
    shutil.copyfile(project.models.file(project.models.get(out.version_id)), strong)
    project.models.make_current(weak.version_id)
    weak_file = project.models.file(project.models.get(weak.version_id))
    samples = _validation_samples(project, tiny_cfg)
    assert checkpoint_error(strong, samples)[0] < checkpoint_error(weak_file, samples)[0]
    return project, weak_file, strong


def _validation_samples(project, cfg):
    from scn_annotator.engine.data import Normalisation, build_samples

    items = [item for _, item in project_ops.labelled_images(project)]
    return build_samples(items, cfg.input_size, Normalisation(*cfg.normalisation), cfg.cache_factor)


def test_a_better_model_becomes_current_whatever_its_training_loop_reported(two_models, tiny_cfg, monkeypatch):
    """The training loop's figure (the coarse stage, before the local one) is not what decides."""
    project, _, strong = two_models
    monkeypatch.setattr(project_ops, "train", _fake_train(strong, reported=1e6))
    out = project_ops.train_project(project, tiny_cfg)
    assert out.made_current, out.verdict()
    assert out.val_error is not None and out.previous_error is not None and out.val_error < out.previous_error
    stored = project.models.current()
    assert stored.id == out.version_id
    assert stored.metrics.val_error == pytest.approx(out.val_error)  # what the panel and status show
    assert stored.metrics.training_val_error == 1e6


def test_a_worse_model_is_refused_whatever_its_training_loop_reported(two_models, tiny_cfg, monkeypatch):
    project, weak, _strong = two_models
    project.models.make_current(project.models.all()[-1].id)  # the strong one is current
    monkeypatch.setattr(project_ops, "train", _fake_train(weak, reported=0.0))
    out = project_ops.train_project(project, tiny_cfg)
    assert not out.made_current, out.verdict()
    assert out.val_error > out.previous_error
    assert "is worse and was kept, not made current" in out.verdict()


def test_the_same_model_retrained_is_not_refused(labelled_project, tiny_cfg, monkeypatch):
    """Equal on the same images: the newer model (trained on more) becomes current."""
    project, _ = labelled_project
    first = project_ops.train_project(project, tiny_cfg.replace(steps=20))
    monkeypatch.setattr(
        project_ops, "train", _fake_train(project.models.file(project.models.get(first.version_id)), reported=1e6)
    )
    out = project_ops.train_project(project, tiny_cfg)
    assert out.made_current and out.val_error == pytest.approx(out.previous_error)
    assert out.compared_on >= 1
