from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scn_annotator.engine.heatmaps import GaussianTargets, decode_peaks, heatmap_loss


def test_target_peak_is_where_the_landmark_is_with_the_paper_height():
    targets = GaussianTargets(2, sigma=2.5, scale=100.0)
    points = torch.tensor([[[10.0, 20.0], [30.0, 5.0]]])
    maps = targets(points, torch.tensor([[True, True]]), (40, 48))
    assert maps.shape == (1, 2, 40, 48)
    flat = maps.reshape(2, -1).argmax(1)
    assert [(int(i % 48), int(i // 48)) for i in flat] == [(10, 20), (30, 5)]
    assert float(maps.detach().max()) == pytest.approx(100 / (2 * math.pi * 2.5**2), rel=1e-5)


def test_invalid_landmark_gets_an_empty_target_and_no_loss():
    targets = GaussianTargets(2)
    valid = torch.tensor([[True, False]])
    maps = targets(torch.tensor([[[10.0, 10.0], [20.0, 20.0]]]), valid, (32, 32))
    assert float(maps.detach()[0, 1].abs().max()) == 0.0
    prediction = torch.zeros(1, 2, 32, 32)
    prediction[0, 1] = 99.0  # garbage on the missing landmark costs nothing
    heat, sig = heatmap_loss(prediction, maps, valid, targets.sigmas(), 100.0)
    heat_ref, _ = heatmap_loss(torch.zeros(1, 2, 32, 32), maps, valid, targets.sigmas(), 100.0)
    assert float(heat.detach()) == pytest.approx(float(heat_ref.detach()))
    assert float(sig.detach()) == pytest.approx(0.5 * 100 * 2.5**2)  # one valid landmark


def test_sigma_receives_a_gradient_from_both_terms():
    targets = GaussianTargets(3, sigma=2.0)
    points = torch.tensor([[[8.0, 8.0], [16.0, 16.0], [24.0, 8.0]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    maps = targets(points, valid, (32, 32))
    heat, sig = heatmap_loss(torch.zeros_like(maps), maps, valid, targets.sigmas(), 100.0)
    (heat + sig).backward(retain_graph=True)
    grad = targets.sigma.grad
    assert grad is not None and torch.all(grad != 0)
    # with a zero prediction a wider (lower, flatter) target costs less: the heatmap term pulls sigma up
    targets.sigma.grad = None
    heat.backward()
    assert torch.all(targets.sigma.grad < 0)


def _gaussian(x0: float, y0: float, sigma: float, shape=(40, 50)) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    return 2.5 * torch.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("sigma", [2.0, 2.5, 4.0])
def test_sub_pixel_peaks_are_recovered_within_five_hundredths(sigma):
    rng = np.random.default_rng(7)
    truth = rng.uniform([3, 3], [46, 36], (64, 2))
    maps = torch.stack([_gaussian(x, y, sigma) for x, y in truth])[None].double()
    points, values = decode_peaks(maps)
    assert points.shape == (1, 64, 2) and values.shape == (1, 64)
    assert float((points[0] - torch.from_numpy(truth)).abs().max()) < 0.05
    assert float(values.min()) > 2.3


def test_peak_on_the_border_is_not_extrapolated():
    maps = torch.zeros(1, 1, 10, 10)
    maps[0, 0, 0, 9] = 5.0
    maps[0, 0, 1, 9] = 1.0
    points, values = decode_peaks(maps)
    assert points[0, 0].tolist() == [9.0, pytest.approx(0.0, abs=0.5)]
    assert points[0, 0, 0] == 9.0
    assert values[0, 0] == 5.0


def test_window_max_is_max_pooling_with_stride_one():
    import torch.nn.functional as F

    from scn_annotator.engine.heatmaps import window_max

    maps = torch.rand(2, 3, 9, 7)
    for size in (1, 3, 5, 11):
        assert torch.equal(window_max(maps, size), F.max_pool2d(maps, size, stride=1, padding=size // 2))
    with pytest.raises(ValueError, match="odd"):
        window_max(maps, 4)
