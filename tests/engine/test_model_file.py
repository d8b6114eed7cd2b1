"""The one model file: written and read in one place, and files of earlier versions still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scn_annotator.app.sample_project import generate_sample
from scn_annotator.engine.checkpoint import load_checkpoint, save_checkpoint
from scn_annotator.engine.config import PRESETS, RefineConfig, SCNConfig, TrainConfig
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.model_file import ModelFile, TrainingMetrics
from scn_annotator.engine.training import warm_startable
from scn_annotator.errors import CheckpointError
from scn_annotator.io.images import read_image

OLD = Path(__file__).resolve().parents[1] / "data" / "model-stop25.pt"  # written by the code of f7cb223


def test_a_model_file_written_before_the_class_existed_loads_and_predicts_as_it_did(tmp_path):
    held = ModelFile.load(OLD)
    assert held.train_config is not None
    # its training config had the architecture at the top level; it is embedded now
    assert held.train_config.network.filters == 4 and held.train_config.network.sc_kernel == 3
    assert held.network == held.train_config.network_for(len(held.landmark_names))
    assert held.local_stage is not None and held.local_stage.config.patch == 16
    assert held.metrics == TrainingMetrics(
        step=12, val_error=1.0, unit="mm", train_images=6, val_images=2, val_error_coarse=2.0
    )
    expected = json.loads(OLD.with_suffix(".points.json").read_text())
    generate_sample(tmp_path, count=2, seed=expected["sample_seed"])
    image = read_image(sorted((tmp_path / "images").iterdir())[expected["image"]])
    points = Predictor.from_checkpoint(OLD, device="cpu").predict(image).points
    # the same to a thousandth of a pixel (float arithmetic differs a little between CPUs)
    np.testing.assert_allclose(points, np.array(expected["points"]), atol=1e-3)


def test_an_old_training_state_reads_and_an_old_model_warm_starts_a_network_like_it():
    state = ModelFile.from_payload(load_checkpoint(OLD.with_name(OLD.name + ".state")))
    assert state.landmark_names == ModelFile.load(OLD).landmark_names
    same = PRESETS["cpu"].replace(filters=4, sc_filters=4, sc_kernel=3)
    assert warm_startable(OLD, same) and not warm_startable(OLD, PRESETS["cpu"])


def test_a_model_file_round_trips(tmp_path):
    cfg = PRESETS["cpu"].replace(filters=8, input_size=(64, 48))
    written = ModelFile(
        network=cfg.network_for(3),
        landmark_names=["a", "b", "c"],
        input_size=(64, 48),
        normalisation=ModelFile.load(OLD).normalisation,
        weights={"w": torch.arange(6.0)},
        sigmas=torch.tensor([2.0, 2.5, 3.0]),
        train_config=cfg,
        metrics=TrainingMetrics(step=5, val_error=1.5, unit="px"),
    )
    read = ModelFile.load(written.save(tmp_path / "m.pt"))
    assert read.train_config == cfg and read.network == written.network and read.metrics == written.metrics
    assert read.local_stage is None and torch.equal(read.weights["w"], written.weights["w"])
    assert (read.landmark_names, read.input_size, read.normalisation) == (
        ["a", "b", "c"],
        (64, 48),
        written.normalisation,
    )


def test_an_incomplete_model_file_is_one_line_naming_it(tmp_path):
    payload = load_checkpoint(OLD)
    del payload["landmark_names"]
    save_checkpoint(tmp_path / "cut.pt", payload)
    with pytest.raises(CheckpointError, match=r"cut\.pt: incomplete or incompatible model file"):
        ModelFile.load(tmp_path / "cut.pt")
    payload = load_checkpoint(OLD)
    payload["refiner"] = {"config": {}, "model": {}}
    save_checkpoint(tmp_path / "stage.pt", payload)
    with pytest.raises(CheckpointError, match=r"stage\.pt: its local refinement stage does not load"):
        ModelFile.load(tmp_path / "stage.pt")


def test_a_train_config_embeds_the_network_and_still_takes_its_fields_flat():
    cfg = TrainConfig().replace(filters=16, steps=3)
    assert cfg.network.filters == 16 and cfg.steps == 3 and cfg.network_for(5).num_landmarks == 5
    flat = {k: v for k, v in cfg.to_dict().items() if k != "network"} | {"filters": 16, "sc_kernel": 7}
    assert TrainConfig.from_dict(flat).network == SCNConfig(1, filters=16, sc_kernel=7)
    nested = cfg.replace(refine=RefineConfig(scale=(0.8, 1.2)))
    assert TrainConfig.from_dict(json.loads(json.dumps(nested.to_dict()))) == nested  # tuples and nested configs


def test_the_shared_reader_ignores_unknown_fields_and_keeps_defaults():
    assert RefineConfig.from_dict({"patch": 16, "from_the_future": 1}) == RefineConfig(patch=16)
    assert TrainingMetrics.from_dict({}) == TrainingMetrics()
