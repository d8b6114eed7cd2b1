"""From a trained model and a radiograph to landmark positions, confidences and heatmaps.

Positions come back in the original image's pixels (and mm when its spacing is
known); the heatmaps, when asked for, at network resolution together with the
transform that lays them over the image. The confidence of a landmark is the
value of its final heatmap at the peak: with the paper's target scale a perfect
prediction peaks at ``100 / (2 pi sigma^2)``, about 2.5.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..configs import TextEnum
from ..errors import CheckpointError, ImageReadError, ScnError
from ..io.heatmap_cache import Heatmaps
from ..io.images import Radiograph, SpacingSource, read_image
from .config import TrainConfig
from .data import Normalisation, Sample, prepare_input
from .device import best_device
from .evaluation import error_unit, mean_error, point_errors
from .geometry import InputTransform
from .heatmaps import decode_peaks
from .model_file import ModelFile, TrainingMetrics
from .network import SCNOutput, SpatialConfigurationNet
from .refinement import Refiner
from .rng import private_rng, seeded_rng

__all__ = [
    "HINT_SIGMA",
    "Conditioner",
    "ConditioningMethod",
    "Heatmaps",
    "Prediction",
    "Predictor",
    "checkpoint_error",
    "predict_samples",
    "sample_errors",
    "validation_errors",
]


class ConditioningMethod(TextEnum):
    """How confirmed landmarks steer the other proposals (:class:`Conditioner`)."""

    AUTO = "auto"  # TRAINED for a model trained with hint channels, REPLACE otherwise
    REPLACE = "replace"  # training-free: a confirmed landmark's LA heatmap replaced by a Gaussian
    TRAINED = "trained"  # the confirmed landmarks in the hint channels the SC component was trained with


#: The width of a confirmed landmark's hint (network px) when the checkpoint has no learned sigma.
HINT_SIGMA = 2.5
#: A re-placed landmark keeps its plain position unless the conditioned one lies further than this many of
#: its sigmas away (benchmarks/RESULTS.md: conditioning decides *which* structure, not *where exactly*).
KEEP_WITHIN = 3.0


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
        #: The learned target sigma of every landmark (network px): the width of a confirmed landmark's hint.
        self.sigma = np.full(len(self.names), HINT_SIGMA)
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
        predictor.train_config, predictor.metrics = held.train_config, held.metrics
        if held.sigmas is not None and held.sigmas.numel() == len(held.landmark_names):
            predictor.sigma = held.sigmas.detach().double().cpu().numpy()
        if held.local_stage is not None:
            try:
                refiner = Refiner(held.local_stage.config, len(held.landmark_names))
                refiner.load_state_dict(held.local_stage.weights)
            except (TypeError, RuntimeError, ValueError) as exc:
                raise CheckpointError(f"{path}: its local refinement stage does not load ({exc})") from None
            predictor.fine_size = held.local_stage.input_size
            predictor.refiner = refiner.to(predictor.device).eval()
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
                out = self.model(net_input[None, None].expand(passes, 1, *net_input.shape))
                return decode_peaks(out.heatmaps.float())[0]
            finally:
                for m in dropouts:
                    m.eval()

    def predict(
        self,
        image: Radiograph | str | Path,
        heatmaps: bool = False,
        mc_passes: int = 0,
        hints: np.ndarray | None = None,
    ) -> Prediction:
        """Landmarks of one image (read from disk when given a path).

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
        points, values, out = self.forward(net_input[None, None])
        result = _prediction(image, transform, points, values, out, heatmaps)
        result.points = self.refine(self.fine_input(image), result.points)
        if mc_passes:
            seed = zlib.crc32(image.id.encode())
            mc = self.dropout_passes(net_input, mc_passes, seed).cpu().double().numpy()
            result.mc_points = transform.from_network(mc)
        result.seconds = time.perf_counter() - start
        return result

    def conditioner(
        self,
        image: Radiograph | str | Path,
        keep_within: float = KEEP_WITHIN,
        method: ConditioningMethod | str = ConditioningMethod.AUTO,
    ) -> Conditioner:
        """One image prepared for predictions conditioned on confirmed landmarks (see :class:`Conditioner`)."""
        return Conditioner(self, image if isinstance(image, Radiograph) else read_image(image), keep_within, method)

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
) -> list[np.ndarray]:
    """The coarse SCN's points (N, 2) of every sample, in its original pixels."""
    predicted = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            inputs = torch.stack([s.input for s in chunk])[:, None].to(device)
            points, _ = decode_peaks(model(inputs).heatmaps.float())
            for sample, pts in zip(chunk, points.cpu().double().numpy()):
                predicted.append(sample.transform.from_network(pts))
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
) -> tuple[np.ndarray, str]:
    """Point errors (images, landmarks) on ``samples``, in mm when every spacing is known."""
    return sample_errors(samples, predict_samples(model, samples, device, batch_size))


