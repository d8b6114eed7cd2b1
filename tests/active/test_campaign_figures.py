"""The figures the README's active-learning results come from, on cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.active.effort import EffortMode, _corrections, oracle_corrections
from scn_annotator.active.simulate import Campaign, CampaignResult, Curve, CurvePoint, summarise
from scn_annotator.active.summary import _first_reaching
from scn_annotator.engine.config import TrainConfig


def test_the_oracle_corrects_every_wrong_landmark_once_worst_first():
    errors = np.array([1.0, 5.0, 3.0, np.nan])
    present = np.array([True, True, True, False])
    assert oracle_corrections(errors, present, tolerance=2.0) == 2  # the 5 and the 3; the 1 is right
    assert oracle_corrections(errors, present, tolerance=10.0) == 0
    assert oracle_corrections(errors, present, tolerance=0.5) == 3  # the missing landmark costs nothing here
    seen = []

    def replace(confirmed):  # after the first correction (the worst, index 1) the model gets the rest right
        seen.append(confirmed.copy())
        return np.where(confirmed, 0.0, 0.1)

    assert oracle_corrections(errors, present, 2.0, replace) == 1
    assert seen[0].tolist() == [False, True, False, False]


class _Conditioner:
    """Proposals that are right once landmark 0 is confirmed, 10 px off at 1 and 2 before."""

    def __init__(self, truth):
        self.truth = truth

    def predict(self, hints):
        points = self.truth.copy()
        if np.isnan(hints[0]).any():
            points[1:3] += 10.0
        points[3] += 0.5  # always within tolerance
        points[0] += 10.0 * np.isnan(hints[0]).any()

        class _P:
            pass

        p = _P()
        p.points = points
        return p


class _Predictor:
    def __init__(self, truth):
        self.truth = truth

    def conditioner(self, image, keep_within, method):
        return _Conditioner(self.truth)


class _Image:
    spacing = None
    size = (100, 100)
    path = "phantom"


def test_effort_counts_exactly_on_a_case_built_for_it():
    from scn_annotator.active.effort import Tolerance

    truth = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0], [np.nan, np.nan]])
    counts = _corrections(_Predictor(truth), _Image(), truth, Tolerance(2.0, "px"), 3.0, "auto")
    # 4 landmarks in the image; proposals: 0, 1 and 2 wrong -> 3; conditioned: confirming 0 (the worst,
    # tied first) puts 1 and 2 right -> 1
    assert counts == {EffortMode.MANUAL: 4, EffortMode.PROPOSALS: 3, EffortMode.CONDITIONED: 1}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (3.5, 8.0),  # already there at the first budget
        (2.0, 16.0),  # reached exactly at a budget
        (1.5, 24.0),  # halfway from 2.0 (at 16) to 1.0 (at 32)
        (0.5, None),  # never
    ],
)
def test_first_reaching_interpolates_between_budgets(target, expected):
    assert _first_reaching([8, 16, 32], [3.0, 2.0, 1.0], target) == expected


def test_a_flat_stretch_reaches_at_its_end():
    assert _first_reaching([8, 16, 32], [3.0, 1.0, 1.0], 1.0) == 16.0
    assert _first_reaching([8, 16], [2.0, 2.0], 2.0) == 8.0


def _result(curves: dict[str, list[list[float]]]) -> CampaignResult:
    campaign = Campaign(strategies=list(curves), seeds=[0, 1], schedule=[8, 16, 32])
    result = CampaignResult(campaign, TrainConfig(), "mm", ["t0"])
    for name, per_seed in curves.items():
        for seed, errors in enumerate(per_seed):
            points = [
                CurvePoint(labelled=b, mean=e, median=e, over_4=0.0, over_10=0.0, picked=[])
                for b, e in zip([8, 16, 32], errors)
            ]
            result.curves.append(Curve(name, seed, points))
    return result


def test_saving_against_random_on_curves_known_by_hand():
    summary = summarise(
        _result(
            {
                "random": [[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]],  # reaches its own final 1.0 at 32
                "doubt": [[3.0, 1.0, 0.5], [3.0, 1.0, 0.5]],  # reaches 1.0 at 16: half the labels
                "worse": [[3.0, 2.5, 2.0], [3.0, 2.5, 2.0]],  # never gets there
                "mixed": [[3.0, 2.0, 1.0], [3.0, 1.0, 0.5]],  # mean 3.0, 1.5, 0.75: 1.0 at 16 + 16 * 0.5/0.75
            }
        )
    )
    assert summary["random"].labels_to_reach_random_final == 32.0 and summary["random"].saving_vs_random == 0.0
    assert summary["doubt"].labels_to_reach_random_final == 16.0 and summary["doubt"].saving_vs_random == 0.5
    assert summary["worse"].labels_to_reach_random_final is None and summary["worse"].saving_vs_random is None
    assert summary["mixed"].labels_to_reach_random_final == pytest.approx(16 + 16 * 0.5 / 0.75)
    # and random's error at every budget: 2.0 (random's at 16) at 8 + 8 * 1.0 / 2.0 for "doubt"
    assert summary["random"].labels_to_reach_random == [8.0, 16.0, 32.0]
    assert summary["doubt"].labels_to_reach_random == pytest.approx([8.0, 12.0, 16.0])
    assert summary["worse"].labels_to_reach_random == [8.0, 32.0, None]
    assert summary["mixed"].sd == pytest.approx([0.0, 0.5, 0.25])
    # the area under the mean curve over 8..32, by trapezoids: ((3+2)/2*8 + (2+1)/2*16) / 24
    assert summary["random"].auc == pytest.approx((20 + 24) / 24)


def test_corrections_for_random_final_error_sum_the_images_labelled_until_then():
    result = _result({"random": [[3.0, 2.0, 1.0]] * 2, "doubt": [[3.0, 1.5, 0.5]] * 2})
    per_round = {"random": [80, 80, 160], "doubt": [80, 120, 240]}  # corrections for the 8, 8 and 16 images added
    for curve in result.curves:
        for point, n in zip(curve.points, per_round[curve.strategy]):
            object.__setattr__(point, "effort", {"manual": n, "proposals": n, "conditioned": n // 2})
    summary = summarise(result)
    assert summary["random"].corrections_to_reach == {"manual": 320.0, "proposals": 320.0, "conditioned": 160.0}
    # doubt reaches 1.0 at 16 + 16 * 0.5 / 1.0 = 24 images: the 200 of the first 16, half of the last round's 240
    assert summary["doubt"].labels_to_reach_random_final == pytest.approx(24.0)
    assert summary["doubt"].corrections_to_reach["proposals"] == pytest.approx(200 + 120)
    assert summary["doubt"].corrections_to_reach["conditioned"] == pytest.approx(100 + 60)


def test_a_campaign_result_round_trips_through_its_file(tmp_path):
    result = _result({"random": [[3.0, 2.0, 1.0]]})
    result.write(tmp_path / "campaign.json")
    assert CampaignResult.read(tmp_path / "campaign.json") == result
