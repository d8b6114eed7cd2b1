"""Annotator effort, measured with an oracle: how many landmarks must a person place per image?

The figure the app exists to lower. An oracle annotator works through images one at a
time, knowing the truth. It accepts every proposal within a tolerance of the truth
(one accept-all click per image) and otherwise corrects the worst remaining landmark,
one at a time. Three modes:

- ``manual``: no model; every landmark is placed by hand.
- ``proposals``: the model's proposals as they are today; every one outside the
  tolerance is corrected.
- ``conditioned``: after every correction the model re-places the landmarks not yet
  confirmed, given the confirmed ones (:class:`~scn_annotator.engine.conditioner.Conditioner`);
  a proposal that a correction brought within the tolerance costs nothing.

Landmarks the truth lacks are not counted. Tolerances are in mm (``2mm``: needs a
spacing), pixels (``25px``) or a share of the image height (``1%``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..configs import TextEnum
from ..engine.conditioner import KEEP_WITHIN, ConditioningMethod
from ..engine.evaluation import point_errors
from ..engine.inference import Predictor
from ..errors import ScnError
from ..io.atomic import atomic_write_text
from ..io.images import Radiograph

__all__ = ["MODES", "EffortMode", "EffortReport", "Tolerance", "measure_effort", "oracle_corrections"]


class EffortMode(TextEnum):
    """How an annotator is helped: not at all, by the proposals, by proposals that follow each correction."""

    MANUAL = "manual"  # every landmark placed by hand
    PROPOSALS = "proposals"  # the model's proposals, each wrong one corrected
    CONDITIONED = "conditioned"  # the proposals re-placed after every correction


MODES = tuple(EffortMode)


@dataclass(frozen=True)
class Tolerance:
    """How far a proposal may be from the truth and still be accepted."""

    value: float
    unit: str  # "mm", "px" or "%" (of the image height)

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(mm|px|%)\s*", text)
        if match is None or float(match.group(1)) <= 0:
            raise ScnError(f"a tolerance is a positive number with mm, px or %, e.g. 2mm, 25px or 1%; not {text!r}")
        return cls(float(match.group(1)), match.group(2))

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"

    def errors(self, predicted: np.ndarray, truth: np.ndarray, image: Radiograph) -> np.ndarray:
        """Each landmark's error in the tolerance's unit (NaN where the truth has none)."""
        if self.unit == "mm" and image.spacing is None:
            raise ScnError(f"{image.path}: no pixel spacing for a tolerance in mm (give --spacing-from)")
        e = point_errors(predicted, truth, image.spacing if self.unit == "mm" else None)
        return 100.0 * e / image.size[1] if self.unit == "%" else e


@dataclass
class EffortReport:
    tolerance: str
    landmarks: int
    per_image: dict[str, dict[str, int]] = field(default_factory=dict)  # image -> mode -> corrections

    def totals(self) -> dict[str, int]:
        """Corrections over all images, per mode."""
        return {mode: sum(v[mode] for v in self.per_image.values()) for mode in MODES}

    def summary(self) -> dict[str, Any]:
        n = max(len(self.per_image), 1)
        modes = {}
        for mode, corrections in self.totals().items():
            modes[mode] = {
                "corrections_per_image": corrections / n,
                "clicks_per_image": (corrections + (0 if mode == "manual" else len(self.per_image))) / n,
            }
        return {"images": len(self.per_image), "landmarks": self.landmarks, "tolerance": self.tolerance, "modes": modes}

    def write_json(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps({**self.summary(), "per_image": self.per_image}, indent=2) + "\n")

    def format(self) -> str:
        s = self.summary()
        lines = [
            f"Oracle annotator on {s['images']} images, {s['landmarks']} landmarks, tolerance {s['tolerance']}:",
            f"  {'mode':<12}{'corrections/image':>19}{'clicks/image':>14}",
        ]
        for mode, v in s["modes"].items():
            lines.append(f"  {mode:<12}{v['corrections_per_image']:>19.2f}{v['clicks_per_image']:>14.2f}")
        return "\n".join(lines)


def oracle_corrections(
    errors: np.ndarray,
    present: np.ndarray,
    tolerance: float,
    replace: Callable[[np.ndarray], np.ndarray] | None = None,
) -> int:
    """The oracle's corrections: the worst landmark outside ``tolerance`` first, one at a time.

    ``errors`` are the first proposals' errors; after each correction ``replace(confirmed)``
    (a boolean mask) gives the errors of the re-placed proposals. Without it nothing moves,
    which is plain proposals. Confirmed and absent landmarks never count again.
    """
    confirmed = np.zeros(len(errors), dtype=bool)
    corrected = 0
    while True:
        wrong = present & ~confirmed & (errors > tolerance)
        if not wrong.any():
            return corrected
        confirmed[int(np.argmax(np.where(wrong, errors, -np.inf)))] = True
        corrected += 1
        if replace is not None:
            errors = replace(confirmed)


def _corrections(
    predictor: Predictor,
    image: Radiograph,
    truth: np.ndarray,
    tolerance: Tolerance,
    keep_within: float,
    method: ConditioningMethod | str,
) -> dict[str, int]:
    present = ~np.isnan(truth).any(axis=1)
    conditioner = predictor.conditioner(image, keep_within, method)

    def replace(confirmed: np.ndarray) -> np.ndarray:
        hints = np.where(confirmed[:, None], truth, np.nan)
        return tolerance.errors(conditioner.predict(hints).points, truth, image)

    first = replace(np.zeros(len(truth), dtype=bool))  # nothing confirmed: today's proposals
    return {
        EffortMode.MANUAL: int(present.sum()),
        EffortMode.PROPOSALS: oracle_corrections(first, present, tolerance.value),
        EffortMode.CONDITIONED: oracle_corrections(first, present, tolerance.value, replace),
    }


def measure_effort(
    predictor: Predictor,
    images: Sequence[tuple[Radiograph, np.ndarray]],
    tolerance: Tolerance,
    progress: Callable[[int, int], None] | None = None,
    keep_within: float = KEEP_WITHIN,
    method: ConditioningMethod | str = ConditioningMethod.AUTO,
) -> EffortReport:
    """The oracle's corrections per image in every mode, for (image, true landmarks in px) pairs.

    ``keep_within`` and ``method`` are the conditioner's (:class:`~scn_annotator.engine.conditioner.Conditioner`),
    for comparing its ways.
    """
    report = EffortReport(str(tolerance), predictor.num_landmarks)
    for i, (image, truth) in enumerate(images):
        if truth.shape != (predictor.num_landmarks, 2):
            raise ScnError(
                f"{image.path}: {truth.shape[0]} landmarks in the truth, the model has {predictor.num_landmarks}"
            )
        report.per_image[image.id] = _corrections(predictor, image, truth, tolerance, keep_within, method)
        if progress:
            progress(i + 1, len(images))
    return report
