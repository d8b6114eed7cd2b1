"""Simulated campaigns predict and score through the worker's own path."""

from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.active.simulate import Campaign, run_campaign, split_ids, summarise
from scn_annotator.errors import ScnError


def test_a_tiny_campaign_runs_every_strategy_through_the_worker_path(sample_dir, tiny_cfg, monkeypatch):
    from scn_annotator.active import scores
    from scn_annotator.engine import inference

    calls = {"predict": 0, "mc": 0, "scoring": 0}
    real_predict, real_call = inference.Predictor.predict, scores.Scoring.__call__

    def predict(self, image, heatmaps=False, mc_passes=0):
        calls["predict"] += 1
        calls["mc"] += int(mc_passes > 0)
        return real_predict(self, image, heatmaps=heatmaps, mc_passes=mc_passes)

    def score(self, prediction):
        calls["scoring"] += 1
        return real_call(self, prediction)

    monkeypatch.setattr(inference.Predictor, "predict", predict)
    monkeypatch.setattr(scores.Scoring, "__call__", score)
    cfg = tiny_cfg.replace(input_size=(64, 48))
    campaign = Campaign(
        strategies=["least_confident", "mc_dropout"],
        seeds=[0],
        initial=4,
        batch=4,
        budget=8,
        test=4,
        initial_steps=6,
        round_steps=4,
        mc_passes=3,
    )
    result = run_campaign(
        sample_dir / "images", sample_dir / "labels.csv", cfg, campaign, device="cpu", log=lambda _m: None
    )
    pool = 24 - 4 - 4  # unlabelled images scored in the one round of each strategy
    assert calls["predict"] == calls["scoring"] == 2 * pool
    assert calls["mc"] == pool  # dropout passes only where the strategy needs them
    assert [c.strategy for c in result.curves] == ["least_confident", "mc_dropout"]
    for curve in result.curves:
        assert [p.labelled for p in curve.points] == [4, 8]
        assert all(np.isfinite(p.mean) for p in curve.points)
        assert len(set(curve.points[1].picked)) == 4
    assert set(summarise(result)) == {"least_confident", "mc_dropout"}


def test_a_campaign_counts_the_oracles_corrections_on_a_schedule(sample_dir, tiny_cfg):
    cfg = tiny_cfg.replace(input_size=(64, 48), hint_rate=0.5)
    campaign = Campaign(
        strategies=["random", "residual_ambiguity"],
        seeds=[0],
        schedule=[4, 6, 9],
        test=4,
        initial_steps=6,
        round_steps=4,
        effort="3mm",
        effort_test=2,
    )
    result = run_campaign(
        sample_dir / "images", sample_dir / "labels.csv", cfg, campaign, device="cpu", log=lambda _m: None
    )
    landmarks = 15  # the generated hands'
    for curve in result.curves:
        points = curve.points
        assert [p.labelled for p in points] == [4, 6, 9]
        first = points[0].effort  # the random start has no model to propose: every landmark is placed
        assert first == {"manual": 4 * landmarks, "proposals": 4 * landmarks, "conditioned": 4 * landmarks}
        for p in points[1:]:
            e, picked = p.effort, len(p.picked)
            assert e["manual"] == picked * landmarks
            assert 0 <= e["proposals"] <= e["manual"] and 0 <= e["conditioned"] <= e["manual"]
        for p in points:
            assert p.test_effort["manual"] == landmarks  # per test image
    summary = summarise(result)
    for name, s in summary.items():
        curves = [c for c in result.curves if c.strategy == name]
        totals = [sum(p.effort["proposals"] for p in c.points) for c in curves]
        assert s.corrections["proposals"][-1] == np.mean(totals)  # summed over the rounds
        assert s.corrections["manual"] == [4 * landmarks, 6 * landmarks, 9 * landmarks]
        assert len(s.test_effort["conditioned"]) == 3


def test_the_test_split_keeps_each_patient_on_one_side():
    ids = [f"p{p}-x{k}" for p in range(10) for k in range(1 + p % 3)]
    test, pool = split_ids(ids, 5, r"(p\d+)-")
    assert len(test) >= 5 and sorted(test + pool) == sorted(ids)
    assert not {i.split("-")[0] for i in test} & {i.split("-")[0] for i in pool}
    assert split_ids(ids, 5, r"(p\d+)-") == (test, pool)  # seeded
    with pytest.raises(ScnError, match="not a regular expression"):
        split_ids(ids, 5, "(")
    with pytest.raises(ScnError, match="increasing"):
        Campaign(strategies=["random"], seeds=[0], schedule=[8, 8]).budgets()


