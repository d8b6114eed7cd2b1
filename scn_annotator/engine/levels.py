"""Which vertebra is the first one: a check on the two ends of a chain, from what lies around them.

On the spine radiographs the chain decoding (``chain.py``) makes every column
regular, and what stays wrong is the *level*: a stretch of the column, often the
whole of it, sits one vertebra up or down (T1 on C7 or on T2, L5 on the sacrum),
because stage 1's heatmaps are confidently one vertebra off there and every step
of a shifted column fits the step prior. What tells T1 from C7 is not the
vertebra but its surroundings (the first ribs, the clavicles), and L5 from S1 the
pelvis: cues a few vertebrae wide that the SC component, seeing only the LA
heatmaps, never looks at.

So a small classifier looks at a crop of the network input around a candidate
place, turned to the column and scaled to its step (``reach`` steps each side),
and says which vertebra the crop is centred on, relative to the chain's first
object (head 0) and to its last (head 1): offsets -2..+2 of a step, 0 the end
itself. In the decoding its log-probability of "offset 0" is a cost on every
candidate of the first and the last object, and, because the interior channels'
own heatmaps would then pull the column back into the old shift (it stretches to
fit both), the interior candidates are judged mostly by "some object is here"
(the strongest of all channels there), ``identity_share`` by their own channel,
and by a lighter place prior. The crops are drawn around the training labels'
centres (each end and its neighbours, the ones beyond extrapolated by a step),
jittered in place, scale, angle and contrast, so that the check also holds near a
decoded centre.

Measured on the real spines (benchmarks/RESULTS.md, issue 21): what it does to
the share of vertebrae placed on a neighbour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import LevelCheckConfig
from .objects import ChainPrior

__all__ = ["OFFSETS", "LevelCheck", "LevelCheckConfig", "end_crops", "train_level_check"]

#: The classes: the crop is centred this many steps or fewer before or after the end (0: on it).
OFFSETS = 2
#: The probability given to a candidate the check does not look at.
FAR = 1e-3


class _Halve(nn.Module):
    """``MaxPool2d(2)`` on even sizes, as four strided maxima: the same numbers in a tenth of the CPU time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(
            torch.maximum(x[..., ::2, ::2], x[..., 1::2, ::2]), torch.maximum(x[..., ::2, 1::2], x[..., 1::2, 1::2])
        )


class EndClassifier(nn.Module):
    """Crop (B, 1, C, C) -> logits (B, 2, 5): per end, which vertebra the crop is centred on."""

    def __init__(self, cfg: LevelCheckConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for cout in cfg.channels:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
            layers += [nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), _Halve()]
            cin = cout
        self.features = nn.Sequential(*layers)
        side = cfg.crop // 2 ** len(cfg.channels)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(cin * side * side, 2 * (2 * OFFSETS + 1))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(crops).flatten(1))).reshape(len(crops), 2, -1)


def end_crops(image: torch.Tensor, points: np.ndarray, step: np.ndarray, cfg: LevelCheckConfig) -> torch.Tensor:
    """(K, 1, C, C) crops of ``image`` (H, W) centred on ``points`` (K, 2), turned and scaled to ``step`` (K, 2):
    the crop's y runs along the step, ``cfg.reach`` steps each side."""
    h, w = image.shape
    length = np.linalg.norm(step, axis=-1)
    along = torch.as_tensor(step / length[:, None], dtype=torch.float32)
    across = torch.stack([along[:, 1], -along[:, 0]], dim=1)
    half = torch.as_tensor(cfg.reach * length, dtype=torch.float32)
    theta = torch.zeros(len(points), 2, 3)
    scale = torch.tensor([2.0 / w, 2.0 / h])
    device = image.device
    theta[:, :, 0] = across * half[:, None] * scale
    theta[:, :, 1] = along * half[:, None] * scale
    theta[:, :, 2] = (torch.as_tensor(points, dtype=torch.float32) + 0.5) * scale - 1
    grid = F.affine_grid(theta.to(device), [len(points), 1, cfg.crop, cfg.crop], align_corners=False)
    source = image.float()[None, None].expand(len(points), 1, h, w)
    return F.grid_sample(source, grid, align_corners=False, padding_mode="zeros")


def ends_labelled(centres: np.ndarray) -> bool:
    """Whether (M, 2) centres have the three at each end that :func:`end_places` reads."""
    return not np.isnan(centres[[0, 1, 2, -3, -2, -1]]).any()


