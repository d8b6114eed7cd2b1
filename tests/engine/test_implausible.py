"""Labels no column can have: found along the chain, set aside for training, each one named."""

from __future__ import annotations

import numpy as np
import torch

from scn_annotator.app.file_operations import load_training_data
from scn_annotator.app.sample_spine import generate_spine_sample
from scn_annotator.engine.config import preset
from scn_annotator.engine.implausible import implausible_objects
from scn_annotator.engine.trainer import Trainer
from scn_annotator.io.landmark_files import read_landmarks, write_landmarks


def _bent_column(m: int = 17, step: float = 12.0, bend: float = 0.9) -> np.ndarray:
    """Centres along an arc that turns by ``bend`` radians in all, the steps lengthening downwards as a
    real column's do (the first about half the last)."""
    lengths = step * np.linspace(0.6, 1.3, m - 1)
    angles = np.pi / 2 + np.linspace(-bend / 2, bend / 2, m - 1)
    steps = np.stack([np.cos(angles), np.sin(angles)], axis=1) * lengths[:, None]
    start = np.array([40.0, 20.0])
    return np.vstack([start, start + np.cumsum(steps, axis=0)])


def test_a_true_column_bent_or_with_a_gap_has_nothing_out_of_line():
    column = _bent_column()
    assert not implausible_objects(column).any()
    gapped = column.copy()
    gapped[[0, 8]] = np.nan  # missing labels are not judged, nor do they make their neighbours look wrong
    assert not implausible_objects(gapped).any()


def test_the_last_vertebra_labelled_at_the_top_is_out_of_line_and_only_it():
    column = _bent_column()
    column[-1] = column[0] + [5.0, -8.0]  # as in 20 of the real spine set's radiographs: L5 above T1
    assert np.flatnonzero(implausible_objects(column)).tolist() == [16]
    column = _bent_column()
    column[7] += [60.0, 0.0]  # one vertebra far to the side
    assert np.flatnonzero(implausible_objects(column)).tolist() == [7]


def test_two_vertebrae_given_one_place_are_both_out_of_line():
    column = _bent_column()
    column[-1] = column[-2] + [0.5, 0.3]  # L5 a copy of L4: which of the two is right, nothing says
    assert np.flatnonzero(implausible_objects(column)).tolist() == [15, 16]


def test_training_sets_such_labels_aside_and_names_them(tmp_path):
    labels = generate_spine_sample(tmp_path, count=6, seed=2, vertebrae=8)
    table = read_landmarks(labels)
    slipped = sorted(table.points)[0]
    points = {k: v.copy() for k, v in table.points.items()}
    points[slipped][-4:] = points[slipped][:4] - [0.0, 30.0]  # the last vertebra's corners above the first's
    write_landmarks(labels, table.names, points)
    cfg = preset("cpu", input_size=(96, 48), filters=4, sc_filters=4, sc_kernel=3, steps=1, refine=None)
    data = load_training_data(tmp_path / "images", labels, cfg, val_fraction=0.0)
    trainer = Trainer(data.config or cfg, data.train, [], data.names, None, torch.device("cpu"))
    assert trainer.objects is not None
    assert len(trainer.set_aside) == 1 and slipped in trainer.set_aside[0] and "V8" in trainer.set_aside[0]
    sample = next(s for s in trainer.member_samples if s.id == slipped)
    assert np.isnan(sample.points[-4:]).all() and not np.isnan(sample.points[:-4]).any()
    # the chain prior's last step is the true columns' (about an eighth of the height), not the slip's
    assert np.linalg.norm(trainer.objects.chain.steps[-1]) < 0.25 * cfg.input_size[0]
