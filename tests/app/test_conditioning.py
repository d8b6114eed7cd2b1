"""Predictions conditioned on the landmarks a person confirmed (training-free: confirmed LA channels replaced)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from scn_annotator.engine.config import SCNConfig
from scn_annotator.engine.data import Normalisation
from scn_annotator.engine.inference import Predictor
from scn_annotator.engine.network import SpatialConfigurationNet
from scn_annotator.io.images import Radiograph

SIZE = 64  # the image is exactly the network input: network px = image px


def _blob(x: float, y: float, height: float, sigma: float = 2.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij"
    )
    return height * torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))


class _FixedLocal(nn.Module):
    """Two look-alike structures: landmark 0 answers at both (A stronger), landmark 1 at both equally."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        la0 = _blob(16, 20, 1.0) + _blob(44, 20, 0.8)  # A0 = (16, 20), B0 = (44, 20)
        la1 = _blob(16, 40, 1.0) + _blob(44, 40, 1.0)  # A1 = (16, 40), B1 = (44, 40): 20 px below each
        return torch.stack([la0, la1])[None].expand(x.shape[0], -1, -1, -1)


class _ShiftConfiguration(nn.Module):
    """The learned configuration, written down: landmark 1 lies 20 px below landmark 0."""

    def forward(self, local: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        below = torch.roll(local[:, 0], shifts=20, dims=-2)
        below = below / below.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-6)
        return torch.stack([torch.ones_like(below), 0.05 + below], dim=1)


def _predictor() -> Predictor:
    model = SpatialConfigurationNet(SCNConfig(num_landmarks=2, filters=4, levels=2, sc_filters=4, sc_kernel=3))
    model.local, model.spatial = _FixedLocal(), _ShiftConfiguration()
    return Predictor(model, ["upper", "lower"], (SIZE, SIZE), Normalisation(), device="cpu")


def _image() -> Radiograph:
    return Radiograph(np.random.default_rng(0).random((SIZE, SIZE)).astype(np.float32), Path("phantom.png"))


def test_a_confirmed_landmark_re_places_its_look_alike_neighbour():
    predictor, image = _predictor(), _image()
    plain = predictor.predict(image).points
    np.testing.assert_allclose(plain, [[16, 20], [16, 40]], atol=0.2)  # both on the stronger look-alike (A)
    truth = np.array([[44.0, 20.0], [44.0, 40.0]])  # the right structure is B
    hints = np.array([[44.0, 20.0], [np.nan, np.nan]])  # the annotator moved landmark 0 to B
    conditioned = predictor.predict(image, hints=hints).points
    assert tuple(conditioned[0]) == (44.0, 20.0)  # confirmed: back exactly as given
    assert np.linalg.norm(conditioned[1] - truth[1]) < 0.5 < np.linalg.norm(plain[1] - truth[1])  # neighbour fixed


def test_no_hints_is_exactly_todays_prediction():
    predictor, image = _predictor(), _image()
    plain = predictor.predict(image, heatmaps=True)
    for hints in (None, np.full((2, 2), np.nan)):
        again = predictor.predict(image, heatmaps=True, hints=hints)
        assert np.array_equal(again.points, plain.points) and np.array_equal(again.confidence, plain.confidence)
        assert np.array_equal(again.heatmaps.final, plain.heatmaps.final)
    conditioner = predictor.conditioner(image)
    np.testing.assert_allclose(conditioner.predict(None).points, plain.points, atol=1e-6)


