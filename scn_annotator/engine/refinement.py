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
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import RefineConfig, SCNConfig
from .data import BACKGROUND
from .device import training_layout
from .geometry import InputTransform
from .heatmaps import decode_peaks
from .network import SpatialConfigurationNet
from .objects import LandmarkObjects, ObjectLayout, chain_frames

__all__ = [
    "Refiner",
    "extract_patches",
    "fit_shape",
    "member_table",
    "object_patch_size",
    "patch_targets",
    "within_reach",
]


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
        """Each patch's heatmaps for its own landmarks: (P, patch, patch) for ``landmarks`` (P,), one per patch;
        (P, K, patch, patch) for (P, K), an object's K members per patch."""
        out = self.net(patches)
        single = landmarks.dim() == 1
        chosen = landmarks.to(out.device).reshape(landmarks.shape[0], -1)
        index = chosen[:, :, None, None].expand(-1, -1, *out.shape[-2:])
        heat = out.gather(1, index)
        return heat[:, 0] if single else heat

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
        patches = extract_patches(fine.to(device), centres, cfg.patch).contiguous(memory_format=training_layout(device))
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

    def place_image(
        self,
        fine: torch.Tensor,
        transform: InputTransform,
        layout: ObjectLayout,
        scale: float,
        centres: np.ndarray,
        fallback: np.ndarray,
    ) -> np.ndarray:
        """:meth:`place` for object ``centres`` (M, 2) in the original image's pixels; (N, 2) there.

        A member stage 2 has no clear answer for keeps its ``fallback`` position (the template's).
        """
        c = transform.to_network(centres)
        out = transform.from_network(self.place(fine, c, chain_frames(c), layout, scale))
        missing = np.isnan(out).any(axis=1)
        out[missing] = np.asarray(fallback, dtype=np.float64)[missing]
        return out

    @torch.inference_mode()
    def place(
        self,
        fine: torch.Tensor,
        centres: np.ndarray,
        frames: np.ndarray,
        layout: ObjectLayout,
        scale: float,
    ) -> np.ndarray:
        """Stage 2: every object's members from a crop at its centre, turned to its frame; (N, 2) in ``fine``'s px.

        ``centres`` (M, 2) in ``fine``'s pixels, ``frames`` (M, 2, 2) rotations (columns:
        across, along), ``scale`` ``fine``'s pixels per network pixel (the unit of the
        layout's template and gap). A member's peak is looked for only within half the gap
        between neighbouring centres around its place in the template (at the column's size,
        :meth:`~.objects.ObjectLayout.size`), not on the
        neighbouring object's look-alike corner that the crop also shows; the object's
        members are then its mean shape fitted to the peaks found (:func:`fit_shape`).
        Every member of an object with no clear peak, or with a NaN centre, comes back
        NaN (the caller keeps the template's position).
        """
        cfg = self.config
        objects = layout.objects
        out = np.full((objects.num_landmarks, 2), np.nan)
        todo = np.flatnonzero(~np.isnan(np.asarray(centres, dtype=np.float64)).any(axis=1))
        if not todo.size:
            return out
        device = next(self.parameters()).device
        members, mask = member_table(objects, todo)
        c = torch.as_tensor(np.asarray(centres, dtype=np.float64)[todo], dtype=torch.float32, device=device)
        linear = torch.as_tensor(np.asarray(frames, dtype=np.float64)[todo], dtype=torch.float32, device=device)
        patches = extract_patches(fine.to(device), c, cfg.patch, linear)
        patches = patches.contiguous(memory_format=training_layout(device))
        heat = self(patches, torch.as_tensor(members, device=device)).float()  # (P, K, s, s)
        shape = scale * layout.size(centres, scale) * layout.template  # the mean shape at this column's size
        if layout.gap > 0:
            heat = _within_reach(heat, shape[members], 0.5 * scale * layout.gap)
        peaks, values = decode_peaks(heat)
        # the crop is turned to the object's frame: a peak's offset from the crop's centre is its place there
        local = peaks.double().cpu().numpy() - (cfg.patch - 1) / 2  # (P, K, 2)
        clear = (values.cpu().numpy() >= cfg.object_min_peak) & mask
        for row, o in enumerate(todo):
            fitted = fit_shape(shape[members[row]], local[row], clear[row], cfg.object_turn)
            if fitted is not None:
                out[members[row][mask[row]]] = (centres[o] + fitted @ np.asarray(frames[o]).T)[mask[row]]
        return out