def _prediction(
    image: Radiograph,
    transform: InputTransform,
    points: torch.Tensor,
    values: torch.Tensor,
    out: SCNOutput,
    heatmaps: bool,
) -> Prediction:
    """A batch-of-one network output as a :class:`Prediction` in the image's pixels (heatmaps when asked)."""
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
    return result


class Conditioner:
    """One image's predictions given the landmarks a person confirmed.

    The LA pass runs once; each new set of confirmed landmarks costs only the SC
    pass on the small, downsampled LA heatmaps and the decoding, so an annotator's
    every correction can re-place the other landmarks at once. A confirmed landmark
    is shown to the SC component as the ideal LA response: a Gaussian of the
    landmark's learned sigma at the confirmed position, with the height and sign of
    that landmark's own strongest LA response (only LA x SC is fitted, so each
    channel's sign is the network's choice). Confirmed landmarks come back exactly
    as given.

    The conditioned SC pass is good at telling *which* structure a landmark is on and
    worse than the plain prediction at *where exactly* (a clean Gaussian is not what
    SC was trained on). So an unconfirmed landmark whose conditioned peak lies within
    ``keep_within`` of its sigmas of the plain peak keeps the plain position; only a
    jump to another structure is taken. ``keep_within=0`` takes every conditioned peak.

    A model trained with hint channels (``TrainConfig.hint_rate``) learned what a
    confirmed landmark looks like: there the Gaussians go into its hint channels and
    the LA heatmaps stay as they are (``method="trained"``, the default for such a
    model; ``"replace"`` forces the training-free way, for comparison).
    """

    def __init__(
        self,
        predictor: Predictor,
        image: Radiograph,
        keep_within: float = KEEP_WITHIN,
        method: ConditioningMethod | str = ConditioningMethod.AUTO,
    ) -> None:
        try:
            method = ConditioningMethod(method)
        except ValueError:
            choices = ", ".join(ConditioningMethod)
            raise ScnError(f"unknown conditioning method {method!r}; choose one of {choices}") from None
        trained = predictor.model.config.hint_channels
        if method == ConditioningMethod.TRAINED and not trained:
            raise ScnError("this model was trained without hint channels; condition it with method 'replace'")
        if method == ConditioningMethod.AUTO:
            method = ConditioningMethod.TRAINED if trained else ConditioningMethod.REPLACE
        self.method = method
        self.predictor, self.image, self.keep_within = predictor, image, keep_within
        p = predictor
        net_input, self.transform = prepare_input(image, p.input_size, p.normalisation, p.device)
        with torch.inference_mode():
            self.output = p.model(net_input[None, None].to(p.device))
        local = self.output.local[0].float()
        n, h, w = local.shape
        flat = local.reshape(n, -1)
        self.amplitude = flat.gather(1, flat.abs().argmax(dim=1, keepdim=True))[:, 0]  # signed strongest LA value
        self._grid = (
            torch.arange(h, device=local.device, dtype=torch.float32)[:, None],
            torch.arange(w, device=local.device, dtype=torch.float32)[None, :],
        )
        self._sigma = torch.as_tensor(p.sigma, dtype=torch.float32, device=local.device)
        self._hints: dict[tuple[int, float, float], torch.Tensor] = {}
        self._fine = p.fine_input(image)
        self._refined: dict[tuple[int, float, float], np.ndarray] = {}
        self._plain = decode_peaks(self.output.heatmaps.float())  # (points, values), network px

    def _hint(self, k: int, position: np.ndarray) -> torch.Tensor:
        """A Gaussian of peak 1 and landmark ``k``'s sigma at ``position`` (original px), cached per position."""
        key = (k, float(position[0]), float(position[1]))
        cached = self._hints.get(key)
        if cached is None:
            x, y = self.transform.to_network(np.asarray(position, dtype=np.float64)[None])[0]
            ys, xs = self._grid
            two_s2 = 2 * float(self._sigma[k]) ** 2
            cached = torch.exp(-((ys - y) ** 2) / two_s2) * torch.exp(-((xs - x) ** 2) / two_s2)
            self._hints[key] = cached
        return cached

    def _refine(self, points: np.ndarray, confirmed: np.ndarray) -> np.ndarray:
        """The local stage's positions, run only for landmarks whose coarse position is new to this image.

        A correction usually moves few of the other coarse peaks, and a patch's refined
        position depends on nothing but the landmark and where the patch is, so most
        landmarks reuse the answer of an earlier call (the local stage was 80 % of a
        spine re-prediction's time).
        """
        if self._fine is None:
            return points
        keys = {
            k: (k, float(points[k, 0]), float(points[k, 1]))
            for k in np.flatnonzero(~confirmed & ~np.isnan(points).any(axis=1))
        }
        new = [k for k, key in keys.items() if key not in self._refined]
        if new:
            skip = np.ones(len(points), dtype=bool)
            skip[new] = False
            moved = self.predictor.refine(self._fine, points, skip=skip)
            self._refined.update((keys[k], moved[k]) for k in new)
        out = points.copy()
        for k, key in keys.items():
            out[k] = self._refined[key]
        return out

    def predict(self, hints: np.ndarray | None, heatmaps: bool = False) -> Prediction:
        """Every landmark, the confirmed ones (non-NaN rows of ``hints``, original px) as given."""
        start = time.perf_counter()
        p, out = self.predictor, self.output
        n = p.num_landmarks
        hints = np.full((n, 2), np.nan) if hints is None else np.asarray(hints, dtype=np.float64)
        if hints.shape != (n, 2):
            raise ScnError(f"hints for {hints.shape[0]} landmarks given to a model of {n}")
        confirmed = ~np.isnan(hints).any(axis=1)
        with torch.inference_mode():
            if confirmed.any():
                local = out.local.float()
                if self.method == ConditioningMethod.TRAINED:  # the hint channels the net was trained with; LA as it is
                    given = torch.zeros_like(local)
                    for k in np.flatnonzero(confirmed):
                        given[0, k] = self._hint(int(k), hints[k])
                    out = p.model.reconfigure(local, local, given)
                else:  # training-free: the confirmed LA channels become the ideal LA response
                    conditioned = local.clone()
                    for k in np.flatnonzero(confirmed):  # only the confirmed channels; a Gaussian is separable
                        conditioned[0, k] = self.amplitude[k] * self._hint(int(k), hints[k])
                    out = p.model.reconfigure(local, conditioned)
            points, values = decode_peaks(out.heatmaps.float())
            if confirmed.any() and self.keep_within > 0 and self.method == ConditioningMethod.REPLACE:
                # a small shift is not a better answer: keep the plain
                plain, plain_values = self._plain
                near = (points - plain).norm(dim=-1) <= self.keep_within * self._sigma
                points, values = torch.where(near[..., None], plain, points), torch.where(near, plain_values, values)
        result = _prediction(self.image, self.transform, points, values, out, heatmaps)
        result.points = self._refine(result.points, confirmed)
        result.points[confirmed] = hints[confirmed]
        result.seconds = time.perf_counter() - start
        return result
