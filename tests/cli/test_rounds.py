"""The active-learning commands' own logic: the time left of a round, its log, the plot's absence."""

from __future__ import annotations

import pytest


def test_simulate_without_matplotlib_says_so(monkeypatch, tmp_path):
    import builtins

    from scn_annotator.active.learning_curves import plot

    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert plot(None, {}, tmp_path / "p.png") is False and not (tmp_path / "p.png").exists()


def test_the_time_left_follows_the_recent_pace_not_the_slow_start():
    from scn_annotator.cli.rounds import time_left

    start = [(float(t), 0.0) for t in range(60)]  # a minute at 0 %: the worker starts, images load
    training = [(60.0 + t, 0.01 * t) for t in range(1, 41)]  # then 1 % a second
    assert time_left(start) is None  # nothing to go by yet
    assert time_left(start + training) == pytest.approx(60.0, rel=0.1)  # 60 % left at 1 %/s
    assert time_left(start + training[:10]) is None  # moving for 10 s only: still estimating
    slow_then_fast = [(60.0 + t, 0.001 * t) for t in range(1, 21)] + [(80.0 + t, 0.02 + 0.02 * t) for t in range(1, 31)]
    assert time_left(start + slow_then_fast) == pytest.approx(0.38 / 0.02, rel=0.15)  # the recent pace, not the start


def test_the_log_above_the_bar_prints_each_line_once_past_the_tails_length():
    from scn_annotator.cli.rounds import _new_lines

    printed = [f"line {i}" for i in range(45)]
    tail = printed[-40:]
    assert _new_lines(tail, printed) == []
    assert _new_lines([*tail[1:], "line 45"], printed) == ["line 45"]
