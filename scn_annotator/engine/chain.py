"""Decoding a chain of objects jointly: each centre where its heatmap is strong *and* its neighbours fit.

Stage 1 of an object layout gives one heatmap per vertebra centre. Read one by
one (each heatmap's maximum), two neighbouring heatmaps can peak on the same
vertebra, or a stretch of the column can slip by one: each channel's own maximum
lies on a look-alike, and nothing in the decoding says that T7 must lie one
vertebra below T6. The heatmaps usually still show the right place as a lower
peak (the LA component sees every vertebra; the SC component's answer is broad).
So the candidates are the strongest local maxima of every channel (the places
where some vertebra is), and one candidate per channel is chosen for the whole
chain at once (Viterbi, exact on a chain): the cost of a choice is how much weaker
the channel's heatmap is there than at its strongest, plus how far each step from
one centre to the next departs from the training labels' median step for that
pair, in length and in direction, each in units of its spread
(:meth:`~.objects.ChainPrior.step_cost`), and, where the prior has them (runs since stop 42),
how each step follows the one before, its length ratio and its turn (:meth:`~.objects.ChainPrior.bend_cost`):
the chain is then chosen over pairs of each channel's cheapest candidates (real spines, told the true
ends: 11.4 -> 7.3 and 17.6 -> 8.1 % of vertebrae on a neighbour; benchmarks/RESULTS.md). A clear maximum on a plausible
chain is what the per-channel argmax gave; where the argmax made the chain
impossible (two centres on one vertebra, a gap of two vertebrae), a weaker peak
that fits wins.

This is the classic pictorial-structure decoding (Felzenszwalb and Huttenlocher,
2005) on the SCN's candidates; the SCN itself is unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from .heatmaps import decode_peaks, window_max
from .levels import LevelCheck
from .objects import ChainPrior, ObjectLayout

__all__ = ["CANDIDATES", "chain_peaks", "decode_centres"]

#: Local maxima each channel adds to the candidates.
CANDIDATES = 4
#: With bends, each channel's cheapest candidates the decoding over pairs considers: a step then costs
#: O(BEND_CANDIDATES^3) instead of O(P^3) for the P candidates of all channels (40-70 on a spine).
BEND_CANDIDATES = 24
#: Below this share of a channel's strongest value the heatmap cost stops growing (log(1e-6) = -13.8).
FLOOR = 1e-6


def decode_centres(
    heatmaps: torch.Tensor,
    layout: ObjectLayout | None,
    inputs: torch.Tensor | None = None,
    fixed: np.ndarray | None = None,
    support: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The peaks of stage 1's heatmaps (..., M, H, W): jointly along a chain where the layout has a prior,
    else each channel's own (:func:`~.heatmaps.decode_peaks`). The one decoding rule for object centres.

    ``inputs`` (..., 1, H, W) or (..., H, W): the network inputs the heatmaps came from, which the layout's
    level check (``levels.py``) looks at; without them (or without a check) the chain is decoded by its
    heatmaps and priors alone. ``fixed`` (M, 2) network px, NaN where free: centres a person set (one
    image); a chain passes through them (:func:`chain_peaks`), as through ``support``'s peaks.
    """
    if layout is None or layout.chain is None:
        return decode_peaks(heatmaps)
    if layout.levels is None or inputs is None:
        return chain_peaks(heatmaps, layout.chain, fixed=fixed)
    return chain_peaks(heatmaps, layout.chain, levels=layout.levels, inputs=inputs, fixed=fixed, support=support)


