"""What a campaign's curves say: per strategy, the mean curve over seeds, and what it saves against random.

Kept apart from the campaign runner (:mod:`.simulate`), which needs torch: the
benchmark tables and the plots read finished campaigns only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..configs import Record
from .effort import MODES

if TYPE_CHECKING:
    from .simulate import CampaignResult, CurvePoint

__all__ = ["StrategySummary", "summarise"]


@dataclass(frozen=True)
class StrategySummary(Record):
    """One strategy over its seeds: mean (SD) test error per budget, and what it saves against random."""

    budgets: list[int]
    mean: list[float]
    sd: list[float]
    over_4: list[float]
    auc: float  # the mean curve's mean height (trapezoids over the budgets)
    #: landmarks placed to label the images of the first k budgets, summed over rounds, per effort mode
    corrections: dict[str, list[float]] | None = None
    corrections_sd: dict[str, list[float]] | None = None
    test_effort: dict[str, list[float]] | None = None  # corrections per test image at each budget
    #: labelled images at which the mean curve first reaches random's final error (interpolated)
    labels_to_reach_random_final: float | None = None
    saving_vs_random: float | None = None  # 1 - that / random's final budget
    #: per effort mode, the corrections summed over the images labelled until random's final error is reached
    #: (interpolated like the images): what a project pays for random's final model under this strategy
    corrections_to_reach: dict[str, float] | None = None
    #: at each of random's budgets, the labelled images this strategy's mean curve needs for random's error there
    #: (None where it never gets there): the saving "at 32" as well as at the end
    labels_to_reach_random: list[float | None] | None = None


def summarise(result: CampaignResult) -> dict[str, StrategySummary]:
    """Per strategy: mean (and SD over seeds) error at each budget, area under the curve, and how many
    labelled images it needs to reach the error random selection reaches at its final budget."""
    by_strategy: dict[str, list[list[CurvePoint]]] = {}
    for curve in result.curves:
        by_strategy.setdefault(curve.strategy, []).append(curve.points)
    out = {name: _summary(curves) for name, curves in by_strategy.items()}
    if "random" in out:
        random = out["random"]
        for name, s in out.items():
            at_each = [_first_reaching(s.budgets, s.mean, e) for e in random.mean]
            reach = at_each[-1]  # random's final error
            saving = None if reach is None else 1.0 - reach / random.budgets[-1]
            paid = None
            if reach is not None and s.corrections:
                paid = {m: float(np.interp(reach, s.budgets, c)) for m, c in s.corrections.items()}
            out[name] = s.replace(
                labels_to_reach_random_final=reach,
                saving_vs_random=saving,
                corrections_to_reach=paid,
                labels_to_reach_random=at_each,
            )
    return out


def _summary(curves: list[list[CurvePoint]]) -> StrategySummary:
    budgets = [p.labelled for p in curves[0]]
    errors = np.array([[p.mean for p in c] for c in curves], dtype=float)  # (seeds, budgets)
    mean = errors.mean(axis=0)
    b = np.asarray(budgets, dtype=float)
    area = float(((mean[1:] + mean[:-1]) / 2 * np.diff(b)).sum())  # trapezoids
    corrections = corrections_sd = test_effort = None
    if all(p.effort for c in curves for p in c):
        # landmarks placed to label the first k budgets' images, summed over rounds; mean (SD) over seeds
        totals = {str(m): np.cumsum([[p.effort[m] for p in c] for c in curves], axis=1) for m in MODES}  # type: ignore[index]
        corrections = {m: t.mean(axis=0).tolist() for m, t in totals.items()}
        corrections_sd = {m: t.std(axis=0).tolist() for m, t in totals.items()}
    if all(p.test_effort is not None for c in curves for p in c):
        test_effort = {
            str(m): np.mean([[p.test_effort[m] for p in c] for c in curves], axis=0).tolist()  # type: ignore[index]
            for m in MODES
        }
    return StrategySummary(
        budgets=budgets,
        mean=mean.tolist(),
        sd=errors.std(axis=0).tolist(),
        over_4=np.array([[p.over_4 for p in c] for c in curves]).mean(axis=0).tolist(),
        auc=area / (b[-1] - b[0]) if len(b) > 1 else float(mean[0]),  # the curve's mean height
        corrections=corrections,
        corrections_sd=corrections_sd,
        test_effort=test_effort,
    )


def _first_reaching(budgets: list[int], errors: list[float], target: float) -> float | None:
    """The (interpolated) number of labelled images at which the curve first gets to ``target``."""
    for i, e in enumerate(errors):
        if e <= target:
            if i == 0:
                return float(budgets[0])
            b0, b1, e0, e1 = budgets[i - 1], budgets[i], errors[i - 1], errors[i]
            return float(b0 + (b1 - b0) * (e0 - target) / (e0 - e1)) if e0 != e1 else float(b1)
    return None
