"""From a trained model and a radiograph to landmark positions, confidences and heatmaps.

Positions come back in the original image's pixels (and mm when its spacing is
known); the heatmaps, when asked for, at network resolution together with the
transform that lays them over the image. The confidence of a landmark is the
value of its final heatmap at the peak: with the paper's target scale a perfect
prediction peaks at ``100 / (2 pi sigma^2)``, about 2.5.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cache import Heatmaps
from .checkpoint import load_checkpoint
from .data import Normalisation, prepare_input
from .device import best_device
from .errors import CheckpointError, ImageReadError
from .heatmaps import decode_peaks
from .imageio import Radiograph, SpacingSource, read_image
from .network import SCNConfig, SCNOutput, SpatialConfigurationNet

__all__ = ["Heatmaps", "Prediction", "Predictor"]


@dataclass
class Prediction:
    """One image's predicted landmarks."""

    image_id: str
    path: Path
    points: np.ndarray  # (N, 2) original pixels (x, y)
    confidence: np.ndarray  # (N,) final heatmap value at the peak
    spacing: tuple[float, float] | None
    spacing_source: SpacingSource
    heatmaps: Heatmaps | None = None
    mc_points: np.ndarray | None = None  # (passes, N, 2) positions with dropout on, original pixels
    seconds: float = 0.0

    @property
    def points_mm(self) -> np.ndarray | None:
        return None if self.spacing is None else self.points * np.asarray(self.spacing)


class Predictor:
    """A trained SCN ready to predict; build it with :meth:`from_checkpoint`."""

    def __init__(
        self,
        model: SpatialConfigurationNet,
        names: list[str],
        input_size: tuple[int, int],
        normalisation: Normalisation,
        device: torch.device | str | None = None,
        metadata: dict | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else best_device()
        self.model = model.to(self.device).eval()
        self.names = list(names)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.normalisation = normalisation
        self.metadata = metadata or {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str | None = None) -> Predictor:
        data = load_checkpoint(path)
        try:
            cfg = SCNConfig.from_dict(data["network"])
            model = SpatialConfigurationNet(cfg)
            model.load_state_dict(data["model"])
            names = list(data["landmark_names"])
            input_size = tuple(data["input_size"])
            norm = Normalisation(**data["normalisation"])
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: incomplete or incompatible model file ({exc})") from None
        meta = {k: data[k] for k in ("metrics", "train_config", "created", "version") if k in data}
        return cls(model, names, input_size, norm, device, meta)  # type: ignore[arg-type]

    @property
    def num_landmarks(self) -> int:
        return len(self.names)

    @torch.inference_mode()
    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, SCNOutput]:
        """Batch of (B, 1, H, W) inputs -> (points (B, N, 2) in network px, confidence (B, N), raw output)."""
        out = self.model(inputs.to(self.device))
        points, values = decode_peaks(out.heatmaps.float())
        return points, values, out

    @torch.inference_mode()
    def dropout_passes(self, net_input: torch.Tensor, passes: int) -> torch.Tensor:
        """Peaks (passes, N, 2) in network pixels from one batch of passes with dropout on."""
        dropouts = [m for m in self.model.modules() if isinstance(m, torch.nn.Dropout | torch.nn.Dropout2d)]
        try:
            for m in dropouts:
                m.train()
            out = self.model(net_input[None, None].expand(passes, 1, *net_input.shape))
            return decode_peaks(out.heatmaps.float())[0]
        finally:
            for m in dropouts:
                m.eval()

    def predict(self, image: Radiograph | str | Path, heatmaps: bool = False, mc_passes: int = 0) -> Prediction:
        """Landmarks of one image (read from disk when given a path).

        ``mc_passes`` > 0 also returns the positions of that many passes with dropout
        on, whose spread is the MC-dropout uncertainty baseline.
        """
        start = time.perf_counter()
        if not isinstance(image, Radiograph):
            image = read_image(image)
        net_input, transform = prepare_input(image, self.input_size, self.normalisation, self.device)
        points, values, out = self.forward(net_input[None, None])
        result = Prediction(
            image.id,
            image.path,
            transform.from_network(points[0].cpu().double().numpy()),
            values[0].cpu().numpy().astype(np.float64),
            image.spacing,
            image.spacing_source,
        )
        if heatmaps:
            result.heatmaps = Heatmaps(
                out.heatmaps[0].float().cpu().numpy(),
                out.local[0].float().cpu().numpy(),
                None if out.spatial is None else out.spatial[0].float().cpu().numpy(),
                transform,
            )
        if mc_passes:
            mc = self.dropout_passes(net_input, mc_passes).cpu().double().numpy()
            result.mc_points = transform.from_network(mc)
        result.seconds = time.perf_counter() - start
        return result

    def predict_files(
        self,
        paths: Iterable[str | Path],
        heatmaps: bool = False,
        progress: Callable[[int], None] | None = None,
        spacing: Callable[[Radiograph], Radiograph] | None = None,
    ) -> Iterator[Prediction | ImageReadError]:
        """Predict many files; an unreadable one yields its error and the rest go on."""
        for i, path in enumerate(paths):
            try:
                image = read_image(path)
                if spacing is not None:
                    image = spacing(image)
                yield self.predict(image, heatmaps=heatmaps)
            except ImageReadError as exc:
                yield exc
            if progress:
                progress(i + 1)