def test_an_interrupted_campaign_resumes_from_its_finished_curves(sample_dir, tiny_cfg, tmp_path, monkeypatch):
    from scn_annotator.active import simulate

    cfg = tiny_cfg.replace(input_size=(64, 48))
    campaign = Campaign(strategies=["random"], seeds=[0], schedule=[4, 6], test=4, initial_steps=4, round_steps=2)
    checkpoint = tmp_path / "campaign.json"
    first = run_campaign(
        sample_dir / "images",
        sample_dir / "labels.csv",
        cfg,
        campaign,
        device="cpu",
        log=lambda _m: None,
        checkpoint=checkpoint,
    )

    def no_training(self, *args, **kwargs):
        raise AssertionError("a finished curve was trained again")

    monkeypatch.setattr(simulate.Trainer, "run", no_training)
    lines: list[str] = []
    again = run_campaign(
        sample_dir / "images",
        sample_dir / "labels.csv",
        cfg,
        campaign,
        device="cpu",
        log=lines.append,
        checkpoint=checkpoint,
    )
    assert again.curves == first.curves
    assert any("resuming: 1 finished curves" in line for line in lines)
    # another design in the same file is not taken for this one
    other = Campaign(strategies=["random"], seeds=[0], schedule=[4, 6], test=4, initial_steps=4, round_steps=3)
    with pytest.raises(AssertionError, match="trained again"):
        run_campaign(
            sample_dir / "images",
            sample_dir / "labels.csv",
            cfg,
            other,
            device="cpu",
            log=lines.append,
            checkpoint=checkpoint,
        )


def test_a_campaign_starts_from_typical_images_and_runs_the_pool_strategies(sample_dir, tiny_cfg):
    from scn_annotator.active.pool import PoolInput, pick
    from scn_annotator.active.simulate import CampaignRun

    cfg = tiny_cfg.replace(input_size=(64, 48))
    campaign = Campaign(
        strategies=["typical", "coverage", "dense_disagreement", "auto"],
        seeds=[0],
        schedule=[4, 6],
        test=4,
        initial_steps=4,
        round_steps=2,
        initial_strategy="typical",
        embedding="features",
    )
    quiet = {"device": "cpu", "log": lambda _m: None}
    run = CampaignRun(sample_dir / "images", sample_dir / "labels.csv", cfg, campaign, **quiet)
    first = run.first_images(0)
    expected = pick("typical", PoolInput(run.pixels(run.pool_ids), np.empty((0, 0)), batch=4, seed=0))
    assert first == [run.pool_ids[r.index] for r in expected[:4]]
    result = run.run()
    assert sorted(c.strategy for c in result.curves) == sorted(campaign.strategies)
    for curve in result.curves:
        assert curve.points[0].picked == first  # every strategy of the seed starts from the same typical images
        assert len(curve.points[1].picked) == 2 and not set(curve.points[1].picked) & set(first)
    with pytest.raises(ScnError, match="unknown strategies"):
        CampaignRun(sample_dir / "images", sample_dir / "labels.csv", cfg, campaign.replace(initial_strategy="nope"))


def test_a_campaign_on_an_object_layout_measures_every_landmark(tmp_path, tiny_cfg):
    """Stage 1 of a spine learns the vertebrae's centres; the campaign's errors are still of all the corners."""
    from scn_annotator.app.sample_spine import generate_spine_sample

    labels = generate_spine_sample(tmp_path / "spines", count=12, vertebrae=4)
    cfg = tiny_cfg.replace(input_size=(96, 48))
    campaign = Campaign(
        strategies=["random", "dense_disagreement"], seeds=[0], schedule=[4, 6], test=3, initial_steps=4, round_steps=2
    )
    result = run_campaign(tmp_path / "spines" / "images", labels, cfg, campaign, device="cpu", log=lambda _m: None)
    for curve in result.curves:
        assert [p.labelled for p in curve.points] == [4, 6]
        assert all(np.isfinite(p.mean) for p in curve.points)


def test_a_campaign_round_on_an_object_layout_learns_how_its_errors_go_together(tmp_path, tiny_cfg):
    """The oracle's corrections are counted with proposals that follow a correction as the app's do."""
    from scn_annotator.active.simulate import CampaignRun, _predictor
    from scn_annotator.app.sample_spine import generate_spine_sample

    labels = generate_spine_sample(tmp_path / "spines", count=8, vertebrae=4)
    campaign = Campaign(strategies=["random"], seeds=[0], schedule=[4], test=2, initial_steps=4, round_steps=2)
    run = CampaignRun(
        tmp_path / "spines" / "images",
        labels,
        tiny_cfg.replace(input_size=(96, 48)),
        campaign,
        device="cpu",
        log=lambda _m: None,
    )
    trainer = run.fit(run.pool_ids[:4], 4, 0, None)
    assert trainer.objects is not None and trainer.objects.errors is not None
    assert _predictor(trainer).objects.errors is not None
