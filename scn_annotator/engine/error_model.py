"""How a model's errors go together along a chain of objects, so that one correction moves what it implies.

The oracle's corrections on real spines are spent on precision, not on identity:
of 31.4 per spine (20 test spines, 1 % of the height), 29.8 were on corners whose
vertebra was right, and 19.5 on a vertebra one of whose corners was already confirmed.
A corrected corner used to move only its own vertebra, rigidly. But the model's errors
are correlated: the corners of one vertebra move together along each axis (correlation
0.9-0.97 on one side, about 0.8 across it), and a column drawn too low or too small
is so for several vertebrae at once. Learned from the model's own errors on its training
images, that correlation re-places every unconfirmed corner by its expected error given
the confirmed ones (simple kriging, the best linear prediction).

The covariance is separable so that a few images estimate it: one block for the members
of an object, pooled over the objects, times a correlation by the distance along the
chain. The full 136 x 136 covariance of a spine, estimated from 32 images, raised the
corrections (31.4 -> 46); the separable one lowered them from 8 images on (31.4 ->
26.6 with 8, 24.3 with 32 and with 399). On all 82 test spines of that split the conditioned
corrections fell from 29.01 to 19.87 per spine (benchmarks/RESULTS.md, issue 21, stop 40).
No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ErrorModel"]


@dataclass(frozen=True)
class ErrorModel:
    """The second moments of a model's errors (network px) for a chain of objects of ``K`` members each."""

    block: np.ndarray  # (2K, 2K): members' (x, y) errors of one object, pooled over objects
    lags: np.ndarray  # (M,): the correlation of two objects' errors by their distance along the chain
    #: A share of the mean variance added to the confirmed errors' covariance: labels are a pixel or two off too.
    RIDGE = 0.05
    #: An object whose members' mean error is beyond this share of the centres' gap was found on another
    #: object: its error is identity, not precision, and neither teaches nor is taught the correlation.
    ON_ANOTHER = 0.5

    @classmethod
    def fit(cls, members: Sequence[Sequence[int]], errors: Sequence[np.ndarray], gap: float) -> ErrorModel | None:
        """From (N, 2) errors (truth minus prediction, network px, NaN where unlabelled) per image; None unless
        every object has the same number of members, more than one, and some image has an object right."""
        sizes = {len(m) for m in members}
        if len(sizes) != 1 or sizes.pop() < 2 or not errors:
            return None
        index = np.asarray(members)  # (M, K)
        e = np.stack([np.asarray(x, dtype=np.float64)[index].reshape(len(index), -1) for x in errors])  # (I, M, 2K)
        # NaN where a member is unlabelled (a vertebra outside the image, a label set aside): not usable anyway
        centre = np.linalg.norm(e.reshape(*e.shape[:2], -1, 2).mean(axis=2), axis=-1)  # (I, M)
        usable = ~np.isnan(e).any(axis=-1) & (centre < cls.ON_ANOTHER * gap)
        if not usable.any():
            return None
        x = np.where(usable[..., None], e, 0.0)
        block = np.einsum("imk,iml->kl", x, x) / usable.sum()
        m = index.shape[0]
        lags = np.zeros(m)
        scale = float(np.trace(block)) or 1.0
        for d in range(m):
            both = usable[:, : m - d] & usable[:, d:]
            if both.any():
                lags[d] = np.einsum("iok,iok->", x[:, : m - d] * both[..., None], x[:, d:]) / both.sum() / scale
        lags[0] = 1.0
        return cls(block, np.clip(lags, 0.0, 1.0))

    def covariance(self, members: Sequence[Sequence[int]]) -> np.ndarray:
        """(2N, 2N) over the landmarks' (x, y) in landmark order."""
        index = np.asarray(members)
        m, k = index.shape
        distance = np.abs(np.arange(m)[:, None] - np.arange(m)[None, :])
        by_object = np.einsum("ab,kl->akbl", self.lags[distance], self.block)  # (M, 2K, M, 2K)
        order = np.argsort(np.stack([2 * index, 2 * index + 1], axis=-1).reshape(m, -1).ravel())
        flat = by_object.reshape(m * 2 * k, m * 2 * k)
        return flat[np.ix_(order, order)]

    def expected(self, members: Sequence[Sequence[int]], known: np.ndarray, errors: np.ndarray) -> np.ndarray:
        """(N, 2) every landmark's expected error given the ``errors`` (N, 2) at the ``known`` ones (N,) bool."""
        if not known.any():
            return np.zeros_like(errors)
        cov = self.covariance(members)
        axes = np.repeat(known, 2)
        given = cov[np.ix_(axes, axes)]
        given = given + self.RIDGE * float(np.mean(np.diag(given))) * np.eye(len(given))
        weights = np.linalg.solve(given, np.asarray(errors, dtype=np.float64)[known].ravel())
        return (cov[:, axes] @ weights).reshape(-1, 2)

    def to_payload(self) -> dict[str, Any]:
        return {"block": self.block.tolist(), "lags": self.lags.tolist()}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> ErrorModel:
        return cls(np.asarray(data["block"], dtype=np.float64), np.asarray(data["lags"], dtype=np.float64))
