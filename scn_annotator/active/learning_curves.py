"""The learning curves of a simulated campaign, drawn (``learning_curves.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.atomic import atomic_open
from .simulate import CampaignResult, StrategySummary

__all__ = ["plot"]


def plot(result: CampaignResult, summary: dict[str, StrategySummary], path: Path) -> bool:
    """Learning curves: mean point error and share of errors > 4 against labelled images, seeds shaded.

    matplotlib is optional (``pip install scn-annotator[plot]``): without it nothing is
    drawn and this returns False.
    """
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, s in summary.items():
        b = np.array(s.budgets)
        m, sd = np.array(s.mean), np.array(s.sd)
        (line,) = axes[0].plot(b, m, marker="o", label=name)
        axes[0].fill_between(b, m - sd, m + sd, color=line.get_color(), alpha=0.15)
        per_seed = np.array([[p.over_4 for p in c.points] for c in result.curves if c.strategy == name])
        o, osd = 100 * per_seed.mean(0), 100 * per_seed.std(0)
        axes[1].plot(b, o, marker="o", color=line.get_color(), label=name)
        axes[1].fill_between(b, o - osd, o + osd, color=line.get_color(), alpha=0.15)
    axes[0].set_ylabel(f"mean point error ({result.unit})")
    axes[1].set_ylabel(f"errors > 4 {result.unit} (%)")
    for ax in axes:
        ax.set_xlabel("labelled images")
        ax.grid(alpha=0.3)
    axes[0].legend()
    seeds = len(result.campaign.seeds)
    fig.suptitle(f"Active learning on {len(result.test_images)} held-out images ({seeds} seeds, mean ± SD)")
    fig.tight_layout()
    with atomic_open(path) as out:
        fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
    return True
