"""Smoke tests on a few of the real hand radiographs (skipped where ../shared is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.app.file_operations import evaluate_files, predict_folder
from scn_annotator.engine.geometry import SpacingRule
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.training import train
from scn_annotator.io.images import SpacingSource, find_images, read_image
from scn_annotator.io.landmark_files import read_landmarks

pytestmark = pytest.mark.real_data
RULE = SpacingRule(1, 5, 50.0)


def test_real_files_read_with_the_expected_geometry(hand_dir):
    paths = find_images(hand_dir / "images")
    assert len(paths) == 96
    table = read_landmarks(hand_dir / "all.csv")
    assert table.num_landmarks == 37 and len(table.points) == 96
    mha = [p for p in paths if p.suffix == ".mha"]
    assert len(mha) == 5
    for path in mha + [p for p in paths if p.suffix == ".jpg"][:3]:
        image = read_image(path)
        assert image.pixels.ndim == 2 and image.pixels.shape[0] > 1000
        points = table.points[image.id]
        w, h = image.size
        assert (points[:, 0] < w).all() and (points[:, 1] < h).all()
        if path.suffix == ".mha":  # 3-D with one slice, spacing = the 50 mm convention
            assert image.spacing_source is SpacingSource.HEADER
            assert image.spacing[0] == pytest.approx(RULE.spacing(points), rel=0.01)
        else:
            assert image.spacing is None


def test_pipeline_runs_on_real_radiographs(hand_dir, tiny_cfg, tmp_path):
    from scn_annotator.engine.data import Normalisation, build_samples, labelled_images, match_images

    table = read_landmarks(hand_dir / "all.csv")
    paths = find_images(hand_dir / "images")
    pairs, missing = match_images(paths, table)
    assert not missing
    cfg = tiny_cfg.replace(input_size=(128, 96), steps=10)
    samples = build_samples(
        labelled_images(pairs[:4], table), cfg.input_size, Normalisation(*cfg.normalisation), cfg.cache_factor, RULE
    )
    assert all(s.spacing_source is SpacingSource.LANDMARKS for s in samples)
    assert all(float(s.input.min()) >= -1 and float(s.input.max()) <= 1 for s in samples)
    train(cfg, samples[:3], samples[3:], table.names, tmp_path / "m.pt", device="cpu")
    folder = tmp_path / "few"
    folder.mkdir()
    for path, _ in pairs[:2]:
        (folder / path.name).symlink_to(path)
    done, failed = predict_folder(Predictor.from_checkpoint(tmp_path / "m.pt"), folder, tmp_path / "p.csv")
    assert len(done) == 2 and not failed
    report = evaluate_files(tmp_path / "p.csv", hand_dir / "all.csv", spacing_rule=RULE)
    assert report.unit == "mm" and len(report.image_ids) == 2
    assert np.isfinite(report.errors).all()
