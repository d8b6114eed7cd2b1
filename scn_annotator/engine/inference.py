"""From a trained model and a radiograph to landmark positions, confidences and heatmaps.

Positions come back in the original image's pixels (and mm when its spacing is
known); the heatmaps, when asked for, at network resolution together with the
transform that lays them over the image. The confidence of a landmark is the
value of its final heatmap at the peak: with the paper's target scale a perfect
prediction peaks at ``100 / (2 pi sigma^2)``, about 2.5.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import CheckpointError, ImageReadError, ScnError
from ..io.heatmap_cache import Heatmaps
from ..io.images import Radiograph, SpacingSource, read_image
from .chain import decode_centres
from .config import TrainConfig
from .data import Normalisation, Sample, prepare_input
from .device import best_device, training_layout
from .evaluation import error_unit, mean_error, point_errors
from .geometry import InputTransform
from .model_file import ModelFile, TrainingMetrics
from .network import SCNOutput, SpatialConfigurationNet
from .objects import ObjectLayout
from .refinement import Refiner
from .rng import private_rng, seeded_rng

if TYPE_CHECKING:
    from .conditioner import Conditioner, ConditioningMethod

__all__ = [
    "HINT_SIGMA",
    "Heatmaps",
    "Prediction",
    "Predictor",
    "checkpoint_error",
    "network_prediction",
    "predict_samples",
    "sample_errors",
    "validation_errors",
]


#: The width of a confirmed landmark's hint (network px) when the checkpoint has no learned sigma.
HINT_SIGMA = 2.5


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
    #: (M, 2) stage 1's object centres, original pixels, when the model learns objects (``objects.py``).
    centres: np.ndarray | None = None
    #: What the image looks like to the model (``predict(embed=True)``): the local-appearance component's
    #: deepest level, its mean and maximum over the image per channel (``active/embeddings.py``).
    embedding: np.ndarray | None = None

    @property
    def points_mm(self) -> np.ndarray | None:
        return None if self.spacing is None else self.points * np.asarray(self.spacing)


class Predictor:
    """A trained SCN ready to predict; build it with :meth:`from_checkpoint` or :meth:`from_model_file`."""

    def __init__(
        self,
        model: SpatialConfigurationNet,
        names: list[str],
        input_size: tuple[int, int],
        normalisation: Normalisation,
        device: torch.device | str | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else best_device()
        self.model = model.to(self.device).eval()
        self.names = list(names)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.normalisation = normalisation
        #: How the model was trained and what that measured, when its file says.
        self.train_config: TrainConfig | None = None
        self.metrics = TrainingMetrics()
        #: The learned target sigma of every network output (network px): the width of a confirmed one's hint.
        self.sigma = np.full(model.config.num_landmarks, HINT_SIGMA)
        #: The objects and their mean shape, when the network finds object centres (stage 1 of two).
        self.objects: ObjectLayout | None = None
        #: The local refinement stage and the (height, width) it works at, when the model has one.
        self.refiner: Refiner | None = None
        self.fine_size: tuple[int, int] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str | None = None) -> Predictor:
        return cls.from_model_file(ModelFile.load(path), device, path)

    @classmethod
    def from_model_file(
        cls, held: ModelFile, device: torch.device | str | None = None, path: str | Path = "model file"
    ) -> Predictor:
        try:
            model = SpatialConfigurationNet(held.network)
            model.load_state_dict(held.weights)
        except (TypeError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: incomplete or incompatible model file ({exc})") from None
        predictor = cls(model, held.landmark_names, held.input_size, held.normalisation, device)
        predictor.train_config, predictor.metrics, predictor.objects = held.train_config, held.metrics, held.objects
        if held.objects is not None and held.objects.levels is not None:
            held.objects.levels.to(predictor.device)
        if held.sigmas is not None and held.sigmas.numel() == held.network.num_landmarks:
            predictor.sigma = held.sigmas.detach().double().cpu().numpy()
        if held.local_stage is not None:
            try:
                refiner = Refiner(held.local_stage.config, len(held.landmark_names))
                refiner.load_state_dict(held.local_stage.weights)
            except (TypeError, RuntimeError, ValueError) as exc:
                raise CheckpointError(f"{path}: its local refinement stage does not load ({exc})") from None
            predictor.fine_size = held.local_stage.input_size
            # channels-last on the CPU: the same numbers, stage 2 of a spine in 150 ms instead of 240
            predictor.refiner = refiner.to(predictor.device, memory_format=training_layout(predictor.device)).eval()
        return predictor

    def fine_input(self, image: Radiograph) -> tuple[torch.Tensor, InputTransform] | None:
        """The image at the refinement stage's resolution (None without one); prepare once per image."""
        if self.refiner is None or self.fine_size is None:
            return None
        return prepare_input(image, self.fine_size, self.normalisation, self.device)

    def refine(
        self,
        fine: tuple[torch.Tensor, InputTransform] | None,
        points: np.ndarray,
        skip: np.ndarray | None = None,
    ) -> np.ndarray:
        """``points`` (original px) moved by the local stage; unchanged without one or where ``skip``."""
        if fine is None or self.refiner is None:
            return points
        return self.refiner.refine_image(*fine, points, skip)

    def members(
        self,
        fine: tuple[torch.Tensor, InputTransform] | None,
        transform: InputTransform,
        centres: np.ndarray,
        template: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, 2) landmarks (original px) of an object model from its centres (M, 2, network px).

        Stage 2 places each object's members in its crop; where it has no clear answer
        (or the model has no stage 2) the template's positions on the centres stay.
        """
        assert self.objects is not None
        if template is None:
            template = transform.from_network(self.objects.place(centres))
        if fine is None or self.refiner is None:
            return template
        centres = transform.from_network(centres)
        return self.refiner.place_image(*fine, self.objects, self.fine_scale, centres, template)

    @property
    def fine_scale(self) -> float:
        """Pixels of the local stage's image per network pixel."""
        return 1.0 if self.fine_size is None else self.fine_size[0] / self.input_size[0]

    @property
    def num_landmarks(self) -> int:
        return len(self.names)

    @torch.inference_mode()
    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, SCNOutput]:
        """Batch of (B, 1, H, W) inputs -> (points (B, N, 2) in network px, confidence (B, N), raw output)."""
        out = self.model(inputs.to(self.device))
        points, values = decode_centres(out.heatmaps.float(), self.objects, inputs)
        return points, values, out

    @torch.inference_mode()
    def dropout_passes(self, net_input: torch.Tensor, passes: int, seed: int = 0) -> torch.Tensor:
        """Peaks (passes, N, 2) in network pixels from one batch of passes with dropout on.

        The dropout masks come from ``seed`` (``predict`` derives it from the image id),
        drawn inside ``fork_rng``: the same image gets the same passes in the worker, a
        benchmark or a simulated campaign, and nobody else's random numbers change.
        """
        dropouts = [m for m in self.model.modules() if isinstance(m, torch.nn.Dropout | torch.nn.Dropout2d)]
        with private_rng(seeded_rng(seed, self.device), self.device):
            try:
                for m in dropouts:
                    m.train()
                inputs = net_input[None, None].expand(passes, 1, *net_input.shape)
                return decode_centres(self.model(inputs).heatmaps.float(), self.objects, inputs)[0]
            finally:
                for m in dropouts:
                    m.eval()

    def predict(
        self,
        image: Radiograph | str | Path,
        heatmaps: bool = False,
        mc_passes: int = 0,
        hints: np.ndarray | None = None,
        embed: bool = False,
    ) -> Prediction:
        """Landmarks of one image (read from disk when given a path).

        ``embed``: also what the image looks like to the model, from the same pass (``Prediction.embedding``).

        ``mc_passes`` > 0 also returns the positions of that many passes with dropout
        on, whose spread is the MC-dropout uncertainty baseline. ``hints`` (N, 2),
        original pixels, NaN where not confirmed: landmarks a person confirmed; they
        come back unchanged and the others are predicted consistently with them
        (:class:`Conditioner`). Without hints (or all NaN) this is the plain prediction.
        """
        if hints is not None and not np.isnan(np.asarray(hints, float)).all():
            if mc_passes:
                raise ScnError("MC dropout passes are not combined with hints")
            return self.conditioner(image).predict(hints, heatmaps=heatmaps)
        start = time.perf_counter()
        if not isinstance(image, Radiograph):
            image = read_image(image)
        net_input, transform = prepare_input(image, self.input_size, self.normalisation, self.device)
        with self._deepest_features(embed) as features:
            points, values, out = self.forward(net_input[None, None])
        result = network_prediction(image, transform, points, values, out, heatmaps, self.objects)
        result.embedding = features[0] if features else None
        if self.objects is None:
            result.points = self.refine(self.fine_input(image), result.points)
        else:
            centres = points[0].cpu().double().numpy()
            result.points = self.members(self.fine_input(image), transform, centres, result.points)
        if mc_passes:
            seed = zlib.crc32(image.id.encode())
            mc = self.dropout_passes(net_input, mc_passes, seed).cpu().double().numpy()
            if self.objects is not None:  # each pass's centres with the mean shape: the spread of stage 1
                mc = np.stack([self.objects.place(c) for c in mc])
            result.mc_points = transform.from_network(mc)
        result.seconds = time.perf_counter() - start
        return result

    @torch.inference_mode()
    def embed(self, image: Radiograph | str | Path) -> np.ndarray | None:
        """What an image looks like to the model (as ``predict(embed=True)`` gives it), from one pass only."""
        if not isinstance(image, Radiograph):
            image = read_image(image)
        net_input, _ = prepare_input(image, self.input_size, self.normalisation, self.device)
        with self._deepest_features(True) as features:
            self.model(net_input[None, None].to(self.device))
        return features[0] if features else None

    @contextlib.contextmanager
    def _deepest_features(self, wanted: bool) -> Iterator[list[np.ndarray]]:
        """Collect the local-appearance component's deepest level (mean and max per channel) while a pass runs."""
        caught: list[np.ndarray] = []
        blocks = getattr(getattr(self.model, "local", None), "blocks", None)
        if not wanted or not blocks:
            yield caught
            return

        def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
            pooled = torch.cat([output.float().mean(dim=(-2, -1)), output.float().amax(dim=(-2, -1))], dim=1)
            caught.append(pooled[0].cpu().numpy().astype(np.float32))

        handle = blocks[-1].register_forward_hook(hook)
        try:
            yield caught
        finally:
            handle.remove()

    def conditioner(
        self,
        image: Radiograph | str | Path,
        keep_within: float | None = None,
        method: ConditioningMethod | str = "auto",
    ) -> Conditioner:
        """One image prepared for predictions conditioned on confirmed landmarks (:class:`~.conditioner.Conditioner`).

        ``keep_within`` None: the conditioner's default (``KEEP_WITHIN``).
        """
        from .conditioner import KEEP_WITHIN, Conditioner

        image = image if isinstance(image, Radiograph) else read_image(image)
        return Conditioner(self, image, KEEP_WITHIN if keep_within is None else keep_within, method)

    def predict_files(
        self,
        paths: Iterable[str | Path],
        heatmaps: bool = False,
        progress: Callable[[int], None] | None = None,
        spacing: Callable[[Radiograph], Radiograph] | None = None,
        hints: Mapping[str, np.ndarray] | None = None,
    ) -> Iterator[Prediction | ImageReadError]:
        """Predict many files; an unreadable one yields its error and the rest go on.

        ``hints[image id]`` holds an image's confirmed landmarks (see :meth:`predict`).
        """
        for i, path in enumerate(paths):
            try:
                image = read_image(path)
                if spacing is not None:
                    image = spacing(image)
                yield self.predict(image, heatmaps=heatmaps, hints=(hints or {}).get(image.id))
            except ImageReadError as exc:
                yield exc
            if progress:
                progress(i + 1)


