"""Gaussian targets with a learnable sigma per landmark, the loss, and peak decoding.

The target for landmark i is ``scale / (2 pi sigma_i^2) * exp(-d^2 / (2 sigma_i^2))``.
Sigma is learned with a penalty ``alpha/2 * sigma^2`` that keeps it from growing:
the net is allowed a wider target where a landmark is inherently vague (a wrist
point) and is pushed to a sharp one where it can be precise (a finger tip). The
learned sigmas are themselves a per-landmark measure of how well a landmark is
defined, which the app shows.

Everything is vectorised over batch and landmarks: a target batch is two small
outer products, no Python loop per landmark.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GaussianTargets", "decode_peaks", "heatmap_loss", "window_max"]


class GaussianTargets(nn.Module):
    """Renders target heatmaps; holds the learnable ``sigma`` (network pixels)."""

    def __init__(
        self,
        num_landmarks: int,
        sigma: float = 2.5,
        scale: float = 100.0,
        learnable: bool = True,
        min_sigma: float = 0.5,
    ) -> None:
        super().__init__()
        self.scale = float(scale)
        self.min_sigma = float(min_sigma)
        self.sigma = nn.Parameter(torch.full((num_landmarks,), float(sigma)), requires_grad=learnable)

    def sigmas(self) -> torch.Tensor:
        return self.sigma.clamp(min=self.min_sigma)

    def forward(self, points: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Targets of shape (B, N, H, W) for ``points`` (B, N, 2) in network pixels (x, y).

        Invalid landmarks get an all-zero target (their loss is masked anyway).
        """
        h, w = size
        sigma = self.sigmas().to(points.dtype)[None, :, None]  # (1, N, 1)
        ys = torch.arange(h, device=points.device, dtype=points.dtype)
        xs = torch.arange(w, device=points.device, dtype=points.dtype)
        # separable: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) * exp(-dy^2 / 2s^2)
        gx = torch.exp(-((xs[None, None] - points[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, N, W)
        gy = torch.exp(-((ys[None, None] - points[..., 1:2]) ** 2) / (2 * sigma**2))  # (B, N, H)
        norm = self.scale / (2 * math.pi * sigma**2) * valid.to(points.dtype)[..., None]  # (B, N, 1)
        return (gy * norm)[..., :, None] * gx[..., None, :]


def heatmap_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    sigmas: torch.Tensor,
    sigma_alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(heatmap term, sigma term)``, both per image as in the original ``l2_loss / batch``.

    Heatmap term: ``1/2 * sum((pred - target)^2)`` over valid landmarks only, so a
    landmark missing in an image neither pulls its heatmap to zero nor counts.
    Sigma term: ``alpha/2 * sum(sigma^2)`` over the valid landmarks of each image.
    """
    batch = prediction.shape[0]
    mask = valid.to(prediction.dtype)[..., None, None]
    heat = 0.5 * ((prediction - target) ** 2 * mask).sum() / batch
    sig = 0.5 * sigma_alpha * (valid.to(sigmas.dtype) * sigmas[None] ** 2).sum() / batch
    return heat, sig


def decode_peaks(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel peak of every heatmap: ``(points (..., 2) as (x, y), peak values (...))``.

    Argmax, then per axis a parabola through the maximum and its two neighbours
    (offset ``0.5 (a - c) / (a - 2b + c)``, as the paper); on a border, or where the
    three values do not form a maximum, the offset is zero. On a Gaussian of sigma
    2.5 px the parabola is biased by less than 0.01 px.
    """
    *lead, h, w = heatmaps.shape
    flat = heatmaps.reshape(-1, h * w)
    value, index = flat.max(dim=1)
    y, x = index // w, index % w

    def offset(axis_values: torch.Tensor, pos: torch.Tensor, length: int) -> torch.Tensor:
        a, b, c = axis_values.unbind(-1)
        denom = a - 2 * b + c
        inside = (pos > 0) & (pos < length - 1) & (denom < 0)
        off = torch.where(inside, 0.5 * (a - c) / torch.where(inside, denom, torch.ones_like(denom)), 0.0)
        return off.clamp(-0.5, 0.5)

    rows = torch.arange(flat.shape[0], device=heatmaps.device)
    maps = flat.reshape(-1, h, w)
    xm, xp = (x - 1).clamp(min=0), (x + 1).clamp(max=w - 1)
    ym, yp = (y - 1).clamp(min=0), (y + 1).clamp(max=h - 1)
    horizontal = torch.stack([maps[rows, y, xm], value, maps[rows, y, xp]], -1)
    vertical = torch.stack([maps[rows, ym, x], value, maps[rows, yp, x]], -1)
    px = x.to(heatmaps.dtype) + offset(horizontal, x, w)
    py = y.to(heatmaps.dtype) + offset(vertical, y, h)
    points = torch.stack([px, py], -1).reshape(*lead, 2)
    return points, value.reshape(*lead)


def window_max(maps: torch.Tensor, size: int) -> torch.Tensor:
    """The maximum over the ``size`` x ``size`` window centred on every pixel of (..., H, W) (odd ``size``),
    as ``max_pool2d(maps, size, stride=1, padding=size // 2)`` gives it, in a few elementwise maxima.

    PyTorch's CPU pooling with stride 1 took 25-56 ms (one thread) on a spine's 17 x 256 x 96 heatmaps; two passes of
    shifted maxima (rows, then columns) take a fraction of that, and the chain decoding runs two per image.
    """
    if size % 2 != 1:
        raise ValueError(f"a window of odd size, not {size}")
    out = maps
    for dim in (-2, -1):
        acc = out.clone()
        for shift in range(1, size // 2 + 1):
            n = out.shape[dim]
            if shift >= n:
                break
            acc.narrow(dim, 0, n - shift).copy_(
                torch.maximum(acc.narrow(dim, 0, n - shift), out.narrow(dim, shift, n - shift))
            )
            acc.narrow(dim, shift, n - shift).copy_(
                torch.maximum(acc.narrow(dim, shift, n - shift), out.narrow(dim, 0, n - shift))
            )
        out = acc
    return out
