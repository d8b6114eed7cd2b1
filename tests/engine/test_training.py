from __future__ import annotations

import numpy as np
import pytest
import torch

from scn_annotator.app.file_operations import load_training_data
from scn_annotator.engine.checkpoint import load_checkpoint, save_checkpoint
from scn_annotator.engine.config import SCNConfig, TrainConfig
from scn_annotator.engine.inference import Predictor, validation_errors
from scn_annotator.engine.network import SpatialConfigurationNet
from scn_annotator.engine.trainer import Trainer, state_path
from scn_annotator.engine.training import train
from scn_annotator.errors import CheckpointError, ScnError


@pytest.fixture
def fast_cfg(tiny_cfg: TrainConfig) -> TrainConfig:
    return tiny_cfg.replace(input_size=(64, 48), lr=3e-3)


@pytest.fixture
def data(sample_dir, fast_cfg):
    return load_training_data(sample_dir / "images", sample_dir / "labels.csv", fast_cfg, val_fraction=0.2)


def test_training_really_reduces_the_error(data, fast_cfg, tmp_path):
    torch.manual_seed(fast_cfg.seed)
    untrained = SpatialConfigurationNet(fast_cfg.network_for(len(data.names)))
    before, unit = validation_errors(untrained, data.val, torch.device("cpu"))
    assert unit == "mm"
    cfg = fast_cfg.replace(steps=150, validate_every=25)
    result = train(cfg, data.train, data.val, data.names, tmp_path / "m.pt", device="cpu")
    assert result.stopped == "finished" and result.steps == 150
    assert result.best_val_error < 0.5 * before.mean(), (before.mean(), result.history)

    # the saved model predicts what validation measured, through the inference path
    predictor = Predictor.from_checkpoint(tmp_path / "m.pt", device="cpu")
    assert predictor.names == data.names
    errors = []
    for sample in data.val:
        pred = predictor.predict(sample.path)
        errors.append(np.linalg.norm((pred.points - sample.points) * np.asarray(sample.spacing), axis=1))
        assert pred.confidence.shape == (len(data.names),)
    assert np.mean(errors) == pytest.approx(result.best_val_error, rel=1e-3)


