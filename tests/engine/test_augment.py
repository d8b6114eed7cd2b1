from __future__ import annotations

import numpy as np
import torch

from scn_annotator.engine.augment import augment_batch, random_generator
from scn_annotator.engine.config import AugmentConfig


def blobs(points: torch.Tensor, size: tuple[int, int], sigma: float = 1.5) -> torch.Tensor:
    """An image (B, 1, H, W) with a bright Gaussian blob at every point (B, N, 2)."""
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    d2 = (xx[None, None] - points[..., 0, None, None]) ** 2 + (yy[None, None] - points[..., 1, None, None]) ** 2
    return (torch.exp(-d2 / (2 * sigma**2)).sum(1, keepdim=True) * 2 - 1).clamp(-1, 1)


def local_peak(image: torch.Tensor, x: float, y: float, radius: int = 4) -> np.ndarray:
    """Intensity-weighted centre of the blob near (x, y)."""
    h, w = image.shape
    xi, yi = round(x), round(y)
    y0, y1, x0, x1 = (
        max(0, yi - radius),
        min(h, yi + radius + 1),
        max(0, xi - radius),
        min(w, xi + radius + 1),
    )
    patch = (image[y0:y1, x0:x1] + 1).clamp(min=0)
    patch = torch.where(patch > 0.5 * patch.max(), patch, torch.zeros_like(patch))
    yy, xx = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
    return np.array([float((xx * patch).sum() / patch.sum()), float((yy * patch).sum() / patch.sum())])


def test_landmarks_move_with_the_image():
    torch.manual_seed(0)
    b, n, cache, out = 6, 5, (192, 160), (96, 80)
    points = torch.rand(b, n, 2) * torch.tensor([100.0, 120.0]) + torch.tensor([30.0, 36.0])
    images = blobs(points, cache, sigma=2.0)
    cfg = AugmentConfig(intensity_shift=0.0, intensity_scale=0.0)
    aug, new_points, valid = augment_batch(
        images, points, torch.ones(b, n, dtype=torch.bool), out, cfg, random_generator(3)
    )
    assert aug.shape == (b, 1, *out)
    checked = 0
    for i in range(b):
        for j in range(n):
            if not valid[i, j]:
                continue
            x, y = new_points[i, j].tolist()
            if 4 <= x <= out[1] - 5 and 4 <= y <= out[0] - 5:
                found = local_peak(aug[i, 0], x, y)
                assert np.linalg.norm(found - [x, y]) < 0.5, (i, j, found, (x, y))
                checked += 1
    assert checked >= 20


def test_disabled_augmentation_is_the_identity():
    points = torch.tensor([[[20.0, 30.0], [50.5, 60.25]]])
    images = blobs(points, (96, 80))
    aug, new_points, valid = augment_batch(
        images,
        points,
        torch.ones(1, 2, dtype=torch.bool),
        (96, 80),
        AugmentConfig(enabled=False),
        random_generator(0),
    )
    torch.testing.assert_close(aug, images, atol=1e-5, rtol=0)
    torch.testing.assert_close(new_points, points, atol=1e-4, rtol=0)
    assert valid.all()


def test_a_landmark_pushed_out_of_the_image_becomes_missing():
    points = torch.tensor([[[2.0, 48.0], [40.0, 48.0]]]).repeat(32, 1, 1)  # one at the left edge
    images = blobs(points, (96, 80))
    valid_in = torch.ones(32, 2, dtype=torch.bool)
    valid_in[0, 1] = False  # missing stays missing
    cfg = AugmentConfig(translate=0.2, rotate=0.0, elastic=0.0)
    _, new_points, valid = augment_batch(images, points, valid_in, (96, 80), cfg, random_generator(1))
    assert not valid[:, 0].all() and valid[:, 0].any()
    inside = (new_points >= -0.5).all(-1) & (new_points[..., 0] <= 79.5) & (new_points[..., 1] <= 95.5)
    assert inside[valid].all()
    assert not valid[0, 1]


def test_intensities_stay_in_range_and_seeds_repeat():
    images = torch.rand(4, 1, 64, 48) * 2 - 1
    points = torch.full((4, 3, 2), 20.0)
    valid = torch.ones(4, 3, dtype=torch.bool)
    a = augment_batch(images, points, valid, (64, 48), AugmentConfig(), random_generator(5))
    b = augment_batch(images, points, valid, (64, 48), AugmentConfig(), random_generator(5))
    c = augment_batch(images, points, valid, (64, 48), AugmentConfig(), random_generator(6))
    assert float(a[0].min()) >= -1 and float(a[0].max()) <= 1
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    assert not torch.allclose(a[0], c[0])


def test_config_round_trip():
    cfg = AugmentConfig(scale=(0.9, 1.1), rotate=0.1)
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
