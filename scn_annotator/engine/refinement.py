"""Local refinement: every landmark re-found in a small patch at a finer resolution.

The SCN works at a coarse input (272 x 192 for a hand, 0.7 mm per network pixel) so
that its spatial-configuration component sees the whole hand; that is what makes
its answers unambiguous, and also what limits their precision. The coarse SCN has
already decided *which* joint is which; all that is left is *where exactly*, and
that is a local question. A small local-appearance net looks at a patch around each
coarse position at the training cache's resolution (``cache_factor`` times the
network's, so no image is decoded twice) and returns one heatmap per landmark; the patch's own
landmark channel is read. Where that heatmap has no clear peak (the coarse position
was too far off, or the patch shows nothing like the landmark) the coarse position
stays: refinement can move a point a few pixels, never to another structure.

Trained on patches around the true positions, shifted, rotated and scaled at
random, some shifted so far that the landmark is outside: the net learns to say
"not here" as well as "exactly here". Whether a model keeps its refiner is decided
on the validation images (``train`` compares the errors with and without).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import RefineConfig, SCNConfig
from .data import BACKGROUND
from .geometry import InputTransform
from .heatmaps import decode_peaks
from .network import SpatialConfigurationNet

__all__ = ["Refiner", "extract_patches", "patch_targets"]


class Refiner(nn.Module):
    """A shallow LA net on (P, 1, patch, patch) patches; (P, N, patch, patch) heatmaps out."""

    def __init__(self, cfg: RefineConfig, num_landmarks: int) -> None:
        super().__init__()
        self.config = cfg
        net = SCNConfig(
            num_landmarks, filters=cfg.filters, levels=cfg.levels, dropout=0.0, spatial=False, heatmap_init_std=1e-3
        )
        self.net = SpatialConfigurationNet(net).local

    def forward(self, patches: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Each patch's heatmap for its own landmark: (P, patch, patch)."""
        out = self.net(patches)
        index = landmarks.to(out.device)[:, None, None, None].expand(-1, 1, *out.shape[-2:])
        return out.gather(1, index)[:, 0]

    @torch.inference_mode()
    def refine(self, fine: torch.Tensor, points: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
        """``points`` (N, 2) in ``fine``'s pixels, each moved to its patch's peak when the peak is clear.

        ``fine`` is the (H, W) image at the refinement resolution; NaN points and
        those flagged in ``skip`` stay as they are.
        """
        cfg = self.config
        points = np.asarray(points, dtype=np.float64)
        todo = ~np.isnan(points).any(axis=1)
        if skip is not None:
            todo &= ~skip
        refined = points.copy()
        if not todo.any():
            return refined
        index = np.flatnonzero(todo)
        device = next(self.parameters()).device
        centres = torch.as_tensor(points[index], dtype=torch.float32, device=device)
        patches = extract_patches(fine.to(device), centres, cfg.patch)
        heat = self(patches, torch.as_tensor(index, device=device)).float()
        peaks, values = decode_peaks(heat)
        half = (cfg.patch - 1) / 2
        moved = peaks.cpu().double().numpy() - half + points[index]
        clear = values.cpu().numpy() >= cfg.min_peak
        refined[index[clear]] = moved[clear]
        return refined

    def refine_image(
        self, fine: torch.Tensor, transform: InputTransform, points: np.ndarray, skip: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`refine` for ``points`` in the original image's pixels; ``transform`` maps them onto ``fine``."""
        return transform.from_network(self.refine(fine, transform.to_network(points), skip))


def extract_patches(
    image: torch.Tensor,
    centres: torch.Tensor,
    size: int,
    linear: torch.Tensor | None = None,
) -> torch.Tensor:
    """(P, 1, size, size) patches of the (H, W) ``image`` centred on ``centres`` (P, 2), pixels (x, y).

    Patch pixel ``u`` (offset from the patch centre) samples the image at
    ``centre + linear @ u`` (``linear`` (P, 2, 2); the identity when None). Outside the
    image is ``BACKGROUND``, as everywhere else the network looks.
    """
    h, w = image.shape[-2:]
    p = centres.shape[0]
    offsets = torch.arange(size, device=image.device, dtype=torch.float32) - (size - 1) / 2
    uy, ux = torch.meshgrid(offsets, offsets, indexing="ij")
    u = torch.stack([ux, uy], -1).reshape(1, size * size, 2).expand(p, -1, -1)
    if linear is not None:
        u = u @ linear.transpose(1, 2)
    xy = centres[:, None, :].float() + u  # (P, size*size, 2) image pixels
    grid = torch.stack([(2 * xy[..., 0] + 1) / w - 1, (2 * xy[..., 1] + 1) / h - 1], -1)
    shifted = (image - BACKGROUND)[None, None].float()  # zero padding of (image - background) is background
    out = F.grid_sample(shifted, grid.reshape(1, p * size, size, 2), mode="bilinear", align_corners=False)
    return out.reshape(p, 1, size, size) + BACKGROUND


def patch_targets(truth: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Gaussians of peak 1 at ``truth`` (P, 2), patch pixels (x, y); (nearly) zero where it lies outside."""
    axis = torch.arange(size, device=truth.device, dtype=torch.float32)
    gx = torch.exp(-((axis[None] - truth[:, 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((axis[None] - truth[:, 1:2]) ** 2) / (2 * sigma**2))
    return gy[:, :, None] * gx[:, None, :]


def random_patches(
    caches: list[torch.Tensor],
    points: list[torch.Tensor],
    valid: list[torch.Tensor],
    cfg: RefineConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training batch: (patches (P, 1, s, s), landmarks (P,), targets (P, s, s)).

    ``cfg.images`` images at random, ``cfg.patches`` landmarks spread over them, each
    patch shifted, rotated and scaled at random around the landmark's true position.
    """
    device = caches[0].device
    s = cfg.patch
    chosen = torch.randperm(len(caches), generator=gen, device=gen.device)[: cfg.images].tolist()
    per_image = math.ceil(cfg.patches / len(chosen))
    patches, landmarks, targets = [], [], []
    for i in chosen:
        present = torch.nonzero(valid[i], as_tuple=False)[:, 0]
        if not present.numel():
            continue
        k = present[torch.randint(present.numel(), (per_image,), generator=gen, device=gen.device).to(present.device)]
        n = k.numel()

        def uniform(low: float, high: float, shape: tuple[int, ...]) -> torch.Tensor:
            return (low + (high - low) * torch.rand(shape, generator=gen, device=gen.device)).to(device)

        angle = uniform(-cfg.rotate, cfg.rotate, (n,))
        scale = uniform(cfg.scale[0], cfg.scale[1], (n,))
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        linear = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (n, 2, 2)
        shift = uniform(-cfg.reach * s, cfg.reach * s, (n, 2))  # patch pixels from the truth to the centre
        centres = points[i][k] + (linear @ shift[..., None])[..., 0]
        patch = extract_patches(caches[i], centres, s, linear)
        contrast = uniform(0.8, 1.2, (n, 1, 1, 1))
        patches.append((patch * contrast + uniform(-0.1, 0.1, (n, 1, 1, 1))).clamp(-1.5, 1.5))
        landmarks.append(k)
        targets.append(patch_targets((s - 1) / 2 - shift, s, cfg.sigma))
    return torch.cat(patches), torch.cat(landmarks), torch.cat(targets)
