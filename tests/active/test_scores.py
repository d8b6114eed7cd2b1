from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.active.scores import STRATEGIES, ScoreInput, Strategy, register, score_all, select_batch
from scn_annotator.engine.geometry import fit_transform

H, W = 64, 48


def blob(x: float, y: float, sigma: float = 2.0, height: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return height * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def case(la_maps, sc_maps) -> ScoreInput:
    local, spatial = np.stack(la_maps), np.stack(sc_maps)
    final = local * spatial
    transform = fit_transform((480, 640), (H, W), spacing=(0.5, 0.5))  # 10 original px per net px
    return ScoreInput(
        "img", np.zeros((len(local), 2)), final.reshape(len(local), -1).max(1), final, local, spatial, transform
    )


AGREE = case([blob(20, 30)], [blob(20, 30, sigma=8)])
# the LA net sees two look-alike joints; SC knows which one it is and suppresses the other
AMBIGUOUS = case([blob(20, 30) + blob(32, 12, height=0.95)], [blob(20, 30, sigma=8)])
# worse: the wrong look-alike is even the stronger LA peak
WRONG = case([blob(20, 30, height=0.9) + blob(32, 12)], [blob(20, 30, sigma=8)])


@pytest.mark.parametrize("name", ["sc_la_mass", "la_ambiguity"])
def test_a_second_la_peak_that_sc_suppresses_is_high_disagreement(name):
    strategy = STRATEGIES[name]
    agree, ambiguous = strategy.score(AGREE), strategy.score(AMBIGUOUS)
    assert ambiguous.value > 3 * max(agree.value, 1e-3)
    assert ambiguous.per_landmark.shape == (1,)


def test_la_sc_distance_in_mm():
    assert STRATEGIES["sc_la_distance"].score(AGREE).value == pytest.approx(0.0)
    wrong = STRATEGIES["sc_la_distance"].score(WRONG)
    assert wrong.unit == "mm"
    # (12, 18) network px apart, 10 original px each at 0.5 mm
    assert wrong.value == pytest.approx(np.hypot(12, 18) * 10 * 0.5, rel=0.02)


def test_per_landmark_values_point_at_the_doubtful_landmark():
    x = case([blob(20, 30), blob(10, 10) + blob(40, 50)], [blob(20, 30, sigma=8), blob(10, 10, sigma=8)])
    for name in ("sc_la_mass", "la_ambiguity"):
        per = STRATEGIES[name].score(x).per_landmark
        assert per[1] > per[0]
    record = STRATEGIES["sc_la_mass"].score(x).to_record("sc_la_mass")
    assert record.per_landmark[1] > record.per_landmark[0] and "max" in record.extra


def test_least_confident_and_random():
    low = ScoreInput("a", np.zeros((3, 2)), np.array([0.5, 2.0, 2.0]))
    high = ScoreInput("b", np.zeros((3, 2)), np.array([2.4, 2.5, 2.5]))
    assert STRATEGIES["least_confident"].score(low).value > STRATEGIES["least_confident"].score(high).value
    r = STRATEGIES["random"]
    assert r.score(low).value == r.score(low).value  # repeatable
    assert r.score(low).value != r.score(ScoreInput("a", low.points, low.confidence, round=1)).value


def test_mc_dropout_spread():
    mc = np.zeros((4, 2, 2))
    mc[:, 1, 0] = [0, 2, 4, 6]  # landmark 1 moves between passes, landmark 0 does not
    scored = STRATEGIES["mc_dropout"].score(ScoreInput("a", np.zeros((2, 2)), np.ones(2), mc_points=mc))
    assert scored.per_landmark[0] == 0 and scored.per_landmark[1] == pytest.approx(2.0)


def test_score_all_skips_what_an_input_cannot_feed():
    only_points = ScoreInput("a", np.zeros((2, 2)), np.ones(2))
    assert set(score_all(only_points)) == {"random", "least_confident"}
    assert {"sc_la_mass", "la_ambiguity", "sc_la_distance"} <= set(score_all(AGREE))


def test_a_new_strategy_is_one_class():
    @register
    class Constant(Strategy):
        name = "constant_for_test"

        def score(self, x):
            from scn_annotator.active.scores import Scored

            return Scored(7.0, np.zeros(len(x.points)))

    try:
        assert score_all(AGREE)["constant_for_test"].value == 7.0
    finally:
        del STRATEGIES["constant_for_test"]


def test_select_batch_with_and_without_diversity():
    scores = {"a": 0.9, "a2": 0.89, "b": 0.5, "c": 0.1}
    features = {
        "a": np.array([1.0, 0.0]),
        "a2": np.array([1.0, 0.01]),
        "b": np.array([0.0, 1.0]),
        "c": np.array([-1.0, -1.0]),
    }
    assert select_batch(scores, 2) == ["a", "a2"]
    assert select_batch(scores, 2, features, diversity=1.0) == ["a", "b"]


def test_conflict_and_residual_ambiguity():
    conflict, residual = STRATEGIES["sc_la_conflict"], STRATEGIES["residual_ambiguity"]
    assert conflict.score(AGREE).value < 0.1
    assert 0.9 < conflict.score(AMBIGUOUS).value < 1.0  # a rejected look-alike almost as strong
    assert conflict.score(WRONG).value > 1.0  # LA prefers the place SC rejects
    assert residual.score(AGREE).value == 0.0
    # SC too broad to suppress the look-alike: a second peak survives in LA x SC
    broad = case([blob(20, 30) + blob(30, 30)], [blob(25, 30, sigma=20)])
    assert residual.score(broad).value > 0.5 > residual.score(AMBIGUOUS).value


def test_the_arbitrary_sign_of_la_and_sc_does_not_matter():
    flipped = case([-(blob(20, 30) + blob(32, 12, height=0.95))], [-blob(20, 30, sigma=8)])
    for name in ("sc_la_distance", "sc_la_mass", "la_ambiguity", "sc_la_conflict", "residual_ambiguity"):
        assert STRATEGIES[name].score(flipped).value == pytest.approx(STRATEGIES[name].score(AMBIGUOUS).value)
