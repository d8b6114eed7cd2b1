"""The one model file: what a trained SCN is, as training writes it and everything else reads it.

Prediction, a fine-tuning round's warm start, a resumed run, the local stage and
the simulated campaigns all go through :class:`ModelFile`, so the file's layout is
written in one place. On disk it is the plain dictionary of ``checkpoint.py``
(tensors, numbers, strings: loadable with ``weights_only=True``, written
atomically), under the same keys as before it had a class, so that files written
by earlier versions load: their training config had the architecture's fields at
its top level, which :meth:`TrainConfig.from_dict` still reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..configs import Record
from ..errors import CheckpointError
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RefineConfig, SCNConfig, TrainConfig
from .data import Normalisation
from .objects import ObjectLayout

__all__ = ["LocalStage", "ModelFile", "TrainingMetrics"]


@dataclass(frozen=True)
class TrainingMetrics(Record):
    """What the training loop measured on its own validation images."""

    step: int = 0  # the selected step
    val_error: float | None = None  # with the local stage, when it was kept
    unit: str = "px"
    train_images: int = 0
    val_images: int = 0
    val_error_coarse: float | None = None  # the coarse SCN alone, when the local stage was compared


@dataclass
class LocalStage:
    """The local refinement stage as a model file holds it."""

    config: RefineConfig
    input_size: tuple[int, int]  # (height, width) of the image it refines in
    weights: dict[str, torch.Tensor]

    def to_payload(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "input_size": list(self.input_size), "model": self.weights}

    @classmethod
    def from_payload(cls, held: dict[str, Any]) -> LocalStage:
        return cls(RefineConfig.from_dict(held["config"]), _size(held["input_size"]), dict(held["model"]))


@dataclass
class ModelFile:
    """A trained SCN: its architecture, weights, sigmas, landmarks, input and how it was trained."""

    network: SCNConfig
    landmark_names: list[str]
    input_size: tuple[int, int]
    normalisation: Normalisation
    weights: dict[str, torch.Tensor]
    sigmas: torch.Tensor | None = None  # the learned target sigma per landmark (network px)
    train_config: TrainConfig | None = None  # None: a model file from elsewhere that does not say
    metrics: TrainingMetrics = field(default_factory=TrainingMetrics)
    local_stage: LocalStage | None = None
    #: Where the landmarks come in objects: the network finds the M object centres, not the N landmarks
    #: (``network.num_landmarks`` is M), and the local stage places each object's members (stage 2).
    objects: ObjectLayout | None = None
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    version: str = __version__

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "network": self.network.to_dict(),
            "landmark_names": list(self.landmark_names),
            "input_size": list(self.input_size),
            "normalisation": self.normalisation.to_dict(),
            "model": self.weights,
            "metrics": self.metrics.to_dict(),
            "created": self.created,
            "version": self.version,
        }
        if self.sigmas is not None:
            payload["sigma"] = self.sigmas
        if self.train_config is not None:
            payload["train_config"] = self.train_config.to_dict()
        if self.local_stage is not None:
            payload["refiner"] = self.local_stage.to_payload()
        if self.objects is not None:
            payload["objects"] = self.objects.to_payload()
        return payload

    @classmethod
    def from_payload(cls, data: dict[str, Any], path: str | Path = "model file") -> ModelFile:
        """A model file from a loaded checkpoint dictionary; one line naming ``path`` when it is not one."""
        try:
            sigma = data.get("sigma")
            model = cls(
                network=SCNConfig.from_dict(data["network"]),
                landmark_names=[str(n) for n in data["landmark_names"]],
                input_size=_size(data["input_size"]),
                normalisation=Normalisation(**data["normalisation"]),
                weights=dict(data["model"]),
                sigmas=sigma if isinstance(sigma, torch.Tensor) else None,
                train_config=TrainConfig.from_dict(data["train_config"]) if "train_config" in data else None,
                metrics=TrainingMetrics.from_dict(data.get("metrics") or {}),
                created=str(data.get("created", "")),
                version=str(data.get("version", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{path}: incomplete or incompatible model file ({type(exc).__name__}: {exc})"
            ) from None
        if "refiner" in data:
            try:
                model.local_stage = LocalStage.from_payload(data["refiner"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise CheckpointError(f"{path}: its local refinement stage does not load ({exc})") from None
        if "objects" in data:
            try:
                model.objects = ObjectLayout.from_payload(data["objects"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{path}: its landmark objects do not load ({exc})") from None
        expected = len(model.objects.objects) if model.objects is not None else len(model.landmark_names)
        if model.objects is not None and model.objects.objects.num_landmarks != len(model.landmark_names):
            raise CheckpointError(f"{path}: its objects cover another number of landmarks than it names")
        if model.network.num_landmarks != expected:
            raise CheckpointError(
                f"{path}: its network has {model.network.num_landmarks} outputs for {expected} landmarks or objects"
            )
        return model

    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        return save_checkpoint(path, self.to_payload())

    @classmethod
    def load(cls, path: str | Path) -> ModelFile:
        """Read ``path`` with ``weights_only=True`` (a model file can never run code)."""
        return cls.from_payload(load_checkpoint(path), path)


def _size(value: Any) -> tuple[int, int]:
    height, width = value
    return int(height), int(width)
