"""Cobb angles and their SMAPE on spines built with known tilts."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.engine.evaluation import evaluate
from scn_annotator.engine.measurements import CobbAngles, cobb_angles, smape, spine_corners


def spine(tilts_deg, xs=None, height=40.0, width=60.0, gap=10.0) -> np.ndarray:
    """Corners (tl, tr, bl, br per vertebra, top to bottom) of vertebrae tilted by ``tilts_deg``."""
    corners = []
    for k, tilt in enumerate(np.radians(tilts_deg)):
        cx = 500.0 if xs is None else xs[k]
        cy = 100.0 + k * (height + gap)
        along, down = np.array([np.cos(tilt), np.sin(tilt)]), np.array([-np.sin(tilt), np.cos(tilt)])
        for side_down, side_along in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            corners.append([cx, cy] + side_along * width / 2 * along + side_down * height / 2 * down)
    return np.array(corners)


def test_a_straight_spine_has_no_angle():
    angles = cobb_angles(spine([0.0] * 17), image_height=1000)
    assert angles.angles == pytest.approx((0.0, 0.0, 0.0), abs=1e-6) and not angles.s_shaped


def test_a_c_shaped_spine_main_angle_is_between_its_most_tilted_vertebrae():
    tilts = [0, 0, 0, *np.linspace(-10, 20, 11), 20, 20, 20]  # vertebrae 3 (-10) to 13 (+20): the curve
    xs = 500 + 200 * np.sin(np.linspace(0, np.pi, 17))  # a C: the centres bow to one side of their chord
    angles = cobb_angles(spine(tilts, xs), image_height=1000)
    assert not angles.s_shaped and angles.main_vertebrae == (3, 13)
    assert angles.main == pytest.approx(30.0, abs=1e-6)
    # not S: the top vertebra against the curve's upper end, the bottom one against its lower end
    assert angles.second == pytest.approx(10.0, abs=1e-6) and angles.third == pytest.approx(0.0, abs=1e-6)


def test_an_s_shaped_spine_has_a_main_curve_and_one_above_and_below_it():
    tilts = [0, 5, 10, 15, 20, 10, 0, -10, -15, -10, -5, 0, 0, 0, 0, 0, 0]
    xs = 500 + 60 * np.sin(np.linspace(0, 2 * np.pi, 17))  # centres on both sides of their chord
    angles = cobb_angles(spine(tilts, xs), image_height=2000)  # the main curve in the image's upper half
    assert angles.s_shaped and angles.main_vertebrae == (4, 8)
    assert angles.main == pytest.approx(35.0, abs=1e-6)
    assert angles.second == pytest.approx(20.0, abs=1e-6)  # vertebra 4 against those above it (0 degrees)
    assert angles.third == pytest.approx(15.0, abs=1e-6)  # vertebra 8 against those below it (0 degrees)


def test_corners_missing_or_in_another_shape_are_refused():
    with pytest.raises(ValueError, match="4 corners per vertebra"):
        cobb_angles(np.zeros((10, 2)), 100)
    corners = spine([0.0] * 17)
    corners[5] = np.nan
    with pytest.raises(ValueError, match="missing"):
        cobb_angles(corners, 100)


def test_smape_by_hand():
    def a(*angles):
        return CobbAngles(*angles, main_vertebrae=(0, 1), s_shaped=False)

    # image 1: |30-20| + |10-10| + |20-10| = 20 over 100 -> 0.2; image 2: identical -> 0; image 3: all zero -> 0
    assert smape([a(30, 10, 20), a(5, 4, 3), a(0, 0, 0)], [a(20, 10, 10), a(5, 4, 3), a(0, 0, 0)]) == pytest.approx(
        100 * 0.2 / 3
    )
    with pytest.raises(ValueError, match="as many"):
        smape([a(1, 1, 1)], [])


def test_a_layout_is_a_spine_by_its_corner_names_in_any_order():
    names = ["T1_tr", "T1_tl", "T1_bl", "T1_br", "T2_br", "T2_tl", "T2_tr", "T2_bl"]  # vertebrae as they come
    np.testing.assert_array_equal(spine_corners(names), [1, 0, 2, 3, 5, 6, 7, 4])
    assert spine_corners([f"L{i}" for i in range(8)]) is None  # a hand
    assert spine_corners(["T1_tl", "T1_tr", "T1_bl", "T1_br"]) is None  # one vertebra: no angle
    assert spine_corners(["T1_tl", "T1_tr", "T1_bl", "T1_br", "T2_tl", "T2_tr", "T2_bl"]) is None  # a corner short


def test_evaluate_scores_the_cobb_angles_of_a_spine_layout():
    names = [f"V{v}_{c}" for v in range(1, 18) for c in ("tl", "tr", "bl", "br")]
    tilts = [0, 5, 10, 15, 20, 10, 0, -10, -15, -10, -5, 0, 0, 0, 0, 0, 0]
    xs = 500 + 60 * np.sin(np.linspace(0, 2 * np.pi, 17))
    truth = {"a": spine(tilts, xs), "b": spine([0.0] * 17)}
    steeper = [2 * t for t in tilts]  # every angle of image a doubled: |a - b| / (a + b) = 1/3
    predicted = {"a": spine(steeper, xs), "b": spine([0.0] * 17)}
    report = evaluate(predicted, truth, {"a": None, "b": None}, names, heights={"a": 2000.0, "b": 2000.0})
    assert report.cobb is not None and report.cobb.image_ids == ["a", "b"]
    assert report.cobb.smape == pytest.approx(100 * (1 / 3) / 2)  # image b: straight and straight, no error
    assert report.cobb.main_error_median == pytest.approx(35.0 / 2)  # 35 off on a, 0 on b
    assert "SMAPE 16.7 %" in report.format() and report.to_dict()["cobb"]["images"] == 2
    # no heights (a file evaluated without its images) or no spine: no Cobb angles
    assert evaluate(predicted, truth, {"a": None, "b": None}, names).cobb is None
    hand = evaluate(predicted, truth, {"a": None, "b": None}, [f"L{i}" for i in range(68)], heights={"a": 1, "b": 1})
    assert hand.cobb is None