def test_hints_at_the_true_positions_come_back_unchanged_with_a_trained_model(sample_dir, tiny_cfg, tmp_path):
    from scn_annotator.app.file_operations import load_training_data
    from scn_annotator.engine.training import train

    cfg = tiny_cfg.replace(steps=20, auto_input_growth=0.0)
    data = load_training_data(sample_dir / "images", sample_dir / "labels.csv", cfg, val_fraction=0.2)
    train(cfg, data.train, data.val, data.names, tmp_path / "m.pt", device="cpu")
    predictor = Predictor.from_checkpoint(tmp_path / "m.pt", device="cpu")
    assert predictor.sigma.shape == (15,) and (predictor.sigma > 0).all()  # the learned widths, from the checkpoint
    sample = data.val[0]
    hints = np.full((15, 2), np.nan)
    hints[[0, 7]] = sample.points[[0, 7]]
    result = predictor.predict(sample.path, hints=hints)
    np.testing.assert_array_equal(result.points[[0, 7]], sample.points[[0, 7]])
    assert np.isfinite(result.points).all() and result.points.shape == (15, 2)
    with pytest.raises(Exception, match="hints for 3 landmarks"):
        predictor.conditioner(sample.path).predict(np.zeros((3, 2)))


def test_hint_channels_are_zero_without_hints_and_change_the_sc_with_them():
    torch.manual_seed(0)
    cfg = SCNConfig(
        num_landmarks=3, filters=4, levels=2, sc_filters=4, sc_kernel=3, hint_channels=True, heatmap_init_std=0.1
    )
    model = SpatialConfigurationNet(cfg).eval()
    image = torch.randn(1, 1, 32, 32)
    plain = model(image)
    assert torch.equal(plain.heatmaps, model(image, torch.zeros(1, 3, 32, 32)).heatmaps)
    hints = torch.zeros(1, 3, 32, 32)
    hints[0, 1, 10, 12] = 1.0
    assert not torch.allclose(model(image, hints).spatial, plain.spatial)
    # an old checkpoint (no hint channels) still loads into its own architecture
    old = SpatialConfigurationNet(SCNConfig(num_landmarks=3, filters=4, levels=2, sc_filters=4, sc_kernel=3))
    written_before = {k: v for k, v in old.config.to_dict().items() if k != "hint_channels"}
    assert SCNConfig.from_dict(written_before) == old.config and not old.config.hint_channels


def test_training_with_hint_dropout_and_predicting_with_trained_hints(sample_dir, tiny_cfg, tmp_path):
    from scn_annotator.app.file_operations import load_training_data
    from scn_annotator.engine.trainer import Trainer
    from scn_annotator.engine.training import train

    cfg = tiny_cfg.replace(steps=20, auto_input_growth=0.0, hint_rate=0.75)
    data = load_training_data(sample_dir / "images", sample_dir / "labels.csv", cfg, val_fraction=0.2)
    # hint dropout: some images get none, the others a random share, each a Gaussian of peak 1 at the truth
    trainer = Trainer(cfg, data.train, [], data.names, None, torch.device("cpu"))
    points = torch.stack([s.cache_points for s in data.train[:16]]) / cfg.cache_factor
    valid = torch.ones(16, 15, dtype=torch.bool)
    target = trainer.targets(points, valid, cfg.input_size)
    hints = trainer._random_hints(target, valid)
    per_image = (hints.flatten(2).amax(dim=2) > 0.99).sum(dim=1)
    assert (per_image == 0).any() and (per_image > 0).any() and (per_image < 15).any()
    assert torch.allclose(hints.flatten(2).amax(dim=2)[hints.flatten(2).amax(dim=2) > 0], torch.tensor(1.0))

    train(cfg, data.train, data.val, data.names, tmp_path / "m.pt", device="cpu")
    predictor = Predictor.from_checkpoint(tmp_path / "m.pt", device="cpu")
    assert predictor.model.config.hint_channels
    sample = data.val[0]
    given = np.full((15, 2), np.nan)
    given[[2, 9]] = sample.points[[2, 9]]
    conditioner = predictor.conditioner(sample.path)
    assert conditioner.method == "trained"
    result = conditioner.predict(given)
    np.testing.assert_array_equal(result.points[[2, 9]], sample.points[[2, 9]])
    np.testing.assert_array_equal(predictor.predict(sample.path).points, conditioner.predict(None).points)
    assert predictor.conditioner(sample.path, method="replace").predict(given).points.shape == (15, 2)
    with pytest.raises(Exception, match="without hint channels"):
        _predictor().conditioner(_image(), method="trained")
