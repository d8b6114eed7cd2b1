from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scn_annotator.engine.config import SCNConfig
from scn_annotator.engine.network import LocalAppearance, SpatialConfigurationNet, cubic_upsample


def tiny(**kw) -> SpatialConfigurationNet:
    return SpatialConfigurationNet(SCNConfig(num_landmarks=5, filters=8, sc_filters=8, sc_kernel=5, **kw))


def test_output_is_local_times_spatial_and_keeps_both():
    torch.manual_seed(0)
    net = tiny().eval()
    out = net(torch.randn(2, 1, 64, 48))
    assert out.heatmaps.shape == out.local.shape == out.spatial.shape == (2, 5, 64, 48)
    torch.testing.assert_close(out.heatmaps, out.local * out.spatial)
    assert float(out.spatial.detach().abs().max()) <= 1.0  # tanh


def test_unet_baseline_is_the_local_net_alone():
    net = tiny(spatial=False).eval()
    out = net(torch.randn(1, 1, 64, 48))
    assert out.spatial is None and net.spatial is None
    assert out.heatmaps is out.local


def test_heatmap_heads_start_near_zero():
    net = tiny()
    assert float(net.local.head.weight.detach().std()) < 2e-4
    assert float(net.spatial.head.weight.detach().std()) < 2e-4
    assert float(net.local.blocks[0][0].weight.detach().std()) > 1e-2  # He init elsewhere


def test_architecture_follows_the_paper():
    cfg = SCNConfig(num_landmarks=37)
    net = SpatialConfigurationNet(cfg)
    convs = [m for m in net.local.modules() if isinstance(m, torch.nn.Conv2d)]
    assert {m.out_channels for m in convs[:-1]} == {128}  # equal width on every level
    assert len(net.local.blocks) == 4
    sc = [m for m in net.spatial.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.kernel_size for m in sc] == [(11, 11)] * 4
    assert [m.out_channels for m in sc] == [128, 128, 128, 37]
    assert any(isinstance(m, torch.nn.Dropout) for m in net.local.modules())
    assert cfg.size_multiple == 16


def test_a_narrower_full_resolution_level_changes_only_that_level():
    wide, narrow = tiny(), tiny(first_filters=4)
    changed = {k.rsplit(".", 1)[0] for k, v in wide.state_dict().items() if narrow.state_dict()[k].shape != v.shape}
    # the stem, level 0's two convolutions and its skip, and level 1's first convolution, which reads level 0
    assert changed == {"local.stem.0", "local.blocks.0.0", "local.blocks.0.3", "local.skips.0.0", "local.blocks.1.0"}
    assert narrow(torch.randn(1, 1, 64, 48)).heatmaps.shape == (1, 5, 64, 48)
    assert SCNConfig.from_dict({"num_landmarks": 5}).first_filters is None  # model files before it: full width


def test_input_size_must_fit_the_pooling():
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny()(torch.randn(1, 1, 50, 48))


def test_cubic_upsample_equals_bicubic_interpolation():
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(
        cubic_upsample(x, (112, 80)), F.interpolate(x, size=(112, 80), mode="bicubic", align_corners=False)
    )


def test_channel_dropout_option():
    net = tiny(dropout_mode="channel")
    assert any(isinstance(m, torch.nn.Dropout2d) for m in net.modules())
    with pytest.raises(ValueError):
        SCNConfig(num_landmarks=3, dropout_mode="pixel")


def test_config_round_trips_through_a_dict():
    cfg = SCNConfig(num_landmarks=4, filters=16, spatial=False)
    assert SCNConfig.from_dict(cfg.to_dict()) == cfg


def test_inference_then_training_in_one_process():
    net = tiny()
    with torch.inference_mode():
        net.eval()(torch.randn(1, 1, 64, 48))
    net.train()
    net(torch.randn(1, 1, 64, 48)).heatmaps.sum().backward()  # the cached upsampling matrices are reusable
    assert net.local.head.weight.grad is not None


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_local_view_is_what_an_output_pixel_of_the_local_net_sees(levels):
    # the input rule of object layouts grows the levels by this width, so it must be the real receptive field
    cfg = SCNConfig(num_landmarks=1, filters=4, levels=levels, dropout=0.0)
    torch.manual_seed(0)
    net = LocalAppearance(cfg).double()
    image = torch.zeros(1, 1, 160, 160, dtype=torch.double, requires_grad=True)
    net(image)[0, 0, 80, 80].backward()
    seen = torch.nonzero(image.grad[0, 0].abs().sum(0)).flatten()
    assert int(seen.max() - seen.min()) + 1 == cfg.local_view
