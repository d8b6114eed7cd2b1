"""Objects: which landmarks belong together, their mean shape, and the two stages they are learned in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scn_annotator.app.file_operations import load_training_data
from scn_annotator.app.sample_spine import generate_spine_sample, spine_names
from scn_annotator.engine.config import RefineConfig, preset
from scn_annotator.engine.data import LabelledImage
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.model_file import ModelFile
from scn_annotator.engine.objects import LandmarkObjects, ObjectLayout, centre_span, chain_frames, crowding
from scn_annotator.engine.trainer import Trainer
from scn_annotator.engine.training import fit_input_to_data, train
from scn_annotator.io.images import read_image_info
from scn_annotator.io.landmark_files import read_landmarks


def test_objects_come_from_shared_prefixes_of_a_repeated_structure():
    objects = LandmarkObjects.infer(spine_names(3))
    assert objects.names == ("V1", "V2", "V3")
    assert objects.members == ((0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11))
    assert objects.grouped
    # no separator, or one lone group: every landmark its own object, as before objects existed
    assert not LandmarkObjects.infer([f"L{i}" for i in range(5)]).grouped
    assert not LandmarkObjects.infer(["left_knee", "left_hip", "nose"]).grouped


def test_the_names_file_overrides_the_inferred_objects():
    names = ["a1", "a2", "b1", "V1_tl", "V1_tr", "V2_tl", "V2_tr"]
    objects = LandmarkObjects.infer(names, given=["A", "A", None, None, None, "V2_tl", None])
    assert objects.names[0] == "A" and objects.members[0] == (0, 1)
    assert (5,) in objects.members  # told to stand alone
    assert {(3,), (4,), (6,)} <= set(objects.members)  # V2_tr left without a partner: no repeated pattern


def test_a_tilted_object_is_placed_tilted_by_its_template():
    objects = LandmarkObjects.infer(spine_names(3))
    box = np.array([[-4, -2], [4, -2], [-4, 2], [4, 2]], dtype=float)
    upright = np.concatenate([box + np.array([0.0, 10.0 * v]) for v in range(3)])
    layout = ObjectLayout.fit(objects, [upright])
    assert layout.gap == pytest.approx(10.0)
    np.testing.assert_allclose(layout.place(objects.centres(upright)), upright, atol=1e-9)
    angle = 0.3  # the whole chain turned: the corners turn with it
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned = upright @ rot.T
    np.testing.assert_allclose(layout.place(objects.centres(turned)), turned, atol=1e-9)
    # a confirmed corner implies its object's centre
    hints = np.full_like(turned, np.nan)
    hints[5] = turned[5] + [1.0, 0.0]
    centres = layout.centre_hints(hints, chain_frames(objects.centres(turned)))
    np.testing.assert_allclose(centres[1], objects.centres(turned)[1] + [1.0, 0.0], atol=1e-9)
    assert np.isnan(centres[[0, 2]]).all()


def test_the_template_is_placed_at_the_size_of_the_column_it_is_placed_on():
    objects = LandmarkObjects.infer(spine_names(6))
    box = np.array([[-4, -2], [4, -2], [-4, 2], [4, 2]], dtype=float)
    column = np.concatenate([box + np.array([0.0, 10.0 * v]) for v in range(6)])
    layout = ObjectLayout.fit(objects, [column, column + 5.0])  # a chain prior needs each step twice
    assert layout.chain is not None
    larger = 1.3 * column + 7.0  # a larger patient, or one framed closer
    assert layout.size(objects.centres(larger)) == pytest.approx(1.3)
    np.testing.assert_allclose(layout.place(objects.centres(larger)), larger, atol=1e-9)
    # in pixels twice the network's, the same size
    assert layout.size(2 * objects.centres(larger), scale=2.0) == pytest.approx(1.3)
    # a skipped vertebra (one step twice as long) does not make the column look larger
    skipped = objects.centres(larger)
    skipped[3:] += skipped[1] - skipped[0]
    assert layout.size(skipped) == pytest.approx(1.3)
    # a confirmed corner implies its vertebra's centre at the column's size
    hints = np.full_like(larger, np.nan)
    hints[9] = larger[9]
    centres = layout.centre_hints(hints, chain_frames(objects.centres(larger)), layout.size(objects.centres(larger)))
    np.testing.assert_allclose(centres[2], objects.centres(larger)[2], atol=1e-9)
    # too few steps to judge, or no chain prior (model files from before): the template as it was learned
    few = objects.centres(larger)
    few[3:] = np.nan  # two steps
    assert layout.size(few) == 1.0
    assert ObjectLayout(objects, layout.template, layout.gap).size(objects.centres(larger)) == 1.0


def test_generated_spines_are_crowded_and_generated_hands_are_not(sample_dir, tmp_path):
    spines = read_landmarks(generate_spine_sample(tmp_path, count=4))
    hands = read_landmarks(sample_dir / "labels.csv")
    spine_objects, hand_objects = LandmarkObjects.infer(spines.names), LandmarkObjects.infer(hands.names)
    assert spine_objects.grouped and hand_objects.grouped  # both have prefixes
    assert crowding(spine_objects, list(spines.points.values())) < 0.5
    assert crowding(hand_objects, list(hands.points.values())) > 0.8  # fingers: no better apart than joints
    cfg = preset("cpu", input_size=(64, 48), filters=4, sc_filters=4, sc_kernel=3, steps=1, refine=None)
    data = load_training_data(sample_dir / "images", sample_dir / "labels.csv", cfg, val_fraction=0.2)
    assert Trainer(cfg, data.train, data.val, data.names, None, torch.device("cpu")).objects is None


def _fitted(labels, names=None):
    table = read_landmarks(labels)
    items = [LabelledImage(next(labels.parent.glob(f"images/{k}.*")), table.points[k], k) for k in sorted(table.points)]
    objects = LandmarkObjects.infer(names or table.names)
    return fit_input_to_data(preset("cpu"), items, objects), items, objects


@pytest.mark.parametrize(("vertebrae", "levels"), [(17, 6), (12, 5), (6, 4)])
def test_an_object_layout_gets_the_fewest_levels_that_see_its_whole_column(tmp_path, vertebrae, levels):
    labels = generate_spine_sample(tmp_path, count=6, seed=4, vertebrae=vertebrae)
    cfg, items, objects = _fitted(labels, spine_names(vertebrae))
    network, (height, width) = cfg.network, cfg.input_size
    assert network.levels == levels and height % network.size_multiple == width % network.size_multiple == 0
    scales = [min(height / h, width / w) for w, h in (read_image_info(i.path).size for i in items)]
    span = np.median([centre_span(objects.centres(i.points)) * s for i, s in zip(items, scales)])
    assert network.replace(levels=levels - 1).local_view < span <= network.local_view
    assert (f"{levels} levels" in cfg.input_rule["text"]) == (levels != preset("cpu").network.levels)
    deeper = levels > preset("cpu").network.levels  # a deeper net pays for its levels with a narrower first one
    assert network.first_filters == (network.filters // 2 if deeper else None)


def test_a_layout_without_objects_keeps_the_presets_levels(sample_dir):
    cfg, _, _ = _fitted(sample_dir / "labels.csv")
    assert not cfg.input_rule.get("objects") and cfg.network == preset("cpu").network.replace(
        num_landmarks=cfg.network.num_landmarks
    )


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Generated spines of 12 look-alike vertebrae, and one model of each kind trained on them."""
    root = tmp_path_factory.mktemp("chain")
    generate_spine_sample(root, count=40, seed=1, vertebrae=12)
    models = {}
    for objects in (True, False):
        cfg = preset(
            "cpu", input_size=(96, 48), filters=16, sc_filters=16, sc_kernel=5, steps=300, warmup_steps=20,
            validate_every=50, cache_factor=2.0, hint_rate=0.0, objects=objects, sc_downsample=8,
            refine=RefineConfig(filters=16, steps=400, per_step=2.0, patch=16),
        )  # fmt: skip
        data = load_training_data(root / "images", root / "labels.csv", cfg, val_fraction=0.25)
        out = root / f"model-{objects}.pt"
        train(cfg, data.train, data.val, data.names, out, device="cpu")
        models[objects] = out
    return data, models