def chain_peaks(
    heatmaps: torch.Tensor,
    prior: ChainPrior,
    candidates: int = CANDIDATES,
    levels: LevelCheck | None = None,
    inputs: torch.Tensor | None = None,
    fixed: np.ndarray | None = None,
    support: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`~.heatmaps.decode_peaks` for (..., M, H, W) heatmaps of a chain: (points (..., M, 2), values).

    The chosen peak of each channel is refined to sub-pixel as ``decode_peaks`` does. With a level check
    and the ``inputs`` (..., H, W), the ends are judged by it (:meth:`~.levels.LevelCheck.unary`).

    ``fixed`` (M, 2), network px, NaN where free: centres a person confirmed, for every image of the batch.
    Each is that channel's only candidate, so the rest of the chain is chosen to fit them: a corrected
    vertebra takes its neighbours with it along the column instead of only its own heatmap's peak.

    ``support`` (like ``heatmaps``; used with a level check, whose interior cost is "some object is here"):
    more heatmaps of where objects are, whose peaks are candidates too and count as an object being there.
    A conditioned pass's heatmaps follow the SC component's new belief and may leave a vertebra unclaimed;
    the plain pass's still show it.
    """
    *lead, m, h, w = heatmaps.shape
    if m != len(prior.steps) + 1:
        raise ValueError(f"a chain prior of {len(prior.steps) + 1} objects for {m} heatmaps")
    maps = heatmaps.reshape(-1, m, h, w).float()
    top = _peaks(maps, candidates)
    flat = maps.reshape(maps.shape[0], m, h * w)
    extra = None if support is None or levels is None else support.reshape(-1, m, h, w).float()
    if extra is not None:
        top = torch.cat([top, _peaks(extra, candidates)], dim=-1)
        extra = extra.reshape(extra.shape[0], m, h * w)
    images = None if inputs is None or levels is None else inputs.reshape(-1, *inputs.shape[-2:])
    pinned = _pinned(fixed, m, h, w)
    chosen = []
    for b in range(maps.shape[0]):
        index = torch.unique(top[b]).cpu().numpy()  # every channel's candidates, offered to all
        if pinned is not None:
            index = np.union1d(index, pinned[pinned >= 0])
        at_index = torch.as_tensor(index, device=flat.device)
        values = flat[b][:, at_index].cpu().double().numpy()  # (M, P)
        strongest = flat[b].max(dim=1).values.cpu().double().numpy()[:, None]
        unary = -np.log(np.clip(values / np.where(strongest > 0, strongest, 1.0), FLOOR, 1.0))
        xy = np.stack([index % w, index // w], axis=-1).astype(np.float64)
        if images is not None and levels is not None:
            present = _presence(values)
            if extra is not None:
                present = np.maximum(present, _presence(extra[b][:, at_index].cpu().double().numpy()))
            anywhere = -np.log(np.clip(present, FLOOR, 1.0))
            unary = levels.unary(unary, anywhere, images[b], xy, prior)
        elif (place := prior.place_cost(xy)) is not None:
            unary = unary + place
        if pinned is not None:
            for o in np.flatnonzero(pinned >= 0):
                unary[o] = np.where(index == pinned[o], 0.0, np.inf)
        chosen.append(index[_viterbi(unary, xy, prior)])
    # keep a 3 x 3 window around each chosen pixel, so decode_peaks finds it and refines it as always; the
    # rest is lowered below the map's own minimum (finite: a parabola through it stays a number). A pixel
    # chosen from another channel's peak (or the support's) need not be its own channel's maximum there, or
    # anything but the floor: it is raised just above its window, so the argmax is the chosen pixel.
    at = torch.as_tensor(np.stack(chosen), device=maps.device)[..., None]  # (B, M, 1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep.scatter_(-1, at, True)
    keep = window_max(keep.reshape(-1, m, h, w).float(), 3) > 0
    lowest = maps.amin(dim=(-2, -1), keepdim=True) - 1.0
    masked = torch.where(keep, maps, lowest).reshape(-1, m, h * w)
    top = masked.max(dim=-1, keepdim=True).values
    masked.scatter_(-1, at, torch.maximum(masked.gather(-1, at), torch.nextafter(top, top + 1)))
    points, values = decode_peaks(masked.reshape(-1, m, h, w))
    return points.reshape(*lead, m, 2), values.reshape(*lead, m)


def _peaks(maps: torch.Tensor, candidates: int) -> torch.Tensor:
    """(B, M, K) flat indices of each channel's strongest local maxima in (B, M, H, W)."""
    b, m, h, w = maps.shape
    local_max = maps == window_max(maps, 5)
    scored = torch.where(local_max, maps, torch.full_like(maps, -torch.inf)).reshape(b, m, h * w)
    return scored.topk(min(candidates, h * w), dim=-1).indices


def _presence(values: np.ndarray) -> np.ndarray:
    """(1, P) the strongest channel at each candidate of (M, P) values, as a share of the strongest of all."""
    present = values.max(axis=0, keepdims=True)
    return present / max(float(present.max()), np.finfo(float).tiny)


def _pinned(fixed: np.ndarray | None, m: int, h: int, w: int) -> np.ndarray | None:
    """(M,) the flat pixel index of each fixed centre (-1 where free), None when nothing is fixed."""
    if fixed is None:
        return None
    fixed = np.asarray(fixed, dtype=np.float64).reshape(m, 2)
    free = np.isnan(fixed).any(axis=1)
    if free.all():
        return None
    x = np.clip(np.round(np.nan_to_num(fixed[:, 0])), 0, w - 1).astype(np.int64)
    y = np.clip(np.round(np.nan_to_num(fixed[:, 1])), 0, h - 1).astype(np.int64)
    return np.where(free, -1, y * w + x)


def _viterbi(unary: np.ndarray, xy: np.ndarray, prior: ChainPrior) -> np.ndarray:
    """(M,) the candidate chosen per channel: the chain of least heatmap cost (M, P) plus step cost, and bend
    cost where the prior has bends (:func:`_viterbi_bends`)."""
    steps = xy[None, :, :] - xy[:, None, :]  # (P previous, P this, 2)
    if prior.ratios is not None and len(unary) > 2:
        return _viterbi_bends(unary, steps, prior)
    cost, back = unary[0], []
    for o in range(1, len(unary)):
        total = cost[:, None] + prior.weight * prior.step_cost(steps, o - 1)
        back.append(total.argmin(axis=0))
        cost = total.min(axis=0) + unary[o]
    path = [int(np.argmin(cost))]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    return np.array(path[::-1])


def _viterbi_bends(unary: np.ndarray, steps: np.ndarray, prior: ChainPrior) -> np.ndarray:
    """Like :func:`_viterbi`, with how each step follows the previous one (:meth:`ChainPrior.bend_cost`): a
    state is the candidates of two neighbouring objects, so a step costs O(P^3) for P candidates per channel.
    Each channel therefore offers only its ``BEND_CANDIDATES`` cheapest candidates of finite cost (a centre a
    person placed leaves one); within them the chain is exact (on real spines the same as with all of them)."""
    allowed = []
    for u in unary:
        order = np.argsort(u, kind="stable")[:BEND_CANDIDATES]
        finite = order[np.isfinite(u[order])]
        allowed.append(finite if finite.size else order)  # an all-infinite channel: as is
    log_length = np.log(np.maximum(np.hypot(steps[..., 0], steps[..., 1]), prior.GRID))
    direction = np.arctan2(steps[..., 1], steps[..., 0])

    def step_cost(o: int) -> np.ndarray:  # (from, to) of objects o and o + 1
        pair = np.ix_(allowed[o], allowed[o + 1])
        return prior.weight * prior.step_cost(steps[pair], o)

    cost = unary[0][allowed[0]][:, None] + step_cost(0) + unary[1][allowed[1]][None, :]
    back = []
    for o in range(2, len(unary)):
        first = np.ix_(allowed[o - 2], allowed[o - 1])
        second = np.ix_(allowed[o - 1], allowed[o])
        ratio = log_length[second][None, :, :] - log_length[first][:, :, None]  # (a, b, c)
        turn = direction[second][None, :, :] - direction[first][:, :, None]
        total = cost[:, :, None] + prior.bend_cost(ratio, turn, o - 2) + step_cost(o - 1)[None, :, :]
        pointers = total.argmin(axis=0)  # (b, c): the best a
        back.append(pointers)
        cost = np.take_along_axis(total, pointers[None], axis=0)[0] + unary[o][allowed[o]][None, :]
    b, c = np.unravel_index(int(np.argmin(cost)), cost.shape)
    path = [int(c), int(b)]  # positions within ``allowed``, from the last object back
    for pointers in reversed(back):
        path.append(int(pointers[path[-1], path[-2]]))
    path = path[::-1]
    return np.array([allowed[o][k] for o, k in enumerate(path)])
