"""How long a training loop runs and its learning rate at each step, fitted to a time limit.

Both loops (the SCN's and the local stage's) are given minutes, not only steps: the
worker has a round to finish, a benchmark a budget. Cutting a cosine schedule off
when time runs out would end the run at a high learning rate, far from converged;
instead, once the pace is known, the schedule is laid out for the steps that fit,
and re-laid after every step as the pace changes, so that the run ends converged
whenever it ends. One class owns that, so the two loops cannot drift apart.
"""

from __future__ import annotations

import math
import time

__all__ = ["PLAN_AFTER", "TimePlan"]

#: Steps measured before a time limit lays out the schedule; from then on it is re-planned after every step.
PLAN_AFTER = 10


class TimePlan:
    """The steps a run takes (``total``) and ``lr_factor(step)``: warm-up, then cosine to 1 %.

    ``steps`` is what was asked; ``total`` is never more and is fewer when the time
    limit (``max_minutes``, None: none) needs it. ``first_step`` is where a resumed
    run starts, so that the pace counts only this run's steps.
    """

    def __init__(
        self,
        steps: int,
        *,
        warmup_steps: int = 0,
        schedule: str = "cosine",
        max_minutes: float | None = None,
        first_step: int = 0,
        total: int | None = None,
    ) -> None:
        self.steps, self.warmup_steps, self.schedule = steps, warmup_steps, schedule
        self.max_minutes, self.first_step = max_minutes, first_step
        self.total = steps if total is None else total
        self.started = time.perf_counter()
        self.deadline = self.started + max_minutes * 60 if max_minutes is not None else math.inf

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def shortened(self) -> bool:
        """Whether the schedule was laid out for fewer steps than asked (a time limit did it)."""
        return self.total < self.steps

    def out_of_time(self, step: int) -> bool:
        """Past the deadline before the pace was known: stop now (afterwards the plan ends the run)."""
        return time.perf_counter() > self.deadline and step - self.first_step < PLAN_AFTER

    def replan(self, step: int) -> None:
        """After ``step``: the steps that fit the time left at the pace so far, never more than asked.

        ``step`` itself when no further step fits: the run ends there.
        """
        done = step - self.first_step
        if self.max_minutes is None or done < PLAN_AFTER:
            return
        now = time.perf_counter()
        per_step = (now - self.started) / max(done, 1)
        self.total = min(self.steps, step + max(0, int((self.deadline - now) / max(per_step, 1e-9))))

    def lr_factor(self, step: int) -> float:
        """Warm-up, then cosine decay to 1 % at ``total``; a shortened plan warms up for at most a tenth of it."""
        total = self.total
        warmup = min(self.warmup_steps, max(0, total // 10)) if total < self.steps else self.warmup_steps
        if warmup and step < warmup:
            return (step + 1) / warmup
        if self.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
