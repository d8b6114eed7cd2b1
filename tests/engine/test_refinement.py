from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scn_annotator.app.file_operations import load_training_data
from scn_annotator.app.sample_spine import render_spine, spine_names
from scn_annotator.engine.checkpoint import load_checkpoint
from scn_annotator.engine.config import RefineConfig, TrainConfig, preset
from scn_annotator.engine.data import BACKGROUND, Normalisation, cache_size
from scn_annotator.engine.geometry import fit_transform
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.refinement import extract_patches, fit_shape, patch_targets
from scn_annotator.engine.refiner_training import _turn_judgement, train_refiner
from scn_annotator.engine.trainer import Trainer
from scn_annotator.engine.training import train

REFINE = RefineConfig(patch=16, filters=16, levels=3, steps=300, per_step=100.0, patches=64, images=8)


@pytest.fixture(scope="module")
def refined(sample_dir):
    """A refiner trained on the phantoms' caches (the coarse SCN barely trained: only the local stage matters)."""
    cfg = preset("cpu", input_size=(64, 48), filters=8, sc_filters=8, sc_kernel=5, steps=10, refine=REFINE)
    data = load_training_data(sample_dir / "images", sample_dir / "labels.csv", cfg, val_fraction=0.2)
    trainer = Trainer(cfg, data.train, data.val, data.names, None, torch.device("cpu"))
    return data, train_refiner(trainer)


def test_a_patch_is_centred_on_its_point_and_background_outside():
    image = torch.zeros(40, 50)
    image[10, 30] = 1.0  # x = 30, y = 10
    patch = extract_patches(image, torch.tensor([[30.0, 10.0], [-20.0, -20.0]]), 9)
    assert patch.shape == (2, 1, 9, 9)
    assert patch[0, 0, 4, 4] == pytest.approx(1.0) and patch[0, 0].sum() == pytest.approx(1.0)
    assert torch.all(patch[1] == BACKGROUND)  # wholly outside the image
    # a linear map of 2x: patch pixel u samples centre + 2u, so the bright pixel is one patch pixel away
    shifted = extract_patches(image, torch.tensor([[28.0, 10.0]]), 9, torch.eye(2)[None] * 2)
    assert shifted[0, 0, 4, 5] == pytest.approx(1.0)


def test_targets_peak_at_the_truth():
    t = patch_targets(torch.tensor([[3.0, 5.0]]), 12, 1.5)
    y, x = divmod(int(t[0].argmax()), 12)
    assert (x, y) == (3, 5) and float(t.max()) == pytest.approx(1.0)


def test_the_local_stage_pulls_points_that_are_a_few_pixels_off_onto_the_landmark(refined):
    data, result = refined
    refiner = result.refiner
    rng = np.random.default_rng(0)
    before, after = [], []
    for sample in data.val:
        truth = sample.cache_points.numpy().astype(np.float64)
        angle = rng.uniform(0, 2 * np.pi, len(truth))
        off = 3.0 * np.stack([np.cos(angle), np.sin(angle)], 1)  # 3 fine pixels off, every direction
        moved = refiner.refine(sample.cache, truth + off)
        before.append(np.linalg.norm(off, axis=1))
        after.append(np.linalg.norm(moved - truth, axis=1))
    assert np.mean(after) < 0.4 * np.mean(before), (np.mean(before), np.mean(after))
    # points it is told to skip, and missing ones, stay exactly where they were
    points = data.val[0].cache_points.numpy().astype(np.float64) + 2.0
    points[0] = np.nan
    skip = np.zeros(len(points), bool)
    skip[1] = True
    moved = refiner.refine(data.val[0].cache, points, skip)
    assert np.isnan(moved[0]).all() and np.array_equal(moved[1], points[1])


def test_train_keeps_the_refiner_only_when_it_helps_and_prediction_uses_it(sample_dir, tmp_path):
    cfg = preset(
        "cpu",
        input_size=(96, 80),
        filters=8,
        sc_filters=8,
        sc_kernel=5,
        steps=120,
        validate_every=40,
        lr=3e-3,
        refine=REFINE.replace(steps=150),
    )
    data = load_training_data(sample_dir / "images", sample_dir / "labels.csv", cfg, val_fraction=0.2)
    result = train(cfg, data.train, data.val, data.names, tmp_path / "m.pt", device="cpu")
    refine = result.refine
    assert refine is not None and refine.steps == 150
    assert refine.val_error_coarse is not None and refine.val_error_refined is not None
    assert "local refinement" in result.describe()
    payload = load_checkpoint(tmp_path / "m.pt")
    assert refine.kept == ("refiner" in payload)
    assert TrainConfig.from_dict(payload["train_config"]).refine == cfg.refine  # the config round-trips
    predictor = Predictor.from_checkpoint(tmp_path / "m.pt", device="cpu")
    errors = [
        np.linalg.norm((predictor.predict(s.path).points - s.points) * np.asarray(s.spacing), axis=1) for s in data.val
    ]
    expected = refine.val_error_refined if refine.kept else refine.val_error_coarse
    assert np.mean(errors) == pytest.approx(expected, rel=1e-3)
    if refine.kept:
        assert payload["metrics"]["val_error"] == pytest.approx(refine.val_error_refined)
        assert payload["metrics"]["val_error_coarse"] == pytest.approx(refine.val_error_coarse)


