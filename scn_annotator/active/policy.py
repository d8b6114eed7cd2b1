"""How a project retrains: the policy stored in its settings, and the training config of a round.

Read by the worker (which runs rounds), the ranking (which strategy orders the
queue), the app's training panel and the CLI; it imports neither of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..db.store import Project
from .pool import AUTO_SWITCH

if TYPE_CHECKING:
    from ..engine.config import TrainConfig

__all__ = ["RoundPolicy", "round_config"]


@dataclass
class RoundPolicy:
    """How a project retrains, stored in its settings (``training``, ``auto_retrain``)."""

    preset: str = "auto"  # gpu where the worker has CUDA or MPS, cpu otherwise
    initial_steps: int = 1500  # the first model, from scratch
    round_steps: int = 500  # each later round, fine-tuning the current model
    max_minutes: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # any TrainConfig field
    strategy: str = "residual_ambiguity"
    auto_every: int = 0  # queue a round after this many newly done images; 0: only on request
    batch: int = 8  # images asked for at once: the clusters a pool strategy (``typical``) covers next
    auto_switch: int = AUTO_SWITCH  # ``auto`` ranks by typicality below this many labelled images

    @classmethod
    def of(cls, project: Project) -> RoundPolicy:
        stored = project.settings().get("training") or {}
        known = {k: v for k, v in stored.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, project: Project) -> None:
        project.set_setting("training", self.__dict__.copy())


def round_config(policy: RoundPolicy, first: bool) -> TrainConfig:
    """The first round trains from scratch for ``initial_steps``; later ones fine-tune for ``round_steps``."""
    from ..engine.config import preset  # torch: only where a round is really configured

    steps = policy.initial_steps if first else policy.round_steps
    changes = {"steps": steps, "validate_every": max(25, steps // 10), **policy.overrides}
    if not first:
        changes.setdefault("warmup_steps", min(50, steps // 10))
    return preset(policy.preset, **changes)
