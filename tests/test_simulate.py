"""Simulated campaigns predict and score through the worker's own path."""

from __future__ import annotations

import numpy as np

from scn_annotator.simulate import Campaign, run_campaign, summarise


def test_a_tiny_campaign_runs_every_strategy_through_the_worker_path(sample_dir, tiny_cfg, monkeypatch):
    from scn_annotator import inference, scores

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
    campaign = Campaign(strategies=["least_confident", "mc_dropout"], seeds=[0], initial=4, batch=4, budget=8,
                        test=4, initial_steps=6, round_steps=4, mc_passes=3)  # fmt: skip
    result = run_campaign(sample_dir / "images", sample_dir / "labels.csv", cfg, campaign, device="cpu",
                          log=lambda _m: None)  # fmt: skip
    pool = 24 - 4 - 4  # unlabelled images scored in the one round of each strategy
    assert calls["predict"] == calls["scoring"] == 2 * pool
    assert calls["mc"] == pool  # dropout passes only where the strategy needs them
    assert [c["strategy"] for c in result.curves] == ["least_confident", "mc_dropout"]
    for curve in result.curves:
        assert [p["labelled"] for p in curve["points"]] == [4, 8]
        assert all(np.isfinite(p["mean"]) for p in curve["points"])
        assert len(set(curve["points"][1]["picked"])) == 4
    assert set(summarise(result)) == {"least_confident", "mc_dropout"}