def checkpoint_error(
    checkpoint: str | Path, samples: Sequence[Sample], device: torch.device | str | None = None
) -> tuple[float | None, str]:
    """Mean point error of a saved model on samples, through the inference path, and its unit.

    The one measure by which models are compared: the predictor the app uses, local
    stage and all, on the original images (mm when every sample's spacing is known).
    None when no sample has a landmark to compare.
    """
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    errors, unit = sample_errors(samples, [predictor.predict(s.path).points for s in samples])
    return mean_error(errors), unit


def predict_samples(
    model: SpatialConfigurationNet,
    samples: Sequence[Sample],
    device: torch.device,
    batch_size: int = 8,
    objects: ObjectLayout | None = None,
    as_centres: bool = False,
) -> list[np.ndarray]:
    """The coarse SCN's points (N, 2) of every sample, in its original pixels.

    With ``objects`` the network finds object centres (decoded along the chain), and
    the points are the template's members on them (stage 1 of an object layout,
    before stage 2), or with ``as_centres`` the centres themselves (M, 2).
    """
    predicted = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            inputs = torch.stack([s.input for s in chunk])[:, None].to(device)
            points, _ = decode_centres(model(inputs).heatmaps.float(), objects, inputs)
            for sample, pts in zip(chunk, points.cpu().double().numpy()):
                placed = pts if objects is None or as_centres else objects.place(pts)
                predicted.append(sample.transform.from_network(placed))
    model.train(was_training)
    return predicted


