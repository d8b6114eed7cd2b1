"""The level check: a chain whose heatmaps are one object off everywhere is put right by what lies at its ends."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from scn_annotator.app.sample_spine import spine_names
from scn_annotator.engine.chain import chain_peaks, decode_centres
from scn_annotator.engine.config import LevelCheckConfig
from scn_annotator.engine.level_training import keeps_check
from scn_annotator.engine.levels import LevelCheck, end_places, train_level_check
from scn_annotator.engine.objects import ChainPrior, LandmarkObjects, ObjectLayout

SIZE = (96, 48)
M = 6  # objects in the chain; the image shows one more look-alike above and below
CFG = LevelCheckConfig(crop=32, channels=(8, 16, 16), batch=32, lr=3e-3)


def _column(top: float, x: float = 24.0, gap: float = 10.0, m: int = M) -> np.ndarray:
    return np.array([[x, top + gap * k] for k in range(m)])


def _image(centres: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Look-alike boxes at the centres and one step beyond each end; a 'rib' across the first object's level
    and a wide 'pelvis' below the last: the only cues to which box is which."""
    ys, xs = np.mgrid[: SIZE[0], : SIZE[1]].astype(float)
    step = centres[1] - centres[0]
    image = np.zeros(SIZE)
    for c in [centres[0] - step, *centres, centres[-1] + step]:
        image += (np.abs(xs - c[0]) < 4) & (np.abs(ys - c[1]) < 3.5)
    image += 0.6 * ((np.abs(ys - centres[0][1]) < 1.0) & (np.abs(xs - centres[0][0]) > 7))  # the first ribs
    below = centres[-1][1] + 1.5 * step[1]
    image += 0.6 * ((ys > below) & (np.abs(xs - centres[-1][0]) < 18))  # the pelvis
    return torch.from_numpy(image + rng.normal(0, 0.05, SIZE)).float()


def _blob(x: float, y: float, sigma: float = 1.5) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(SIZE[0]), torch.arange(SIZE[1]), indexing="ij")
    return torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))


@pytest.fixture(scope="module")
def trained() -> tuple[LevelCheck, ChainPrior]:
    rng = np.random.default_rng(0)
    columns = [_column(top) + rng.normal(0, 0.3, (M, 2)) for top in rng.uniform(14, 26, 24)]
    images = [_image(c, rng) for c in columns]
    torch.manual_seed(0)
    check = train_level_check(
        images[:20], columns[:20], CFG, val_images=images[20:], val_centres=columns[20:], generator=rng, steps=200
    )
    assert check is not None
    return check, ChainPrior.fit(columns)


def test_the_check_names_the_ends_and_puts_a_shifted_column_right(trained):
    check, prior = trained
    assert check.accuracy is not None and check.accuracy >= 0.8
    truth = _column(20.0)
    image = _image(truth, np.random.default_rng(5))
    shifted = np.vstack([truth[1:], truth[-1] + (truth[1] - truth[0])])  # every heatmap one object down
    heat = torch.stack([_blob(*p) for p in shifted]) + 0.3 * torch.stack([_blob(*p) for p in truth])
    prior = dataclasses.replace(prior, places=None, place_spread=None)  # the framing says nothing here
    alone, _ = chain_peaks(heat, prior)
    assert np.allclose(alone.numpy(), shifted, atol=0.5)  # the heatmaps' own answer: one object off
    checked, _ = chain_peaks(heat, prior, levels=check, inputs=image)
    np.testing.assert_allclose(checked.numpy(), truth, atol=0.5)


def test_a_layout_keeps_its_check_and_one_without_decodes_as_before(trained):
    check, prior = trained
    objects = LandmarkObjects.infer(spine_names(M))
    layout = ObjectLayout(objects, np.zeros((4 * M, 2)), 10.0, prior, check)
    again = ObjectLayout.from_payload(layout.to_payload())
    xy = _column(20.0)
    image = _image(xy, np.random.default_rng(1))
    np.testing.assert_allclose(again.levels.end_costs(image, xy, prior), check.end_costs(image, xy, prior), atol=1e-5)
    heat = torch.stack([_blob(*p) for p in xy])
    older = dataclasses.replace(layout, levels=None)
    assert ObjectLayout.from_payload(older.to_payload()).levels is None
    # without the check, or without the inputs, the decoding is the chain's own
    np.testing.assert_allclose(decode_centres(heat, older, image)[0].numpy(), chain_peaks(heat, prior)[0].numpy())
    np.testing.assert_allclose(decode_centres(heat, layout)[0].numpy(), chain_peaks(heat, prior)[0].numpy())


def test_the_places_around_an_end_extrapolate_its_step():
    places, steps = end_places(_column(10.0))
    np.testing.assert_allclose(places[0, :, 1], [-10, 0, 10, 20, 30])
    np.testing.assert_allclose(places[1, :, 1], [40, 50, 60, 70, 80])
    np.testing.assert_allclose(steps, [[0, 10], [0, 10]])


def test_half_the_training_crops_are_mirrored_across_the_column():
    """The left and right of an AP radiograph say nothing about the level: the check learns both ways."""
    from scn_annotator.engine.levels import _batch

    image = torch.zeros(200, 60)
    image[:, :30] = 1.0  # bright on the left of a vertical column
    centres = np.array([[29.5, 20.0 + 10.0 * k] for k in range(17)])

    def bright_left(cfg: LevelCheckConfig) -> np.ndarray:
        crops, _, _ = _batch([(image, centres)], cfg, np.random.default_rng(0))
        half = cfg.crop // 2
        return (crops[..., :half].mean(dim=(1, 2, 3)) > crops[..., half:].mean(dim=(1, 2, 3))).numpy()

    assert bright_left(LevelCheckConfig(mirror=False)).all()
    share = bright_left(LevelCheckConfig(mirror=True)).mean()
    assert 0.3 < share < 0.7, share


def test_a_check_that_ties_on_validation_is_kept_and_one_that_loses_is_not():
    assert keeps_check(6.97, 7.02)  # a few hundredths on twenty spines: no evidence against it
    assert keeps_check(7.0, 6.0)
    assert not keeps_check(7.0, 7.7)  # a column broken more than fixed
    assert not keeps_check(None, 7.0) and not keeps_check(7.0, None)