def end_places(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, 5, 2) the places at offsets -2..+2 of a step from the first and the last centre of ``centres``
    (M, 2), the ones beyond an end extrapolated by its step; and (2, 2) the step at each end."""
    first, last = centres[1] - centres[0], centres[-1] - centres[-2]
    head = [centres[0] - 2 * first, centres[0] - first, centres[0], centres[1], centres[2]]
    tail = [centres[-3], centres[-2], centres[-1], centres[-1] + last, centres[-1] + 2 * last]
    return np.array([head, tail]), np.array([first, last])


@dataclass
class LevelCheck:
    """A trained end classifier and how the chain decoding uses it (stored with the object layout)."""

    config: LevelCheckConfig
    network: EndClassifier
    #: Its accuracy on the validation images' true ends and neighbours (None: not measured).
    accuracy: float | None = None
    _device: torch.device = field(default=torch.device("cpu"), repr=False)

    #: Candidates farther than this many steps from an end's usual place are not looked at for it.
    NEAR = 3.0

    def end_costs(self, image: torch.Tensor, xy: np.ndarray, prior: ChainPrior) -> np.ndarray:
        """(2, P) minus the log-probability that candidate ``xy`` (P, 2) is the first / the last centre.

        Only the candidates within ``NEAR`` steps of where the chain's prior puts that end are looked at
        (a column shifted by two lies within it; the crops cost about a millisecond each on a CPU); the
        others cost as much as a crop the check gives one chance in a thousand.
        """
        steps = np.stack([prior.steps[0], prior.steps[-1]])
        costs = np.full((2, len(xy)), -np.log(FAR))
        with torch.inference_mode():
            for end, obj in ((0, 0), (1, -1)):
                near = np.ones(len(xy), dtype=bool)
                if prior.places is not None:
                    reach = self.NEAR * np.linalg.norm(steps[end])
                    near = np.linalg.norm(xy - prior.places[obj], axis=1) <= reach
                if not near.any():
                    continue
                logits = self.logits(image, xy[near], steps[end], end)
                costs[end, near] = -F.log_softmax(logits, dim=-1)[:, OFFSETS].cpu().double().numpy()
        return self.config.weight * costs

    def logits(self, image: torch.Tensor, points: np.ndarray, step: np.ndarray, end: int) -> torch.Tensor:
        """(K, 5) the classifier's logits for crops of ``image`` at ``points`` (K, 2), each along ``step`` (2,),
        from the head of ``end`` (0: the first object, 1: the last)."""
        crops = end_crops(image, points, np.repeat(step[None], len(points), axis=0), self.config)
        self.network.eval()
        return self.network(crops.to(self._device))[:, end].float()

    def unary(
        self, own: np.ndarray, anywhere: np.ndarray, image: torch.Tensor, xy: np.ndarray, prior: ChainPrior
    ) -> np.ndarray:
        """The chain's (M, P) candidate costs with the check, from each channel's own heatmap cost ``own``
        (M, P) and ``anywhere`` (1, P), the cost of "some object is here"."""
        share = self.config.identity_share
        unary = share * own + (1 - share) * anywhere
        place = prior.place_cost(xy)
        if place is not None:
            weights = np.full((len(own), 1), self.config.inner_place)
            weights[[0, -1]] = 1.0
            unary = unary + weights * place
        ends = self.end_costs(image, xy, prior)
        unary[0] += ends[0]
        unary[-1] += ends[1]
        return unary

    def to(self, device: torch.device | str) -> LevelCheck:
        self._device = torch.device(device)
        self.network.to(self._device)
        return self

    def to_payload(self) -> dict[str, Any]:
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        return {"config": self.config.to_dict(), "weights": state, "accuracy": self.accuracy}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> LevelCheck:
        cfg = LevelCheckConfig.from_dict(data["config"])
        network = EndClassifier(cfg)
        network.load_state_dict(data["weights"])
        return cls(cfg, network.eval(), data.get("accuracy"))


def train_level_check(
    images: Sequence[torch.Tensor],
    centres: Sequence[np.ndarray],
    cfg: LevelCheckConfig,
    *,
    val_images: Sequence[torch.Tensor] = (),
    val_centres: Sequence[np.ndarray] = (),
    generator: np.random.Generator | None = None,
    should_stop: Callable[[], bool] | None = None,
    steps: int | None = None,
) -> LevelCheck | None:
    """Train the end classifier on network inputs (H, W) and their labels' object centres (M, 2, network px).

    Images with a missing centre near an end are left out; None when fewer than two remain.
    """
    rng = generator if generator is not None else np.random.default_rng(0)
    usable = [(im, c) for im, c in zip(images, centres) if ends_labelled(c)]
    if len(usable) < 2:
        return None
    network = EndClassifier(cfg)
    optimiser = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=1e-3)
    network.train()
    for _ in range(cfg.steps if steps is None else steps):
        if should_stop is not None and should_stop():
            break
        crops, labels, ends = _batch(usable, cfg, rng)
        logits = network(crops)[torch.arange(len(ends)), ends]
        loss = F.cross_entropy(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    check = LevelCheck(cfg, network.eval())
    check.accuracy = end_accuracy(check, val_images, val_centres)
    return check


def _batch(
    usable: Sequence[tuple[torch.Tensor, np.ndarray]], cfg: LevelCheckConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of jittered crops: an end, an offset, a place near it, a scale, an angle and a contrast each."""
    crops, labels, ends = [], [], []
    for _ in range(cfg.batch):
        image, centres = usable[rng.integers(len(usable))]
        end, offset = int(rng.integers(2)), int(rng.integers(2 * OFFSETS + 1))
        places, steps = end_places(centres)
        step = steps[end]
        angle = rng.normal(0.0, 0.1)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        step = (turn @ step) * np.exp(rng.normal(0.0, 0.1))
        place = places[end, offset] + rng.normal(0.0, 0.15 * np.linalg.norm(steps[end]), 2)
        crop = end_crops(image, place[None], step[None], cfg)
        if cfg.mirror and rng.random() < 0.5:
            crop = crop.flip(-1)
        crops.append(crop * float(np.exp(rng.normal(0.0, 0.2))) + float(rng.normal(0.0, 0.2)))
        labels.append(offset)
        ends.append(end)
    return torch.cat(crops), torch.tensor(labels), torch.tensor(ends)


def end_accuracy(check: LevelCheck, images: Sequence[torch.Tensor], centres: Sequence[np.ndarray]) -> float | None:
    """The share of the true ends and their neighbours (offsets -2..+2) the check names right."""
    right = total = 0
    with torch.inference_mode():
        for image, c in zip(images, centres):
            if not ends_labelled(c):
                continue
            places, steps = end_places(c)
            for end in (0, 1):
                named = check.logits(image, places[end], steps[end], end).argmax(dim=-1).cpu().numpy()
                right += int((named == np.arange(len(named))).sum())
                total += len(named)
    return right / total if total else None
