"""Tables for RESULTS.md from one or more ``simulate`` runs of the same campaign (not a test).

A campaign's seeds may run in separate processes (``simulate --first-seed``); this
merges their ``campaign.json`` files, summarises them with the package's own
:func:`~scn_annotator.active.simulate.summarise`, and prints the learning curve, the
labelled images each strategy needs to reach random's final error, the oracle's
corrections per test image for the models at every budget, and the corrections
summed over the labelled images.

    python benchmarks/campaigns.py benchmarks/out/campaign-hand [more folders] [--plot docs/x.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scn_annotator.active.effort import MODES
from scn_annotator.active.learning_curves import plot
from scn_annotator.active.simulate import CampaignResult, StrategySummary, summarise


def load(folders: list[Path], only: list[str] | None = None) -> CampaignResult:
    results = [CampaignResult.read(f / "campaign.json") for f in folders]
    if only:  # some strategies of folders that ran more (the others' seeds then count without them)
        for r in results:
            r.curves = [c for c in r.curves if c.strategy in only]
            r.campaign = r.campaign.replace(strategies=[s for s in r.campaign.strategies if s in only])
    merged = results[0]
    for other in results[1:]:
        if other.test_images != merged.test_images or other.config != merged.config:
            raise SystemExit(f"{other}: not the same campaign (test images or training config differ)")
        merged.curves += other.curves
    # strategies may run in separate processes too (one folder per strategy and seed): all of them count
    strategies = list(dict.fromkeys(s for r in results for s in r.campaign.strategies))
    seeds = {c.seed for c in merged.curves}
    complete = {s for s in seeds if len({c.strategy for c in merged.curves if c.seed == s}) == len(strategies)}
    merged.curves = [c for c in merged.curves if c.seed in complete]  # a seed counts once all strategies ran
    if not complete:
        raise SystemExit(f"{', '.join(map(str, folders))}: no seed has run every strategy yet")
    merged.campaign = merged.campaign.replace(seeds=sorted(complete), strategies=strategies)
    return merged


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--only", type=lambda s: s.split(","), help="these strategies only (comma-separated)")
    args = ap.parse_args()
    result = load(args.folders, args.only)
    summary = summarise(result)
    print(
        f"seeds {result.campaign.seeds}, {len(result.test_images)} test images; "
        f"mean test error ({result.unit}) ± SD over seeds"
    )
    budgets = next(iter(summary.values())).budgets
    later = budgets[1:]
    print(
        "| strategy | "
        + " | ".join(str(b) for b in budgets)
        + " | images to reach random's error at "
        + " / ".join(str(b) for b in later)
        + " (fewer) |"
    )
    print("|---" * (len(budgets) + 2) + "|")
    for name, s in summary.items():
        cells = " | ".join(f"{m:.2f} ± {sd:.2f}" for m, sd in zip(s.mean, s.sd))
        reach = (s.labels_to_reach_random or [None] * len(budgets))[1:]
        text = " / ".join(
            "not reached" if r is None else f"{r:.1f} ({100 * (1 - r / b):.0f} %)" for r, b in zip(reach, later)
        )
        print(f"| {name} | {cells} | {text} |")
    if all(s.test_effort for s in summary.values()):
        _test_effort(summary, budgets)
    if all(s.corrections for s in summary.values()):
        _corrections(summary, budgets)
    per_seed = {}
    for c in result.curves:
        per_seed.setdefault(c.strategy, []).append([p.mean for p in c.points])
    print("\nper seed, final error:", {k: np.round(np.array(v)[:, -1], 2).tolist() for k, v in per_seed.items()})
    if args.plot:
        print("plot:", plot(result, summary, args.plot))


def _test_effort(summary: dict[str, StrategySummary], budgets: list[int]) -> None:
    print("\ncorrections per test image of the model at each budget (proposals / conditioned; manual: all)")
    print("| strategy | " + " | ".join(str(b) for b in budgets) + " |")
    print("|---" * (len(budgets) + 1) + "|")
    for name, s in summary.items():
        t = s.test_effort
        cells = " | ".join(f"{t['proposals'][i]:.1f} / {t['conditioned'][i]:.1f}" for i in range(len(budgets)))
        print(f"| {name} (of {t['manual'][0]:.0f}) | {cells} |")


def _corrections(summary: dict[str, StrategySummary], budgets: list[int]) -> None:
    print(f"\ncorrections to label the {budgets[-1]} images, summed over the rounds (mean ± SD over seeds)")
    print(
        "| strategy | " + " | ".join(MODES) + " | per image, conditioned "
        "| to reach random's final error: proposals / conditioned (against random) |"
    )
    print("|---" * (len(MODES) + 3) + "|")
    base = summary["random"].corrections_to_reach if "random" in summary else None
    for name, s in summary.items():
        c, sd = s.corrections, s.corrections_sd
        cells = " | ".join(f"{c[m][-1]:.0f} ± {sd[m][-1]:.0f}" for m in MODES)
        paid = s.corrections_to_reach
        reach = "not reached" if paid is None else f"{paid['proposals']:.0f} / {paid['conditioned']:.0f}"
        if paid is not None and base:
            reach += f" ({100 * (paid['conditioned'] / base['conditioned'] - 1):+.0f} %)"
        print(f"| {name} | {cells} | {c['conditioned'][-1] / budgets[-1]:.2f} | {reach} |")
    # the same after the random start, which every strategy shares: what choosing changed
    print("\nafter the shared random start:")
    for name, s in summary.items():
        c = s.corrections
        rest = {m: c[m][-1] - c[m][0] for m in MODES}
        n = budgets[-1] - budgets[0]
        print(
            f"  {name}: {n} images, proposals {rest['proposals'] / n:.2f} / conditioned "
            f"{rest['conditioned'] / n:.2f} per image"
        )


if __name__ == "__main__":
    main()