def fit_shape(template: np.ndarray, found: np.ndarray, clear: np.ndarray, turn: bool = False) -> np.ndarray | None:
    """An object's members (K, 2): its mean shape ``template`` (turned,) stretched and moved onto the members found.

    In the object's frame (x across the structure, y along it): with ``turn``, the turn
    that best maps the template onto the ``clear`` members of ``found`` (orthogonal
    Procrustes; without it the chain's tilt stays); then per axis a stretch and a shift
    by least squares. Three or more clear members are needed for that, one or two give
    a shift only, none gives None. Each corner stage 2 finds is a few pixels off on its
    own; together they say where the object is and how big, with less noise than any
    of them, and the members it did not find come from the same fit.
    """
    if not clear.any():
        return None
    t, f = template[clear], found[clear]
    if clear.sum() < 3:
        return template + (f - t).mean(axis=0)
    rotation = np.eye(2)
    if turn:
        u, _, vt = np.linalg.svd((t - t.mean(axis=0)).T @ (f - f.mean(axis=0)))
        rotation = u @ vt
        if np.linalg.det(rotation) < 0:  # a mirror image is no fit
            u[:, -1] *= -1
            rotation = u @ vt
    turned, turned_all = t @ rotation, template @ rotation
    out = np.empty_like(template)
    for axis in range(2):
        design = np.stack([turned[:, axis], np.ones(len(t))], axis=1)
        (stretch, shift), *_ = np.linalg.lstsq(design, f[:, axis], rcond=None)
        out[:, axis] = stretch * turned_all[:, axis] + shift
    return out


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
    s = cfg.patch
    uniform = _uniform(gen, caches[0].device)
    chosen = torch.randperm(len(caches), generator=gen, device=gen.device)[: cfg.images].tolist()
    per_image = math.ceil(cfg.patches / len(chosen))
    patches, landmarks, targets = [], [], []
    for i in chosen:
        present = torch.nonzero(valid[i], as_tuple=False)[:, 0]
        if not present.numel():
            continue
        k = present[torch.randint(present.numel(), (per_image,), generator=gen, device=gen.device).to(present.device)]
        n = k.numel()
        linear = _random_turn(uniform, cfg, n)
        shift = uniform(-cfg.reach * s, cfg.reach * s, (n, 2))  # patch pixels from the truth to the centre
        centres = points[i][k] + (linear @ shift[..., None])[..., 0]
        patches.append(_random_intensity(uniform, extract_patches(caches[i], centres, s, linear)))
        landmarks.append(k)
        targets.append(patch_targets((s - 1) / 2 - shift, s, cfg.sigma))
    return torch.cat(patches), torch.cat(landmarks), torch.cat(targets)


Uniform = Callable[[float, float, tuple[int, ...]], torch.Tensor]


def _uniform(gen: torch.Generator, device: torch.device) -> Uniform:
    """Uniform draws from ``gen`` (which may live on another device than the data), moved to ``device``."""

    def uniform(low: float, high: float, shape: tuple[int, ...]) -> torch.Tensor:
        return (low + (high - low) * torch.rand(shape, generator=gen, device=gen.device)).to(device)

    return uniform


def _random_turn(uniform: Uniform, cfg: RefineConfig, n: int) -> torch.Tensor:
    """(n, 2, 2) random rotations within ``cfg.rotate``, scaled within ``cfg.scale``: a patch's augmentation."""
    angle = uniform(-cfg.rotate, cfg.rotate, (n,))
    scale = uniform(cfg.scale[0], cfg.scale[1], (n,))
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _random_intensity(uniform: Uniform, patches: torch.Tensor) -> torch.Tensor:
    """(n, 1, s, s) patches with a random contrast and brightness each."""
    n = patches.shape[0]
    contrast = uniform(0.8, 1.2, (n, 1, 1, 1))
    return (patches * contrast + uniform(-0.1, 0.1, (n, 1, 1, 1))).clamp(-1.5, 1.5)


