"""Shared fixtures: generated sample data (never the real data set) and a tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest

from scn_annotator.engine.config import TrainConfig, preset

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand"


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 generated phantom radiographs (.mha, spacing 0.6 mm) with labels.csv."""
    from scn_annotator.app.sample_project import generate_sample

    root = tmp_path_factory.mktemp("sample")
    generate_sample(root, count=24, seed=3)
    return root


@pytest.fixture
def tiny_cfg() -> TrainConfig:
    """A configuration that trains in seconds on two cores."""
    return preset(
        "cpu",
        input_size=(96, 80),
        filters=8,
        sc_filters=8,
        sc_kernel=5,
        steps=60,
        batch_size=4,
        warmup_steps=10,
        validate_every=20,
        cache_factor=1.5,
        refine=None,  # the local stage has its own tests
    )


@pytest.fixture
def hand_dir() -> Path:
    if not (HAND / "all.csv").exists():
        pytest.skip(f"real data not found at {HAND} (only in the development checkout)")
    return HAND


#: A training policy that trains in seconds (for worker, session and GUI tests).
TINY = {"input_size": [64, 48], "filters": 8, "sc_filters": 8, "sc_kernel": 5, "cache_factor": 1.5, "lr": 3e-3}


def mark_done(project, truth, names, _folder: Path | None = None) -> None:
    """Import the true landmarks of ``names`` and mark those images done, as an annotator would."""
    from scn_annotator.app.sample_project import annotate_from_truth

    annotate_from_truth(project, truth.points, names)


def _new_project(folder: Path, sample_dir: Path):
    from scn_annotator.active.policy import RoundPolicy
    from scn_annotator.app.sample_project import sample_project
    from scn_annotator.io.landmark_files import read_landmarks

    truth = read_landmarks(sample_dir / "labels.csv")
    project = sample_project(folder / "p", sample_dir / "images", truth.points, sorted(truth.points)[:8], user="t")
    RoundPolicy(initial_steps=40, round_steps=20, overrides=TINY).save(project)
    return project, truth


@pytest.fixture
def tiny_policy() -> dict:
    """TrainConfig overrides for a round that takes seconds."""
    return dict(TINY)


@pytest.fixture
def annotate():
    """``annotate(project, truth, names, folder)``: import true landmarks and mark the images done."""
    return mark_done


@pytest.fixture
def labelled_project(sample_dir, tmp_path):
    """24 sample images, the first 8 annotated and done, a tiny training policy."""
    project, truth = _new_project(tmp_path, sample_dir)
    yield project, truth
    project.close()


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory, sample_dir) -> Path:
    """A project after one real round, trained once per test session."""
    from scn_annotator.app.worker import Worker

    project, _ = _new_project(tmp_path_factory.mktemp("trained"), sample_dir)
    project.jobs.enqueue("round")
    Worker(project.data_dir, device="cpu").run(once=True)
    project.close()
    return project.data_dir


@pytest.fixture
def trained(trained_template, tmp_path) -> Path:
    """A private copy of the trained project (tests may change it freely)."""
    import shutil

    return Path(shutil.copytree(trained_template, tmp_path / "trained"))