def test_a_short_run_gets_a_short_local_stage(sample_dir):
    cfg = preset("cpu", input_size=(64, 48), filters=8, sc_filters=8, sc_kernel=5, steps=40)
    assert cfg.refine is not None  # the preset has one
    data = load_training_data(sample_dir / "images", sample_dir / "labels.csv", cfg, val_fraction=0.2)
    trainer = Trainer(cfg, data.train, data.val, data.names, None, torch.device("cpu"))
    assert train_refiner(trainer).steps == 22  # 0.55 refinement steps per coarse step


def test_conditioning_refines_each_landmark_position_once_and_gives_what_a_fresh_refinement_gives(refined):
    """The conditioner remembers the local stage's answer per (landmark, coarse position) within an image."""
    data, result = refined
    cfg = preset("cpu", input_size=(64, 48), filters=8, sc_filters=8, sc_kernel=5, steps=10)
    trainer = Trainer(cfg, data.train, data.val, data.names, None, torch.device("cpu"))
    predictor = Predictor(trainer.model.eval(), data.names, cfg.input_size, Normalisation(*cfg.normalisation), "cpu")
    predictor.refiner = result.refiner.eval()
    predictor.fine_size = cache_size(cfg.input_size, cfg.cache_factor)
    runs = []
    plain_refine = predictor.refine

    def counted(fine, points, skip=None):
        runs.append(skip)
        return plain_refine(fine, points, skip)

    predictor.refine = counted  # type: ignore[method-assign]
    sample = data.val[0]
    conditioner = predictor.conditioner(sample.path)
    hints = np.full((len(data.names), 2), np.nan)
    for k in range(4):
        hints[k] = sample.points[k] + 0.5
        got = conditioner.predict(hints).points
        before = len(runs)
        again = conditioner.predict(hints).points
        assert len(runs) == before  # the same coarse positions again: the local stage does not run
        np.testing.assert_array_equal(again, got)
        fresh = predictor.conditioner(sample.path).predict(hints).points  # a new image session refines all
        np.testing.assert_allclose(got, fresh, atol=1e-4)
        np.testing.assert_array_equal(got[: k + 1], hints[: k + 1])
        assert all(skip[: k + 1].all() for skip in runs[before:])  # confirmed landmarks are never refined


def test_an_objects_shape_is_fitted_to_the_members_stage_2_found():
    template = np.array([[-4.0, -2.0], [4.0, -2.0], [-4.0, 2.0], [4.0, 2.0]])
    found = template * [1.5, 0.5] + [1.0, -3.0]  # wider, flatter and moved: stretched and shifted per axis
    noisy = found.copy()
    noisy[3] += [40.0, 40.0]  # a corner it did not find (NaN-free but not clear): not used
    clear = np.array([True, True, True, False])
    np.testing.assert_allclose(fit_shape(template, noisy, clear), found, atol=1e-9)
    two = np.array([True, False, False, True])  # too few to stretch: the mean shape, shifted
    np.testing.assert_allclose(fit_shape(template, found, two), template + (found[[0, 3]] - template[[0, 3]]).mean(0))
    assert fit_shape(template, found, np.zeros(4, dtype=bool)) is None
    # a tilted object: kept at the chain's tilt unless told to take its own turn
    angle = 0.2
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    tilted = template @ rot + [2.0, 1.0]
    np.testing.assert_allclose(fit_shape(template, tilted, np.ones(4, dtype=bool), turn=True), tilted, atol=1e-9)
    level = fit_shape(template, tilted, np.ones(4, dtype=bool))
    np.testing.assert_allclose(level.mean(axis=0), tilted.mean(axis=0), atol=1e-9)  # moved, not turned
    assert abs(level[1, 1] - level[0, 1]) < 1e-9  # the top edge stays level in the object's frame


def test_a_spines_shape_fit_is_judged_by_its_cobb_angles_any_other_layout_by_its_points():
    """Corners each a little off tilt the endplates (Cobb SMAPE) more than a whole column moved by 3 px does."""
    rng = np.random.default_rng(3)
    samples, jittered, moved = [], [], []
    for k in range(4):
        image, corners = render_spine(rng)
        transform = fit_transform((image.shape[1], image.shape[0]), (192, 80))
        samples.append(SimpleNamespace(id=f"s{k}", points=corners, transform=transform))
        jittered.append(corners + rng.normal(0, 1.5, corners.shape))  # ~1.9 px off, endplates tilted
        moved.append(corners + np.array([3.0, 0.0]))  # 3 px off, every angle kept
    names = spine_names(8)
    assert _turn_judgement(names, samples, moved, 3.0) < _turn_judgement(names, samples, jittered, 1.9)
    assert _turn_judgement(names, samples, moved, 3.0) == pytest.approx(0.0, abs=1e-6)
    hand = [f"p{k}" for k in range(32)]  # not a spine: the point error decides
    assert _turn_judgement(hand, samples, jittered, 1.9) == 1.9