def member_table(objects: LandmarkObjects, chosen: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(P, K) landmark indices of the chosen objects' members, padded with the first, and which are real."""
    rows = [objects.members[o] for o in chosen]
    k = max(len(m) for m in rows)
    table = np.array([list(m) + [m[0]] * (k - len(m)) for m in rows], dtype=np.int64)
    mask = np.array([[j < len(m) for j in range(k)] for m in rows], dtype=bool)
    return table, mask


def object_patch_size(layout: ObjectLayout, cache_factor: float, cfg: RefineConfig) -> int:
    """The stage-2 crop (refinement px) that holds an object's members when its centre is off by up to
    ``object_reach`` of the gap between centres, with a margin; at least the single-landmark patch."""
    multiple = 2 ** (cfg.levels - 1)
    half = float(np.abs(layout.template).max()) if layout.template.size else 0.0
    needed = 2 * (half + cfg.object_reach * layout.gap) * cache_factor + 8
    return max(cfg.patch, min(cfg.max_object_patch, multiple * math.ceil(needed / multiple)))


def random_object_patches(
    caches: list[torch.Tensor],
    points: list[torch.Tensor],
    valid: list[torch.Tensor],
    objects: LandmarkObjects,
    cfg: RefineConfig,
    gen: torch.Generator,
    reach: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One stage-2 batch: (crops (P, 1, s, s), members (P, K), targets (P, K, s, s), real member (P, K)).

    Crops of objects whose members are all labelled, centred on the true centre moved
    by up to ``reach`` crop pixels (stage 1's error, which stage 2 corrects),
    turned to the true frame and a little more, scaled at random.
    """
    device = caches[0].device
    s = cfg.patch
    uniform = _uniform(gen, device)
    chosen = torch.randperm(len(caches), generator=gen, device=gen.device)[: cfg.images].tolist()
    per_image = max(1, math.ceil(cfg.object_crops / len(chosen)))
    crops, tables, targets, masks = [], [], [], []
    for i in chosen:
        truth = points[i].double().cpu().numpy().copy()
        truth[~valid[i].cpu().numpy()] = np.nan
        centres = objects.centres(truth)
        complete = np.flatnonzero(~np.isnan(centres).any(axis=1))
        if not complete.size:
            continue
        pick = complete[torch.randint(complete.size, (per_image,), generator=gen, device=gen.device).cpu().numpy()]
        table, mask = member_table(objects, pick)
        frames = torch.as_tensor(chain_frames(centres)[pick], dtype=torch.float32, device=device)
        n = len(pick)
        linear = frames @ _random_turn(uniform, cfg, n)
        shift = uniform(-reach, reach, (n, 2))  # patch px from the truth's centre
        centre = torch.as_tensor(centres[pick], dtype=torch.float32, device=device)
        centre = centre + (linear @ shift[..., None])[..., 0]
        crops.append(_random_intensity(uniform, extract_patches(caches[i], centre, s, linear)))
        member_xy = points[i][torch.as_tensor(table, device=points[i].device)].to(device)  # (n, K, 2)
        local = torch.linalg.solve(linear[:, None], (member_xy - centre[:, None])[..., None])[..., 0]
        targets.append(patch_targets(local.reshape(-1, 2) + (s - 1) / 2, s, cfg.sigma).reshape(n, -1, s, s))
        tables.append(torch.as_tensor(table, device=device))
        masks.append(torch.as_tensor(mask, device=device))
    return torch.cat(crops), torch.cat(tables), torch.cat(targets), torch.cat(masks)


def within_reach(size: int, offsets: np.ndarray, radius: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(P, K, size, size) True within ``radius`` of each member's expected place in its crop (``offsets``
    (P, K, 2): from the crop's centre, crop px): where stage 2 looks for a member, and so where it learns to.

    The crop also shows the neighbouring objects' look-alike members (the next vertebra's
    top-left corner, a gap below this one's); inference never looks there, and a loss
    that asked for zero there and a peak here, on two patches that look the same, would
    only teach the net to hesitate.
    """
    axis = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    e = torch.as_tensor(offsets, dtype=torch.float32, device=device)
    dx = axis[None, None, None, :] - e[..., 0, None, None]
    dy = axis[None, None, :, None] - e[..., 1, None, None]
    return dx**2 + dy**2 <= radius**2


def _within_reach(heat: torch.Tensor, offsets: np.ndarray, radius: float) -> torch.Tensor:
    """``heat`` (P, K, s, s) with everything out of :func:`within_reach` lowered below any peak."""
    inside = within_reach(heat.shape[-1], offsets, radius, heat.device)
    return torch.where(inside, heat, torch.full_like(heat, -1e4))
