from __future__ import annotations

import json

import numpy as np
import pytest

from scn_annotator.engine.evaluation import align_tables, evaluate
from scn_annotator.errors import ScnError
from scn_annotator.io.landmark_files import LandmarkTable

TRUTH = {"a": np.zeros((4, 2)), "b": np.full((4, 2), 10.0)}


def shifted(offsets_a, offsets_b):
    return {"a": TRUTH["a"] + np.c_[offsets_a, np.zeros(4)], "b": TRUTH["b"] + np.c_[offsets_b, np.zeros(4)]}


def test_summary_numbers_in_mm():
    pred = shifted([1, 2, 3, 40], [0, 5, 2.5, 11])  # px; spacing 0.5 mm
    report = evaluate(pred, TRUTH, {"a": (0.5, 0.5), "b": (0.5, 0.5)}, ["p", "q", "r", "s"])
    mm = np.array([0.5, 1, 1.5, 20, 0, 2.5, 1.25, 5.5])
    s = report.summary()
    assert report.unit == "mm" and s["points"] == 8
    assert s["mean"] == pytest.approx(mm.mean())
    assert s["sd"] == pytest.approx(mm.std())
    assert s["median"] == pytest.approx(np.median(mm))
    assert s["sdr"]["2"] == pytest.approx(5 / 8)
    assert s["sdr"]["2.5"] == pytest.approx(6 / 8)
    assert s["sdr"]["10"] == pytest.approx(7 / 8)
    assert s["outliers_over_10"] == 1
    rows = {r["landmark"]: r for r in report.per_landmark()}
    assert rows["s"]["mean"] == pytest.approx((20 + 5.5) / 2)
    assert rows["s"]["over_4"] == 2
    text = report.format()
    assert "in mm" in text and "mean 4.03" in text and "errors > 10 mm: 1" in text


def test_pixels_when_any_spacing_is_unknown():
    report = evaluate(shifted([1] * 4, [1] * 4), TRUTH, {"a": (0.5, 0.5), "b": None}, list("pqrs"))
    assert report.unit == "px"
    assert report.summary()["mean"] == pytest.approx(1.0)
    assert "in px (no pixel spacing known for every image)" in report.format()


def test_missing_predictions_fail_every_threshold_and_missing_truth_is_skipped():
    pred = shifted([1] * 4, [1] * 4)
    pred["a"][0] = np.nan
    truth = {k: v.copy() for k, v in TRUTH.items()}
    truth["b"][3] = np.nan
    report = evaluate(pred, truth, {"a": (1, 1), "b": (1, 1)}, list("pqrs"))
    s = report.summary()
    assert s["points"] == 7 and s["missing_predictions"] == 1
    assert s["sdr"]["10"] == pytest.approx(6 / 7)
    assert s["mean"] == pytest.approx(1.0)


def test_json_report(tmp_path):
    report = evaluate(shifted([1] * 4, [2] * 4), TRUTH, {"a": (1, 1), "b": (1, 1)}, list("pqrs"))
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["summary"]["mean"] == pytest.approx(1.5)
    assert data["per_image"]["b"] == [2.0] * 4
    assert len(data["per_landmark"]) == 4


def test_nothing_in_common_is_an_error():
    with pytest.raises(ScnError, match="no image"):
        evaluate({"x": np.zeros((4, 2))}, TRUTH, {}, list("pqrs"))


def table(names, points):
    return LandmarkTable(names, points)


def test_align_by_name_or_by_position():
    pred = table(["b", "a"], {"1": np.array([[2.0, 2], [1, 1]])})
    truth = table(["a", "b"], {"1": np.zeros((2, 2))})
    points, names = align_tables(pred, truth)
    assert names == ["a", "b"] and points["1"].tolist() == [[1, 1], [2, 2]]
    headerless = table(["L0", "L1"], {"1": np.zeros((2, 2))})
    assert align_tables(pred, headerless)[1] == ["b", "a"]
    with pytest.raises(ScnError, match="do not match"):
        align_tables(pred, table(["c", "d"], {"1": np.zeros((2, 2))}))
    with pytest.raises(ScnError, match="do not match"):
        align_tables(pred, table(["L0", "L1", "L2"], {"1": np.zeros((3, 2))}))


def test_one_point_error_rule_with_missing_landmarks():
    from scn_annotator.engine.evaluation import mean_error, point_errors

    truth = np.array([[0.0, 0.0], [np.nan, np.nan], [10.0, 10.0]])
    predicted = np.array([[3.0, 4.0], [1.0, 1.0], [np.nan, np.nan]])
    e = point_errors(predicted, truth, spacing=(0.5, 0.5))
    assert e[0] == 2.5 and np.isnan(e[1]) and np.isinf(e[2])
    assert mean_error(e[:2]) == 2.5  # an absent landmark is no error
    assert mean_error(e) == np.inf  # a missing prediction is a failure
    assert mean_error(np.array([np.nan, np.nan])) is None
