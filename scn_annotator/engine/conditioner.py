"""Predictions given the landmarks a person confirmed: every correction re-places the others at once.

Split from ``inference.py`` because it is a second way of running the same network
(the LA pass kept, the SC pass repeated per correction), with its own caches.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..configs import TextEnum
from ..errors import ScnError
from ..io.images import Radiograph
from .chain import decode_centres
from .data import prepare_input
from .inference import Prediction, Predictor, network_prediction
from .objects import chain_frames

__all__ = ["KEEP_WITHIN", "Conditioner", "ConditioningMethod"]


class ConditioningMethod(TextEnum):
    """How confirmed landmarks steer the other proposals (:class:`Conditioner`)."""

    AUTO = "auto"  # TRAINED for a model trained with hint channels, REPLACE otherwise
    REPLACE = "replace"  # training-free: a confirmed landmark's LA heatmap replaced by a Gaussian
    TRAINED = "trained"  # the confirmed landmarks in the hint channels the SC component was trained with


#: A re-placed landmark keeps its plain position unless the conditioned one lies further than this many of
#: its sigmas away (benchmarks/RESULTS.md: conditioning decides *which* structure, not *where exactly*).
KEEP_WITHIN = 3.0


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
        self._placed: dict[tuple[int, float, float, float, float], np.ndarray] = {}
        self._input = net_input[None, None]
        # (points, values), network px: the plain prediction, as Predictor.predict decodes it
        self._plain = decode_centres(self.output.heatmaps.float(), p.objects, self._input)
        self._plain_centres = self._plain[0][0].cpu().double().numpy()  # the same, one image, as an array
        self._plain_cache: np.ndarray | None = None

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

    def _channel_hints(self, hints: np.ndarray, confirmed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the network is told, per output (original px), and which outputs are told anything.

        Without objects, the confirmed landmarks themselves. With objects, each object
        with a confirmed member gets the centre that member implies on the plain
        prediction's frames, so a corrected corner moves its vertebra, whose other
        corners follow, and the SC component re-places the vertebrae around it.
        """
        objects = self.predictor.objects
        if objects is None:
            return hints, confirmed
        plain = self._plain_centres
        centres = objects.centre_hints(self.transform.to_network(hints), objects.frames(plain), objects.size(plain))
        return self.transform.from_network(centres), ~np.isnan(centres).any(axis=1)

    def _place(self, centres: np.ndarray, template: np.ndarray) -> np.ndarray:
        """Stage 2 on object ``centres`` (M, 2, network px), run only for objects whose crop is new to this image."""
        p = self.predictor
        if self._fine is None or p.refiner is None or p.objects is None:
            return template
        fine, fine_transform = self._fine
        objects = p.objects.objects
        c = fine_transform.to_network(self.transform.from_network(centres))
        frames = chain_frames(c)
        keys = [(o, *map(float, c[o]), float(frames[o, 0, 1]), float(frames[o, 1, 1])) for o in range(len(c))]
        new = [o for o, key in enumerate(keys) if key not in self._placed and not np.isnan(c[o]).any()]
        if new:
            subset = np.full_like(c, np.nan)
            subset[new] = c[new]
            placed = p.refiner.place(fine, subset, frames, p.objects, p.fine_scale)
            self._placed.update((keys[o], placed[list(objects.members[o])]) for o in new)
        out = np.full((objects.num_landmarks, 2), np.nan)
        for o, key in enumerate(keys):
            if key in self._placed:
                out[list(objects.members[o])] = self._placed[key]
        out = fine_transform.from_network(out)
        missing = np.isnan(out).any(axis=1)
        out[missing] = template[missing]
        return out

    def _plain_points(self) -> np.ndarray:
        """The landmarks as proposed before any correction (original px), computed once."""
        if self._plain_cache is None:
            self._plain_cache = self.predict(None).points
        return self._plain_cache

    def _expected(
        self, placed: np.ndarray, centres: np.ndarray, hints: np.ndarray, confirmed: np.ndarray
    ) -> np.ndarray:
        """``placed`` with every unconfirmed landmark whose object the conditioned pass left where it was
        moved by its expected error given the confirmed landmarks' (:class:`~.error_model.ErrorModel`).

        An object the conditioned pass moved to another place along the chain (``centres``, network px, more
        than :attr:`~.error_model.ErrorModel.ON_ANOTHER` of a gap from the plain one) keeps ``placed``: that
        is identity, which the SC component decides. A confirmed landmark whose object was proposed on
        another one says nothing of the others' precision and is not used.
        """
        layout = self.predictor.objects
        assert layout is not None and layout.errors is not None
        members, owner = layout.objects.members, layout.objects.owner
        to_net = self.transform.to_network
        plain = to_net(self._plain_points())
        errors = to_net(np.where(confirmed[:, None], hints, np.nan)) - plain
        limit = layout.errors.ON_ANOTHER * layout.gap
        on_another = np.array(
            [
                bool(np.linalg.norm(np.nanmean(errors[list(m)], axis=0)) >= limit)
                if confirmed[list(m)].any()
                else False
                for m in members
            ]
        )
        known = confirmed & ~on_another[owner]
        moved = np.linalg.norm(centres - self._plain_centres, axis=1) >= limit
        free = ~confirmed & ~moved[owner]
        if not known.any() or not free.any():
            return placed
        expected = layout.errors.expected(members, known, np.nan_to_num(errors))
        out = placed.copy()
        out[free] = self.transform.from_network(plain[free] + expected[free])
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
        wanted, chosen = self._channel_hints(hints, confirmed)
        with torch.inference_mode():
            if chosen.any():
                local = out.local.float()
                if self.method == ConditioningMethod.TRAINED:  # the hint channels the net was trained with; LA as it is
                    given = torch.zeros_like(local)
                    for k in np.flatnonzero(chosen):
                        given[0, k] = self._hint(int(k), wanted[k])
                    out = p.model.reconfigure(local, local, given)
                else:  # training-free: the confirmed LA channels become the ideal LA response
                    conditioned = local.clone()
                    for k in np.flatnonzero(chosen):  # only the confirmed channels; a Gaussian is separable
                        conditioned[0, k] = self.amplitude[k] * self._hint(int(k), wanted[k])
                    out = p.model.reconfigure(local, conditioned)
            if chosen.any():  # a chain passes through the objects a person placed; the level check judges the rest
                fixed = np.where(chosen[:, None], self.transform.to_network(wanted), np.nan)
                plain = self.output.heatmaps.float()  # the vertebrae the conditioned pass may no longer claim
                points, values = decode_centres(out.heatmaps.float(), p.objects, self._input, fixed, plain)
            else:  # the plain prediction itself: only a hinted decoding's centres are written into below
                points, values = self._plain
            if chosen.any() and self.keep_within > 0 and self.method == ConditioningMethod.REPLACE:
                # a small shift is not a better answer: keep the plain
                plain, plain_values = self._plain
                limit = self.keep_within * self._sigma
                if p.objects is not None and p.objects.chain is not None and p.objects.gap > 0:
                    limit = limit.clamp(max=0.5 * p.objects.gap)  # a step along a chain is another vertebra
                near = (points - plain).norm(dim=-1) <= limit
                points, values = torch.where(near[..., None], plain, points), torch.where(near, plain_values, values)
            if p.objects is not None and chosen.any():  # a confirmed member puts its object's centre where it says
                at = torch.as_tensor(self.transform.to_network(wanted[chosen]), dtype=points.dtype)
                points[0, torch.as_tensor(np.flatnonzero(chosen))] = at.to(points.device)
        result = network_prediction(self.image, self.transform, points, values, out, heatmaps, p.objects)
        if p.objects is None:
            result.points = self._refine(result.points, confirmed)
        else:
            centres = points[0].cpu().double().numpy()
            result.points = self._place(centres, result.points)
            if p.objects.errors is not None and confirmed.any():
                result.points = self._expected(result.points, centres, hints, confirmed)
        result.points[confirmed] = hints[confirmed]
        result.seconds = time.perf_counter() - start
        return result
