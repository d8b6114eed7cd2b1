"""Decoding a chain of object centres jointly: a weaker peak that fits the chain beats a strong one that breaks it."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

import scn_annotator.engine.chain as chain_module
from scn_annotator.app.sample_spine import spine_names
from scn_annotator.engine.chain import _viterbi, chain_peaks, decode_centres
from scn_annotator.engine.heatmaps import decode_peaks
from scn_annotator.engine.objects import ChainPrior, LandmarkObjects, ObjectLayout


def _blob(x: float, y: float, size=(64, 32), sigma=1.5, peak=1.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    return peak * torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))


def _column(m: int = 5, gap: float = 10.0) -> np.ndarray:
    return np.array([[16.0, 8.0 + gap * k] for k in range(m)])


def test_a_centre_that_clumps_onto_its_neighbour_takes_its_own_weaker_peak():
    truth = _column()
    heat = torch.stack([_blob(*p) for p in truth])
    heat[2] = _blob(*truth[1], peak=1.0) + _blob(*truth[2], peak=0.4)  # channel 2 prefers vertebra 1
    prior = ChainPrior.fit([truth, truth + 0.5, truth - 0.5])
    plain, _ = decode_peaks(heat)
    assert np.allclose(plain[2].numpy(), truth[1], atol=0.1)  # on its neighbour, read alone
    joint, values = chain_peaks(heat, prior)
    np.testing.assert_allclose(joint.numpy(), truth, atol=0.1)
    assert values[2] == pytest.approx(0.4, abs=0.05)
    # a batch of two images decodes each on its own
    both, _ = chain_peaks(torch.stack([heat, torch.stack([_blob(*p) for p in truth])]), prior)
    assert both.shape == (2, 5, 2) and np.allclose(both.numpy(), truth[None], atol=0.1)


def test_clear_peaks_on_a_plausible_chain_decode_as_alone_sub_pixel_and_all():
    truth = _column() + np.array([0.3, -0.2])
    heat = torch.stack([_blob(*p) for p in truth])
    prior = ChainPrior.fit([_column(), _column() + 1.0])
    np.testing.assert_allclose(chain_peaks(heat, prior)[0].numpy(), decode_peaks(heat)[0].numpy(), atol=1e-6)


def test_the_prior_is_the_median_step_and_one_bad_label_does_not_widen_it():
    good = [_column() + np.random.default_rng(i).normal(0, 0.5, (5, 2)) for i in range(9)]
    bad = _column()
    bad[4] = [16.0, 0.0]  # the last centre labelled at the top of the image
    prior = ChainPrior.fit([*good, bad])
    np.testing.assert_allclose(prior.steps, [[0.0, 10.0]] * 4, atol=0.6)
    assert prior.spread.max() < 1.5
    missing = [_column() for _ in range(3)]
    missing[0][2] = np.nan
    assert ChainPrior.fit(missing) is not None  # a step seen in two images is enough
    assert ChainPrior.fit([_column()]) is None and ChainPrior.fit([_column(2), _column(2)]) is None


def test_the_layout_keeps_its_chain_and_an_older_layout_decodes_alone():
    objects = LandmarkObjects.infer(spine_names(5))
    box = np.array([[-4, -2], [4, -2], [-4, 2], [4, 2]], dtype=float)
    labels = [np.concatenate([box + c for c in _column() + shift]) for shift in (0.0, 0.7, -0.7)]
    layout = ObjectLayout.fit(objects, labels)
    assert layout.chain is not None
    again = ObjectLayout.from_payload(layout.to_payload())
    np.testing.assert_allclose(again.chain.steps, layout.chain.steps)
    older = {k: v for k, v in layout.to_payload().items() if k != "chain"}  # a model file of stop 27
    assert ObjectLayout.from_payload(older).chain is None
    heat = torch.stack([_blob(*p) for p in _column()])
    heat[2] = _blob(*_column()[1]) + _blob(*_column()[2], peak=0.4)
    assert np.allclose(decode_centres(heat, ObjectLayout.from_payload(older))[0][2].numpy(), _column()[1], atol=0.1)
    assert np.allclose(decode_centres(heat, again)[0][2].numpy(), _column()[2], atol=0.1)


def test_a_centre_taken_from_another_channels_peak_is_a_number():
    truth = _column()
    heat = torch.stack([_blob(*p) for p in truth])
    heat[3] = _blob(*truth[2], peak=1.0) + 0.01 * _blob(truth[3][0] + 1.0, truth[3][1], sigma=6.0)  # a slope only
    points, values = chain_peaks(heat, ChainPrior.fit([truth, truth + 0.5, truth - 0.5]))
    assert torch.isfinite(points).all() and torch.isfinite(values).all()
    assert np.linalg.norm(points[3].numpy() - truth[3]) < 2.0


def test_where_every_step_fits_two_chains_the_place_in_the_image_picks_the_one_labelled():
    """A column one vertebra off fits every step: only where the training images had each centre tells."""
    truth = _column(6)
    heat = torch.stack([_blob(*truth[k], peak=0.8) + _blob(*truth[k + 1]) for k in range(5)])  # each prefers the next
    prior = ChainPrior.fit([truth[:5], truth[:5] + 0.5, truth[:5] - 0.5])
    assert prior.places is not None and (prior.place_spread >= 0.5 * 10.0 - 1e-9).all()  # half a step at least
    steps_only = ChainPrior(prior.steps, prior.spread)
    np.testing.assert_allclose(chain_peaks(heat, steps_only)[0].numpy(), truth[1:], atol=0.1)  # one off
    np.testing.assert_allclose(chain_peaks(heat, prior)[0].numpy(), truth[:5], atol=0.1)
    again = ChainPrior.from_payload(prior.to_payload())
    np.testing.assert_allclose(again.places, prior.places)
    older = {k: v for k, v in prior.to_payload().items() if not k.startswith("place")}  # a model file of stop 28
    assert ChainPrior.from_payload(older).places is None and ChainPrior.from_payload(older).place_cost(truth) is None


def test_a_fixed_centre_takes_the_whole_shifted_column_with_it():
    """Every channel prefers the next vertebra; a person places the first: the chain follows, not only it."""
    truth = _column(6)
    heat = torch.stack([_blob(*truth[k], peak=0.8) + _blob(*truth[k + 1]) for k in range(5)])
    fitted = ChainPrior.fit([truth[:5], truth[:5] + 0.5, truth[:5] - 0.5])
    prior = ChainPrior(fitted.steps, fitted.spread)  # steps only: one off is what the heatmaps say
    np.testing.assert_allclose(chain_peaks(heat, prior)[0].numpy(), truth[1:], atol=0.1)
    fixed = np.full((5, 2), np.nan)
    fixed[0] = truth[0] + [0.2, -0.3]  # off the pixel grid: the nearest pixel is its candidate
    points, _ = chain_peaks(heat, prior, fixed=fixed)
    np.testing.assert_allclose(points.numpy(), truth[:5], atol=0.4)
    layout = ObjectLayout(LandmarkObjects.infer(spine_names(5)), np.zeros((20, 2)), chain=prior)
    np.testing.assert_allclose(decode_centres(heat, layout, fixed=fixed)[0].numpy(), points.numpy())
    # nothing fixed (all NaN) decodes as without
    free = chain_peaks(heat, prior, fixed=np.full((5, 2), np.nan))[0]
    np.testing.assert_allclose(free.numpy(), truth[1:], atol=0.1)


def test_a_column_that_bends_sideways_still_keeps_each_step_one_vertebra_long():
    """Training columns bend sideways (steps turn) but keep their length: a centre 0.6 of a step down the column
    is charged as a length the columns never had, not within the sideways spread of a round prior."""
    rng = np.random.default_rng(0)
    columns = []
    for _ in range(20):
        turns = rng.normal(0.0, 0.8, 4)  # a column bent more than most, to make the point on five objects
        steps = (10.0 + rng.normal(0.0, 0.2, 4))[:, None] * np.stack([np.sin(turns), np.cos(turns)], axis=1)
        columns.append(_column()[0] + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)]))
    prior = ChainPrior.fit(columns)
    assert prior.lengths is not None and np.allclose(prior.lengths, 10.0, atol=1.5)
    assert (prior.length_spread < 2.0).all() and (prior.angle_spread > 0.15).all()
    truth = _column()
    heat = torch.stack([_blob(*p) for p in truth])
    heat[2] = _blob(*(truth[2] + [0.0, 6.0])) + _blob(*truth[2], peak=0.1)  # channel 2 peaks 6 px down the column
    vector = ChainPrior(prior.steps, prior.spread)
    assert vector.spread.min() > 3.0  # the round prior's sigma is the sideways one
    np.testing.assert_allclose(chain_peaks(heat, vector)[0][2].numpy(), truth[2] + [0.0, 6.0], atol=0.2)
    np.testing.assert_allclose(chain_peaks(heat, prior)[0][2].numpy(), truth[2], atol=0.2)
    # a turn the columns make costs less than a step of the same length that skips a vertebra
    turned = 10.0 * np.array([np.sin(0.2), np.cos(0.2)])
    assert prior.step_cost(turned, 1) < 1.0 < 20.0 < prior.step_cost(np.array([0.0, 20.0]), 1)
    again = ChainPrior.from_payload(prior.to_payload())
    np.testing.assert_allclose(again.step_cost(turned, 1), prior.step_cost(turned, 1))
    older = {k: v for k, v in prior.to_payload().items() if k not in ChainPrior.POLAR}
    assert ChainPrior.from_payload(older).lengths is None  # a model file of stop 37 decodes by the step vector
    np.testing.assert_allclose(ChainPrior.from_payload(older).step_cost(turned, 1), vector.step_cost(turned, 1))


def _scaled_columns(scales, m: int = 6) -> list[np.ndarray]:
    return [_column()[0] + np.array([[0.0, 10.0 * s * k] for k in range(m)]) for s in scales]


def test_a_large_column_keeps_its_vertebrae_where_steps_alone_pull_one_to_the_median_step(monkeypatch):
    """Training columns differ in size, each even along itself: a step's length varies across patients, the
    ratio of one step to the next does not. On a column larger than any of them (framed tighter), a peak one
    median step below the previous vertebra fits the lengths better than the column's own step; only how the
    steps follow each other tells."""
    assert ChainPrior.fit(_scaled_columns(np.linspace(0.8, 1.2, 9))).ratios is None  # too few images for bends
    monkeypatch.setattr(ChainPrior, "BEND_MIN_IMAGES", 9)
    prior = ChainPrior.fit(_scaled_columns(np.linspace(0.8, 1.2, 9)))
    assert prior.ratios is not None and np.allclose(prior.ratios, 0.0) and np.allclose(prior.bends, 0.0)
    assert np.allclose(prior.ratio_spread, ChainPrior.GRID / 10.0)  # the grid's floor: every column is even
    truth = _scaled_columns([1.6])[0]
    heat = torch.stack([_blob(*p, size=(112, 32), sigma=1.0) for p in truth])
    below = truth[2] + [0.0, 10.0]  # a median step below vertebra 2
    heat[3] = _blob(*below, size=(112, 32), sigma=1.0) + _blob(*truth[3], size=(112, 32), sigma=1.0, peak=0.01)
    steps_only = dataclasses.replace(prior, **dict.fromkeys(ChainPrior.BENDS))
    np.testing.assert_allclose(chain_peaks(heat, steps_only)[0][3].numpy(), below, atol=0.2)
    np.testing.assert_allclose(chain_peaks(heat, prior)[0].numpy(), truth, atol=0.2)
    # how a step follows the previous one: a turn or a change of length costs, an even step does not
    assert prior.bend_cost(np.array(0.0), np.array(0.0), 2) == pytest.approx(0.0)
    assert prior.bend_cost(np.log(2.0), np.array(0.0), 2) > prior.bend_cost(np.array(0.0), np.array(0.2), 2) > 1.0
    again = ChainPrior.from_payload(prior.to_payload())
    np.testing.assert_allclose(again.bend_spread, prior.bend_spread)
    assert again.bend_weight == prior.bend_weight
    older = {k: v for k, v in prior.to_payload().items() if k not in ChainPrior.BENDS}  # a model file of stop 41
    assert ChainPrior.from_payload(older).ratios is None
    assert ChainPrior.from_payload(older).bend_cost(np.log(2.0), np.array(0.0), 2) == 0.0


def test_the_decoding_with_bends_is_the_cheapest_chain_and_passes_through_a_fixed_centre(monkeypatch):
    """Exact: on a small random problem the chosen chain is the one of least total cost of all P^M chains."""
    rng = np.random.default_rng(3)
    monkeypatch.setattr(ChainPrior, "BEND_MIN_IMAGES", 12)
    prior = ChainPrior.fit(_scaled_columns(rng.uniform(0.8, 1.2, 12), m=4))
    xy = rng.uniform(0, 40, (6, 2))
    unary = rng.exponential(2.0, (4, 6))
    unary[2, [0, 1, 4, 5]] = np.inf  # as a centre a person placed leaves the channel: two candidates

    def total(path) -> float:
        s = [xy[path[o + 1]] - xy[path[o]] for o in range(3)]
        log_length = [np.log(max(np.hypot(*v), ChainPrior.GRID)) for v in s]
        turn = [np.arctan2(v[1], v[0]) for v in s]
        return (
            sum(unary[o, k] for o, k in enumerate(path))
            + sum(prior.weight * prior.step_cost(s[o], o) for o in range(3))
            + sum(prior.bend_cost(log_length[o + 1] - log_length[o], turn[o + 1] - turn[o], o) for o in range(2))
        )

    best = min(itertools.product(range(6), repeat=4), key=total)
    chosen = _viterbi(unary, xy, prior)
    assert chosen[2] in (2, 3)
    assert total(chosen) == pytest.approx(total(best))
    # each channel offers only its cheapest few: a fixed centre's channel still offers its own
    monkeypatch.setattr(chain_module, "BEND_CANDIDATES", 1)
    pruned = _viterbi(unary, xy, prior)
    assert pruned[2] == [2, 3][int(np.argmin(unary[2, [2, 3]]))]
    assert all(pruned[o] == int(np.argmin(unary[o])) for o in range(4))
