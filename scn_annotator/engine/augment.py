"""Training augmentation on tensors: one ``grid_sample`` per batch, on the GPU when there is one.

The paper's augmentation: translation, rotation, isotropic and per-axis scaling,
elastic deformation on a coarse control grid, intensity shift and scale. All of it
is a single backward map from output pixels to input positions, so the image is
resampled exactly once and the whole batch goes through one ``grid_sample``.

Landmarks need the *forward* map (input position -> output pixel). The affine part
inverts in closed form; the smooth elastic part is inverted by a short fixed-point
iteration, vectorised over every landmark of the batch. A landmark that ends
outside the output, or whose inverse does not converge, is marked missing, so that
it contributes no loss (rather than a wrong one).

Sizes are fractions of the output size or network pixels, not millimetres: the
network input of an image whose spacing is unknown still has to be augmented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import AugmentConfig

__all__ = ["augment_batch"]


def _uniform(shape: tuple[int, ...], lo: float, hi: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def _pixel_to_normalised(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = size
    scale = points.new_tensor([w, h])
    return (2 * points + 1) / scale - 1


def _normalised_to_pixel(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = size
    scale = points.new_tensor([w, h])
    return ((points + 1) * scale - 1) / 2


def augment_batch(
    images: torch.Tensor,
    points: torch.Tensor,
    valid: torch.Tensor,
    out_size: tuple[int, int],
    cfg: AugmentConfig,
    generator: torch.Generator,
    fill: float = -1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomly transform a batch; returns ``(images, points, valid)`` in output pixels.

    ``images`` (B, 1, Hc, Wc) may be larger than ``out_size`` (a higher-resolution
    cache of the same field of view); ``points`` (B, N, 2) are (x, y) in its pixels.
    ``fill`` is the intensity of what comes into view from outside the image.
    ``generator`` must live on the images' device.
    """
    b, device = images.shape[0], images.device
    h, w = out_size
    u_in = _pixel_to_normalised(points.to(images.dtype), tuple(images.shape[-2:]))

    if cfg.enabled:
        angle = _uniform((b,), -cfg.rotate, cfg.rotate, generator, device)
        iso = _uniform((b, 1), *cfg.scale, generator, device)
        axis = _uniform((b, 2), *cfg.scale_axis, generator, device)
        shift = _uniform((b, 2), -cfg.translate, cfg.translate, generator, device) * images.new_tensor([w, h])
        g = cfg.elastic_grid
        amplitude = cfg.elastic * images.new_tensor([w, h])[None, :, None, None]
        coarse = _uniform((b, 2, g, g), -1.0, 1.0, generator, device) * amplitude
        gain = _uniform((b, 1, 1, 1), 1 - cfg.intensity_scale, 1 + cfg.intensity_scale, generator, device)
        bias = _uniform((b, 1, 1, 1), -cfg.intensity_shift, cfg.intensity_shift, generator, device)
    else:
        angle = images.new_zeros(b)
        iso, axis = images.new_ones(b, 1), images.new_ones(b, 2)
        shift = images.new_zeros(b, 2)
        coarse = images.new_zeros(b, 2, 2, 2)
        gain, bias = images.new_ones(b, 1, 1, 1), images.new_zeros(b, 1, 1, 1)

    # Backward map in output-pixel units centred on the image: q = A p + t + d(p),
    # where A rotates and scales. In normalised coordinates: u_in = D^-1 (A D u_out + t + d).
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    a = rot * (1.0 / (iso * axis))[:, None, :]  # zoom in by k = sample with step 1/k
    half = images.new_tensor([w / 2, h / 2])
    a_norm = a * half[None, None, :] / half[None, :, None]  # D^-1 A D
    theta = torch.cat([a_norm, (shift / half)[..., None]], -1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    identity = F.affine_grid(
        torch.eye(2, 3, device=device, dtype=images.dtype).expand(b, 2, 3), [b, 1, h, w], align_corners=False
    )
    # Elastic displacement, a smooth function of the output position defined by the
    # coarse grid (bicubic): evaluated on the whole grid here and at points below.
    displacement = F.grid_sample(coarse, identity, mode="bicubic", align_corners=True)
    grid = grid + (displacement.permute(0, 2, 3, 1) / half)

    out = F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    out = (out * gain + bias).clamp(-1.0, 1.0)

    # Forward map of the landmarks: solve u_in = D^-1 (A D u + t + d(u)) for u.
    a_inv = torch.linalg.inv(a)
    target = u_in * half - shift[:, None, :]  # (B, N, 2) = A D u + d(u)
    u = torch.zeros_like(u_in)
    for _ in range(8):
        d = F.grid_sample(coarse, u[:, :, None, :], mode="bicubic", align_corners=True)[..., 0]  # (B, 2, N)
        u_new = torch.einsum("bij,bnj->bni", a_inv, target - d.transpose(1, 2)) / half
        converged = (u_new - u).abs().amax(-1) * half.max() < 1e-3
        u = u_new
    inside = (u.abs() <= 1.0).all(-1)
    out_points = _normalised_to_pixel(u, (h, w))
    out_valid = valid & inside & converged & torch.isfinite(out_points).all(-1)
    return out, torch.nan_to_num(out_points), out_valid


def random_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on ``device`` (augmentation draws from it, never from global state)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) % (2**63 - 1))
    return gen