def test_a_seed_makes_a_cpu_run_repeatable(data, fast_cfg):
    cfg = fast_cfg.replace(steps=4)

    def weights(seed):
        trainer = Trainer(cfg.replace(seed=seed), data.train, [], data.names, None, torch.device("cpu"))
        for _ in range(4):
            trainer.train_step()
        return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])

    a, b, c = weights(0), weights(0), weights(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_cancel_then_resume_continues_exactly(data, fast_cfg, tmp_path):
    cfg = fast_cfg.replace(steps=12, validate_every=4)
    full = train(cfg, data.train, data.val, data.names, tmp_path / "full.pt", device="cpu")
    calls = []

    def stop_after_five() -> bool:
        calls.append(1)
        return len(calls) > 5

    part = train(cfg, data.train, data.val, data.names, tmp_path / "part.pt", should_stop=stop_after_five, device="cpu")
    assert part.stopped == "cancelled" and part.steps == 5
    assert state_path(tmp_path / "part.pt").exists()
    resumed = train(cfg, data.train, data.val, data.names, tmp_path / "part.pt", resume=True, device="cpu")
    assert resumed.steps == 12
    a = load_checkpoint(state_path(tmp_path / "full.pt"))["model"]
    b = load_checkpoint(state_path(tmp_path / "part.pt"))["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7)
    assert resumed.best_val_error == pytest.approx(full.best_val_error, rel=1e-5)


def test_time_budget_stops_training(data, fast_cfg):
    result = train(
        fast_cfg.replace(steps=10_000), data.train, data.val, data.names, None, max_minutes=1e-4, device="cpu"
    )
    assert result.stopped == "time"
    assert result.steps < 10_000


def test_warm_start_needs_the_same_landmarks(data, fast_cfg, tmp_path):
    cfg = fast_cfg.replace(steps=2)
    train(cfg, data.train, [], data.names, tmp_path / "a.pt", device="cpu")
    result = train(cfg, data.train, [], data.names, tmp_path / "b.pt", init_from=tmp_path / "a.pt", device="cpu")
    assert result.steps == 2
    with pytest.raises(CheckpointError, match="landmarks differ"):
        renamed = [f"x{i}" for i in range(len(data.names))]
        train(cfg, data.train, [], renamed, tmp_path / "c.pt", init_from=tmp_path / "a.pt", device="cpu")


def test_checkpoint_holds_what_inference_needs(data, fast_cfg, tmp_path):
    train(fast_cfg.replace(steps=2), data.train, data.val, data.names, tmp_path / "m.pt", device="cpu")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    for key in ("model", "network", "landmark_names", "input_size", "normalisation", "train_config", "sigma"):
        assert key in ckpt
    assert SCNConfig.from_dict(ckpt["network"]).num_landmarks == len(data.names)
    assert TrainConfig.from_dict(ckpt["train_config"]) == fast_cfg.replace(steps=2)
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no temporary file left


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned-by-checkpoint",))


def test_a_malicious_checkpoint_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "scn-annotator/1", "model": _Evil()}, path)
    with pytest.raises(CheckpointError, match=r"refused to load: it asks to import posix\.system"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        Predictor.from_checkpoint(path)
    assert not (tmp_path / "pwned-by-checkpoint").exists()


def test_other_files_are_not_models(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable model file"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an scn-annotator model"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint(tmp_path / "partial.pt", {"model": {}})
    with pytest.raises(CheckpointError, match="incomplete"):
        Predictor.from_checkpoint(tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="no such model file"):
        load_checkpoint(tmp_path / "absent.pt")


def test_validation_ignores_landmarks_an_image_lacks(data, fast_cfg, tmp_path):
    """One validation image without some landmark used to make the error NaN and no model was ever saved."""
    import copy

    val = [copy.copy(s) for s in data.val]
    val[0].points = val[0].points.copy()
    val[0].points[[2, 5]] = np.nan  # absent in that image
    result = train(
        fast_cfg.replace(steps=20, validate_every=10), data.train, val, data.names, tmp_path / "m.pt", device="cpu"
    )
    assert result.best_val_error is not None and np.isfinite(result.best_val_error)
    assert all(np.isfinite(h["val_error"]) for h in result.history)
    assert (tmp_path / "m.pt").is_file()


def test_a_run_stopped_by_time_before_any_validation_still_writes_its_model(data, fast_cfg, tmp_path):
    cfg = fast_cfg.replace(steps=10_000, validate_every=5_000)
    result = train(cfg, data.train, data.val, data.names, tmp_path / "m.pt", max_minutes=0.02, device="cpu")
    assert result.stopped == "time" and 0 < result.steps < 5_000
    assert result.best_step == result.steps and result.best_val_error is not None  # the last step was validated
    predictor = Predictor.from_checkpoint(tmp_path / "m.pt", device="cpu")
    assert predictor.predict(data.val[0].path).points.shape == (len(data.names), 2)


def test_a_time_limit_lays_the_schedule_out_for_the_time(data, fast_cfg, tmp_path):
    """Stopped by time, the run still ends where its learning rate has decayed: a converged model."""
    from scn_annotator.engine.time_plan import TimePlan

    cfg = fast_cfg.replace(steps=100_000, validate_every=40, warmup_steps=10)
    result = train(cfg, data.train, data.val, data.names, tmp_path / "m.pt", max_minutes=0.1, device="cpu")
    assert result.stopped == "time"
    assert 10 < result.planned_steps < cfg.steps and result.steps == result.planned_steps  # the schedule finished
    plan = TimePlan(cfg.steps, warmup_steps=cfg.warmup_steps, total=result.planned_steps)
    assert plan.lr_factor(result.steps - 1) < 0.05  # decayed, not cut off at full rate
    assert "fitted to the time limit" in result.describe()
    assert Predictor.from_checkpoint(tmp_path / "m.pt", device="cpu").predict(data.val[0].path).points.shape[0] == 15


def test_without_a_time_limit_the_schedule_is_the_step_count(fast_cfg):
    from scn_annotator.engine.time_plan import TimePlan

    plan = TimePlan(200, warmup_steps=20)
    assert plan.lr_factor(0) == pytest.approx(1 / 20) and plan.lr_factor(19) == 1.0
    assert plan.lr_factor(199) == pytest.approx(0.01, abs=1e-3)
    shorter = TimePlan(200, warmup_steps=20, total=100)
    assert shorter.lr_factor(99) == pytest.approx(0.01, abs=1e-3)  # a shorter plan decays sooner
    assert shorter.lr_factor(0) == pytest.approx(1 / 10)  # and warms up for at most a tenth of it


@pytest.mark.parametrize(("device", "expected"), [("cpu", "cpu"), ("cuda", "gpu"), ("mps", "gpu")])
def test_the_auto_preset_follows_the_device(monkeypatch, device, expected):
    """True on every machine: the device is mocked, not asked (the worker's target has a GPU)."""
    import scn_annotator.engine.config as train_config
    from scn_annotator.active.policy import RoundPolicy, round_config

    monkeypatch.setattr("scn_annotator.engine.device.best_device", lambda: torch.device(device))
    assert train_config.auto_preset() == expected
    assert train_config.preset("auto") == train_config.PRESETS[expected]
    assert train_config.preset("auto", steps=7) == train_config.PRESETS[expected].replace(steps=7)
    assert round_config(RoundPolicy(), first=True).network == train_config.PRESETS[expected].network
    assert train_config.auto_preset("mps") == "gpu" and train_config.auto_preset("cpu") == "cpu"  # asked, not mocked


def test_an_unknown_preset_names_the_choices():
    from scn_annotator.engine.config import preset

    with pytest.raises(ScnError, match="choose auto or one of paper, cpu, gpu"):
        preset("fastest")
