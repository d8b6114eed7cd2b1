"""Shared fixtures: generated sample data (never the real data set) and a tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest

from scn_annotator.training import TrainConfig, preset

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand"


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 generated phantom radiographs (.mha, spacing 0.6 mm) with labels.csv."""
    from scn_annotator.sample import generate_sample

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
    )


@pytest.fixture
def hand_dir() -> Path:
    if not (HAND / "all.csv").exists():
        pytest.skip(f"real data not found at {HAND} (only in the development checkout)")
    return HAND
