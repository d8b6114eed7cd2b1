"""The SpatialConfiguration-Net (Payer et al., Medical Image Analysis 54, 2019).

Two components multiply into the prediction. The local-appearance (LA) net is a
shallow U-Net: its heatmaps are sharp but ambiguous, because one finger joint
looks like its neighbour. The spatial-configuration (SC) net sees only the LA
heatmaps, sixteen times smaller, through 11x11 kernels: its heatmaps are coarse
but know which joint is which. ``LA * SC`` keeps the sharp peak that sits where
the configuration says it should.

Both components are returned, not only their product, because the active-learning
scores measure where they disagree. ``spatial=False`` gives the U-Net baseline of
the paper (the same LA net alone), so that the paper's central claim can be
measured with the same code.

Facts followed from the original TensorFlow code (``network_scn_mia``): equal
filter count on every level, dropout between the two convolutions of each
contracting block, average pooling, skip connections through one 3x3 conv and
merged by addition with the linearly upsampled deeper level, LeakyReLU 0.1, He
initialisation, heatmap convolutions initialised with std 1e-4 (so the first
prediction is almost zero everywhere), tanh on SC *before* the cubic upsampling.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import SCNConfig

__all__ = ["SCNOutput", "SpatialConfigurationNet"]


class SCNOutput(NamedTuple):
    """The prediction and the two components it is made of (``spatial`` is None for the U-Net)."""

    heatmaps: torch.Tensor
    local: torch.Tensor
    spatial: torch.Tensor | None


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2)


class _Act(nn.LeakyReLU):
    def __init__(self, slope: float) -> None:
        super().__init__(slope, inplace=True)


class LocalAppearance(nn.Module):
    """U-Net-like net with equal width on every level and additive skips."""

    def __init__(self, cfg: SCNConfig) -> None:
        super().__init__()
        f, act = cfg.filters, cfg.negative_slope
        widths = [cfg.first_filters or f] + [f] * (cfg.levels - 1)
        dropout = nn.Dropout2d if cfg.dropout_mode == "channel" else nn.Dropout
        self.stem = nn.Sequential(_conv(cfg.in_channels, widths[0], 3), _Act(act))
        self.blocks = nn.ModuleList(
            nn.Sequential(_conv(w_in, w, 3), _Act(act), dropout(cfg.dropout), _conv(w, w, 3), _Act(act))
            for w_in, w in zip([widths[0], *widths], widths)
        )
        # One 3x3 conv on every level's output but the deepest one; it is added to
        # the upsampled deeper tensor. The expanding path has no convolutions.
        self.skips = nn.ModuleList(nn.Sequential(_conv(w, f, 3), _Act(act)) for w in widths[:-1])
        self.head = _conv(f if cfg.levels > 1 else widths[0], cfg.num_landmarks, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for level, block in enumerate(self.blocks):
            x = block(x)
            if level < len(self.skips):
                skips.append(self.skips[level](x))
                x = F.avg_pool2d(x, 2)
        for skip in reversed(skips):
            x = skip + F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(x)


class SpatialConfiguration(nn.Module):
    """Large-kernel net on downsampled LA heatmaps; coarse but unambiguous."""

    def __init__(self, cfg: SCNConfig) -> None:
        super().__init__()
        n, f, k = cfg.num_landmarks, cfg.sc_filters, cfg.sc_kernel
        self.hints = cfg.hint_channels
        cin = 2 * n if self.hints else n
        layers: list[nn.Module] = []
        for i in range(cfg.sc_convs):
            layers += [_conv(cin if i == 0 else f, f, k), _Act(cfg.negative_slope)]
        self.body = nn.Sequential(*layers)
        self.head = _conv(f if cfg.sc_convs else cin, n, k)
        self.downsample = cfg.sc_downsample

    def forward(self, local: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        x = F.avg_pool2d(local, self.downsample)
        if self.hints:  # no hints given: none confirmed, all-zero channels
            given = torch.zeros_like(x) if hints is None else F.avg_pool2d(hints.to(x.dtype), self.downsample)
            x = torch.cat([x, given], dim=1)
        x = torch.tanh(self.head(self.body(x)))
        return cubic_upsample(x, local.shape[-2:])


@functools.lru_cache(maxsize=32)
def _cubic_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Cached and shared between training and inference: never an inference-mode tensor.
    with torch.inference_mode(False), torch.no_grad():
        eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1)
        rows = F.interpolate(eye, size=(n_out, 1), mode="bicubic", align_corners=False)
        return rows.reshape(n_in, n_out).T.contiguous().to(device=device, dtype=dtype)


def cubic_upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bicubic")`` computed as two small matrix products.

    Bicubic interpolation is separable and linear, so it is ``Ry @ x @ Rx.T``; on a
    CPU that is six times faster than ``upsample_bicubic2d`` forward and backward,
    and it gives the same numbers.
    """
    ry = _cubic_matrix(x.shape[-2], int(size[0]), x.device, x.dtype)
    rx = _cubic_matrix(x.shape[-1], int(size[1]), x.device, x.dtype)
    return torch.matmul(torch.matmul(ry, x), rx.T)


class SpatialConfigurationNet(nn.Module):
    """LA x SC. ``forward`` returns an :class:`SCNOutput`."""

    def __init__(self, cfg: SCNConfig) -> None:
        super().__init__()
        self.config = cfg
        self.local = LocalAppearance(cfg)
        self.spatial = SpatialConfiguration(cfg) if cfg.spatial else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        slope = self.config.negative_slope
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                std = nn.init.calculate_gain("leaky_relu", slope) / math.sqrt(fan_in)
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(module.bias)
        heads = [self.local.head] + ([self.spatial.head] if self.spatial is not None else [])
        std = self.config.heatmap_init_std
        for head in heads:
            nn.init.trunc_normal_(head.weight, std=std, a=-2 * std, b=2 * std)

    def forward(self, image: torch.Tensor, hints: torch.Tensor | None = None) -> SCNOutput:
        """``hints`` (B, N, H, W): the confirmed landmarks' Gaussians, for a net with hint channels."""
        multiple = self.config.size_multiple
        if image.shape[-2] % multiple or image.shape[-1] % multiple:
            raise ValueError(f"input size {tuple(image.shape[-2:])} is not a multiple of {multiple}")
        local = self.local(image)
        if self.spatial is None:
            return SCNOutput(local, local, None)
        spatial = self.spatial(local, hints)
        return SCNOutput(local * spatial, local, spatial)

    def reconfigure(
        self, local: torch.Tensor, conditioned: torch.Tensor, hints: torch.Tensor | None = None
    ) -> SCNOutput:
        """The SC pass again, on ``conditioned``: the LA heatmaps with the confirmed channels replaced.

        Both are (B, N, h, w). The SC component sees only the LA heatmaps, so a landmark
        a person confirmed, shown to it as one clean peak where the person put it,
        re-places the others through the learned configuration (training-free
        conditioning; the LA pass is not repeated). The final heatmaps are the original
        LA times the new SC. Without an SC component the LA heatmaps are all there is.
        A net trained with hint channels gets ``hints`` there instead (and ``conditioned``
        is then the unchanged LA).
        """
        if self.spatial is None:
            return SCNOutput(local, local, None)
        spatial = self.spatial(conditioned, hints)
        return SCNOutput(local * spatial, conditioned, spatial)