def _errors(data, model):
    predictor = Predictor.from_checkpoint(model, device="cpu")
    errors, swapped = [], 0
    for s in data.val:
        pred = predictor.predict(s.path).points
        errors.append(np.linalg.norm(pred - s.points, axis=1))
        truth_c, pred_c = s.points.reshape(-1, 4, 2).mean(1), pred.reshape(-1, 4, 2).mean(1)
        swapped += sum(int(np.argmin(np.linalg.norm(truth_c - c, axis=1)) != k) for k, c in enumerate(pred_c))
    return np.concatenate(errors), swapped


def test_two_stages_place_look_alike_vertebrae_where_one_stage_confuses_neighbours(chain):
    data, models = chain
    held = ModelFile.load(models[True])
    assert held.objects is not None and held.network.num_landmarks == 12 and held.local_stage is not None
    assert ModelFile.load(models[False]).objects is None
    two, two_swapped = _errors(data, models[True])
    one, _ = _errors(data, models[False])
    assert two_swapped == 0
    assert two.mean() < 0.6 * one.mean(), (two.mean(), one.mean())  # one stage puts corners on neighbours


def test_an_object_model_predicts_every_landmark_with_heatmaps_and_follows_a_corrected_corner(chain):
    data, models = chain
    predictor = Predictor.from_checkpoint(models[True], device="cpu")
    sample = data.val[0]
    plain = predictor.predict(sample.path, heatmaps=True, mc_passes=3)
    assert plain.points.shape == (48, 2) and plain.confidence.shape == (48,) and plain.centres.shape == (12, 2)
    assert plain.heatmaps.final.shape[0] == 48 and plain.mc_points.shape == (3, 48, 2)
    hints = np.full((48, 2), np.nan)
    hints[20] = sample.points[24]  # an annotator says vertebra 6's top-left corner is where 7's truly is
    conditioned = predictor.conditioner(sample.path).predict(hints)
    np.testing.assert_array_equal(conditioned.points[20], hints[20])
    assert np.isfinite(conditioned.points).all()
    # its three partners follow it onto that vertebra: the crop moved with the implied centre
    onto = np.linalg.norm(conditioned.points[21:24] - sample.points[25:28], axis=1)
    before = np.linalg.norm(plain.points[21:24] - sample.points[25:28], axis=1)
    assert onto.mean() < 0.5 * before.mean(), (onto, before)