def sample_errors(samples: Sequence[Sample], predicted: Sequence[np.ndarray]) -> tuple[np.ndarray, str]:
    """Point errors (images, landmarks) of ``predicted`` against the samples' truth, and their unit."""
    unit = error_unit([s.spacing for s in samples])
    errors = [point_errors(p, s.points, s.spacing if unit == "mm" else None) for s, p in zip(samples, predicted)]
    return np.array(errors), unit


def validation_errors(
    model: SpatialConfigurationNet,
    samples: Sequence[Sample],
    device: torch.device,
    batch_size: int = 8,
    objects: ObjectLayout | None = None,
) -> tuple[np.ndarray, str]:
    """Point errors (images, landmarks) on ``samples``, in mm when every spacing is known."""
    return sample_errors(samples, predict_samples(model, samples, device, batch_size, objects))


def network_prediction(
    image: Radiograph,
    transform: InputTransform,
    points: torch.Tensor,
    values: torch.Tensor,
    out: SCNOutput,
    heatmaps: bool,
    objects: ObjectLayout | None = None,
) -> Prediction:
    """A batch-of-one network output as a :class:`Prediction` in the image's pixels (heatmaps when asked).

    An object model's outputs are per object: every landmark gets its object's
    confidence and heatmaps (so overlays, doubt scores and caches stay per landmark)
    and the template's position on its object's centre, which stage 2 then refines.
    """
    centres = points[0].cpu().double().numpy()
    confidence = values[0].cpu().numpy().astype(np.float64)
    owner = slice(None) if objects is None else objects.objects.owner
    result = Prediction(
        image.id,
        image.path,
        transform.from_network(centres if objects is None else objects.place(centres)),
        confidence[owner],
        image.spacing,
        image.spacing_source,
        centres=None if objects is None else transform.from_network(centres),
    )
    if heatmaps:
        result.heatmaps = Heatmaps(
            out.heatmaps[0].float().cpu().numpy()[owner],
            out.local[0].float().cpu().numpy()[owner],
            None if out.spatial is None else out.spatial[0].float().cpu().numpy()[owner],
            transform,
        )
    return result
