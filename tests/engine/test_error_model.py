"""How a model's errors go together: learned from errors, used for what one correction implies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scn_annotator.app.sample_spine import spine_names
from scn_annotator.engine.error_model import ErrorModel
from scn_annotator.engine.objects import LandmarkObjects, ObjectLayout

MEMBERS = LandmarkObjects.infer(spine_names(12)).members


def _errors(images: int, seed: int = 0) -> list[np.ndarray]:
    """A column drawn too low or high by an amount that drifts along it, each vertebra off by its own shift
    too, and a little noise per corner: the shape of a model's errors on real spines."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        drift = np.cumsum(rng.normal(0, 0.6, (12, 2)), axis=0)  # correlated along the chain
        own = rng.normal(0, 1.0, (12, 2))
        out.append(np.repeat(drift + own, 4, axis=0) + rng.normal(0, 0.2, (48, 2)))
    return out


def test_errors_of_one_vertebra_move_together_and_fade_along_the_chain():
    model = ErrorModel.fit(MEMBERS, _errors(60), gap=10.0)
    assert model is not None and model.lags[0] == 1.0
    assert model.lags[1] > model.lags[4] > 0  # neighbours share more than distant vertebrae
    known = np.zeros(48, dtype=bool)
    known[20] = True  # vertebra 5's first corner, found 2 px right of where it was proposed
    errors = np.zeros((48, 2))
    errors[20] = [2.0, 0.0]
    expected = model.expected(MEMBERS, known, errors)
    partners, neighbour, far = expected[21:24, 0], expected[24:28, 0], expected[44:48, 0]
    assert (partners > 1.5).all()  # the rest of the vertebra follows almost all the way
    assert (neighbour > 0.3).all() and neighbour.max() < partners.min()  # its neighbour partly
    assert (np.abs(far) < neighbour).all()
    np.testing.assert_allclose(expected[:, 1], 0.0, atol=0.05)  # x says little about y here


def test_a_vertebra_found_on_another_one_teaches_nothing_of_precision():
    errors = _errors(30)
    clean = ErrorModel.fit(MEMBERS, errors, gap=10.0)
    shifted = [e.copy() for e in errors]
    for e in shifted[:10]:
        e[8:12] += [0.0, 10.0]  # vertebra 2 proposed a whole gap off
    with_slips = ErrorModel.fit(MEMBERS, shifted, gap=10.0)
    assert clean is not None and with_slips is not None
    np.testing.assert_allclose(with_slips.block, clean.block, rtol=0.35)  # not blown up by the 10-px errors


def test_objects_of_different_sizes_or_single_landmarks_have_no_error_model():
    assert ErrorModel.fit([(0,), (1,), (2,)], [np.zeros((3, 2))], gap=5.0) is None
    assert ErrorModel.fit([(0, 1), (2, 3, 4)], [np.zeros((5, 2))], gap=5.0) is None


def test_the_error_model_travels_in_the_layout():
    objects = LandmarkObjects.infer(spine_names(12))
    points = [np.repeat(np.stack([np.zeros(12), 10.0 * np.arange(12)], axis=1), 4, axis=0) + e for e in _errors(3)]
    layout = ObjectLayout.fit(objects, points)
    model = ErrorModel.fit(MEMBERS, _errors(20), gap=10.0)
    back = ObjectLayout.from_payload(dataclasses.replace(layout, errors=model).to_payload())
    assert back.errors is not None
    np.testing.assert_allclose(back.errors.block, model.block)
    np.testing.assert_allclose(back.errors.lags, model.lags)
    assert ObjectLayout.from_payload(layout.to_payload()).errors is None  # model files from before


@pytest.mark.parametrize("images", [8, 60])
def test_the_covariance_is_symmetric_and_positive(images):
    model = ErrorModel.fit(MEMBERS, _errors(images), gap=10.0)
    cov = model.covariance(MEMBERS)
    np.testing.assert_allclose(cov, cov.T, atol=1e-12)
    assert np.linalg.eigvalsh(cov + 0.05 * np.mean(np.diag(cov)) * np.eye(96)).min() > 0


def test_an_object_without_labels_is_left_out_quietly():
    """A vertebra outside the image (every corner NaN) neither teaches the correlation nor raises a warning."""
    import warnings

    members = [[0, 1], [2, 3], [4, 5]]
    rng = np.random.default_rng(0)
    errors = [rng.normal(size=(6, 2)) for _ in range(6)]
    errors[0][[4, 5]] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = ErrorModel.fit(members, errors, gap=100.0)
    assert model is not None and np.isfinite(model.block).all() and np.isfinite(model.lags).all()