def test_a_corrected_corner_moves_the_unconfirmed_ones_by_the_errors_they_are_expected_to_share(chain):
    """The training run learned how its errors go together; a corner corrected on its own vertebra moves
    every landmark of the vertebrae the conditioned pass left in place by the expected error."""
    data, models = chain
    predictor = Predictor.from_checkpoint(models[True], device="cpu")
    layout = predictor.objects
    assert layout is not None and layout.errors is not None
    sample = data.val[0]
    conditioner = predictor.conditioner(sample.path)
    plain = conditioner.predict(None).points
    hints = np.full((48, 2), np.nan)
    hints[20] = plain[20] + [0.8, -0.6]  # a small correction: the same vertebra, a little elsewhere
    conditioned = conditioner.predict(hints).points
    transform = conditioner.transform
    errors = np.zeros((48, 2))
    errors[20] = transform.to_network(hints[20:21])[0] - transform.to_network(plain[20:21])[0]
    known = np.zeros(48, dtype=bool)
    known[20] = True
    expected = transform.from_network(
        transform.to_network(plain) + layout.errors.expected(layout.objects.members, known, errors)
    )
    np.testing.assert_allclose(conditioned[21:24], expected[21:24], atol=1e-6)  # its partners
    assert np.linalg.norm(conditioned[21:24] - plain[21:24], axis=1).min() > 0


def test_a_vertebra_a_person_moves_takes_its_neighbours_along_the_column(chain):
    """Vertebra 6's corner put on vertebra 7: the chain passes through it, so 5 and 7 shift by one too."""
    data, models = chain
    predictor = Predictor.from_checkpoint(models[True], device="cpu")
    followed = 0
    for sample in data.val:
        hints = np.full((48, 2), np.nan)
        hints[20] = sample.points[24]
        centres = predictor.conditioner(sample.path).predict(hints).points.reshape(-1, 4, 2).mean(axis=1)
        truth = sample.points.reshape(-1, 4, 2).mean(axis=1)
        step = np.linalg.norm(truth[6] - truth[5])
        followed += int(all(np.linalg.norm(centres[k] - truth[k + 1]) < 0.3 * step for k in (4, 6)))
    assert followed >= len(data.val) // 2, followed
