"""Coordinates between original pixels, physical millimetres and network-input pixels.

One object, :class:`InputTransform`, owns the mapping for one image, so that a
landmark placed by an annotator, a target drawn for training and a peak decoded
from a heatmap all mean the same point. Conventions everywhere: points are
``(x, y)``, pixel ``(0, 0)`` is the *centre* of the top-left pixel, and the
network input is the whole image scaled to fit, centred, with the rest padded.
Only numpy here: the napari app lays heatmaps over images without importing torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import ScnError

__all__ = ["ImageGeometry", "InputTransform", "SpacingRule", "fit_scale", "fit_transform"]


@dataclass(frozen=True)
class InputTransform:
    """Axis-aligned scale and shift from original pixels to network-input pixels.

    ``net = scale * (orig + 0.5) - 0.5 + offset`` per axis: pixel *edges* scale,
    which is what every resampler with ``align_corners=False`` does. ``spacing`` is
    the original image's (x, y) mm per pixel, or None when unknown.
    """

    scale: tuple[float, float]
    offset: tuple[float, float]
    input_size: tuple[int, int]  # (height, width) of the network input
    image_size: tuple[int, int]  # (width, height) of the original image
    spacing: tuple[float, float] | None = None

    def to_network(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return np.asarray(self.scale) * (p + 0.5) - 0.5 + np.asarray(self.offset)

    def from_network(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return (p + 0.5 - np.asarray(self.offset)) / np.asarray(self.scale) - 0.5

    def to_mm(self, points: np.ndarray) -> np.ndarray:
        if self.spacing is None:
            raise ValueError("this image has no known pixel spacing")
        return np.asarray(points, dtype=np.float64) * np.asarray(self.spacing)

    def from_mm(self, points: np.ndarray) -> np.ndarray:
        if self.spacing is None:
            raise ValueError("this image has no known pixel spacing")
        return np.asarray(points, dtype=np.float64) / np.asarray(self.spacing)

    @property
    def network_spacing(self) -> tuple[float, float] | None:
        """mm per network-input pixel, when the image spacing is known."""
        if self.spacing is None:
            return None
        return self.spacing[0] / self.scale[0], self.spacing[1] / self.scale[1]

    def affine_network_to_image(self) -> np.ndarray:
        """3x3 homogeneous matrix in (row, col) order mapping heatmap pixels onto the image.

        napari and numpy index arrays as (row, col); this is the affine a viewer
        needs to lay a network-resolution heatmap over the original image.
        """
        sx, sy = self.scale
        ox, oy = self.offset
        # orig = (net + 0.5 - off) / s - 0.5
        return np.array(
            [
                [1 / sy, 0.0, (0.5 - oy) / sy - 0.5],
                [0.0, 1 / sx, (0.5 - ox) / sx - 0.5],
                [0.0, 0.0, 1.0],
            ]
        )


def fit_scale(image_size: tuple[int, int], input_size: tuple[int, int]) -> float:
    """The scale at which a (width, height) image fits a (height, width) input, keeping its aspect."""
    return min(input_size[1] / image_size[0], input_size[0] / image_size[1])


def fit_transform(
    image_size: tuple[int, int],
    input_size: tuple[int, int],
    spacing: tuple[float, float] | None = None,
) -> InputTransform:
    """Scale a (width, height) image to fit (height, width) keeping its aspect, and centre it."""
    w, h = image_size
    in_h, in_w = input_size
    s = fit_scale(image_size, input_size)
    new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
    # The exact per-axis scale after rounding; both axes differ by < 1 px over the image.
    return InputTransform(
        scale=(new_w / w, new_h / h),
        offset=(float((in_w - new_w) // 2), float((in_h - new_h) // 2)),
        input_size=(int(in_h), int(in_w)),
        image_size=(int(w), int(h)),
        spacing=spacing,
    )


_RULE = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(?:mm)?\s*$")


@dataclass(frozen=True)
class SpacingRule:
    """A known physical distance between two landmarks fixes an image's pixel spacing.

    The hand data set's convention: landmarks 1 and 5 (0-based) are 50 mm apart,
    written ``1,5=50`` on the command line.
    """

    a: int
    b: int
    distance_mm: float

    @classmethod
    def parse(cls, text: str) -> SpacingRule:
        match = _RULE.match(text)
        if not match:
            raise ScnError(f"--spacing-from expects A,B=MM (for example 1,5=50), not {text!r}")
        a, b, mm = int(match[1]), int(match[2]), float(match[3])
        if a == b or mm <= 0:
            raise ScnError(f"--spacing-from needs two different landmarks and a positive distance: {text!r}")
        return cls(a, b, mm)

    def spacing(self, landmarks: np.ndarray) -> float | None:
        """Isotropic mm per pixel from one image's (N, 2) landmarks, None if either is missing."""
        pts = np.asarray(landmarks, dtype=np.float64)
        if max(self.a, self.b) >= len(pts):
            raise ScnError(f"--spacing-from uses landmark {max(self.a, self.b)}, but there are only {len(pts)}")
        d = float(np.linalg.norm(pts[self.a] - pts[self.b]))
        if not math.isfinite(d) or d <= 0:
            return None
        return self.distance_mm / d

    def __str__(self) -> str:
        return f"{self.a},{self.b}={self.distance_mm:g}"


def inside_image(x: float | np.ndarray, y: float | np.ndarray, size: tuple[int, int]) -> bool | np.ndarray:
    """Is (x, y) on an image of ``size`` (width, height)? Pixel edges count: -0.5 .. width - 0.5.

    The one in-image rule: for imports, for training labels and for corrections alike.
    """
    w, h = size
    return (x >= -0.5) & (y >= -0.5) & (x <= w - 0.5) & (y <= h - 0.5)


def clamp_to_image(x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    """The nearest point on the image: where a point dragged, accepted or marked beyond the edge goes."""
    w, h = size
    return min(max(float(x), -0.5), w - 0.5), min(max(float(y), -0.5), h - 0.5)


_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class ImageGeometry:
    """Where an image file's pixels lie in the scanner's (LPS, mm) space, as its header says.

    ``physical = origin + direction @ (spacing * index)``: ITK's rule, which 3D Slicer
    and every DICOM viewer apply, so that a landmark exported in physical coordinates
    lands on the same pixel when the image file is opened there. A file without such
    a header (PNG, JPEG) has unit spacing, origin 0 and no rotation, as ITK reads it.
    Kept in 3-D (``direction`` row-major 3 x 3) because a radiograph's plane need not be
    the scanner's x-y plane. This is the header's geometry, which a spacing given by
    the user or fixed from two landmarks does not change: those say what a pixel
    measures, not where the file puts it.
    """

    spacing: tuple[float, float] = (1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = _IDENTITY

    @classmethod
    def from_itk(
        cls, spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]
    ) -> ImageGeometry:
        """From SimpleITK's values for a 2-D or 3-D image (a 2-D one padded into the x-y plane)."""
        dimension = len(origin)
        matrix = np.eye(3)
        matrix[:dimension, :dimension] = np.asarray(direction, dtype=np.float64).reshape(dimension, dimension)
        padded = [float(v) for v in origin] + [0.0] * (3 - dimension)
        return cls((float(spacing[0]), float(spacing[1])), tuple(padded[:3]), tuple(matrix.ravel().tolist()))

    @classmethod
    def from_dict(cls, data: dict) -> ImageGeometry:
        return cls(tuple(data["spacing"]), tuple(data["origin"]), tuple(data["direction"]))

    def to_dict(self) -> dict[str, list[float]]:
        return {"spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}

    def _matrix(self) -> np.ndarray:
        """index (x, y, 0) -> physical offset from the origin."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3) @ np.diag([*self.spacing, 1.0])

    def to_physical(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) pixel positions -> (N, 3) physical ones (LPS, mm); NaN stays NaN."""
        xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        index = np.column_stack([xy, np.zeros(len(xy))])
        return np.asarray(self.origin) + index @ self._matrix().T

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) physical positions (LPS, mm) -> (N, 2) pixel positions, projected onto the image plane."""
        xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        index = (xyz - np.asarray(self.origin)) @ np.linalg.inv(self._matrix()).T
        return index[:, :2]

    def off_plane(self, points: np.ndarray) -> np.ndarray:
        """How far (mm) each physical point lies off the image's plane: a point far off it is not on this image."""
        xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        normal = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)[:, 2]
        return np.abs((xyz - np.asarray(self.origin)) @ normal)


#: The closest pair of different landmarks must stay this far apart in network pixels (in
#: the tenth percentile of the training images), or two heatmap peaks start to merge.
MIN_SEPARATION = 2.5


@dataclass(frozen=True)
class InputChoice:
    """The network input chosen for a data set, and why (recorded in the checkpoint)."""

    input_size: tuple[int, int]  # (height, width), multiples of the network's size multiple
    aspect: float  # median height / width of the images
    separation: float  # closest pair of different landmarks, network px, 10th percentile over images
    area_budget: int  # the preset's input area; the choice may grow it up to ``max_growth`` times
    images: int

    def describe(self) -> str:
        h, w = self.input_size
        return (
            f"input {h} x {w} chosen from {self.images} images (height/width {self.aspect:.2f}; closest "
            f"landmarks {self.separation:.1f} network px apart)"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": f"aspect of the images, area grown until the closest landmarks are {MIN_SEPARATION} px apart",
            "input_size": list(self.input_size),
            "aspect": self.aspect,
            "separation": self.separation,
            "area_budget": self.area_budget,
            "images": self.images,
        }


def closest_pair(points: np.ndarray) -> float:
    """The distance between the two nearest landmarks of different names in one image (inf if < 2)."""
    present = points[~np.isnan(points).any(axis=1)]
    if len(present) < 2:
        return math.inf
    d = np.linalg.norm(present[:, None] - present[None], axis=2)
    d[np.diag_indices(len(present))] = np.inf
    return float(d.min())


def choose_input_size(
    sizes: list[tuple[int, int]],
    points: list[np.ndarray],
    base: tuple[int, int],
    multiple: int,
    max_growth: float = 2.0,
    min_separation: float = MIN_SEPARATION,
) -> InputChoice:
    """The network input for images of ``sizes`` (width, height) with these landmarks.

    Its aspect is the images' median aspect, so a tall spine gets a tall input and no
    input pixel is spent on padding; its area starts at the preset's (``base``, height
    x width) and grows, at most ``max_growth`` times, until the closest pair of
    different landmarks is ``min_separation`` network pixels apart in nine images of ten.
    """
    if not sizes:
        raise ScnError("no training images to choose an input size from")
    aspect = float(np.median([h / w for w, h in sizes]))
    nearest = np.array([closest_pair(p) for p in points])
    budget = int(base[0] * base[1])

    def snap(value: float) -> int:
        return max(multiple, round(value / multiple) * multiple)

    finite = np.isfinite(nearest)
    choice = None
    for growth in np.unique(np.linspace(1.0, max(1.0, max_growth), 11)):  # just 1.0 when the area may not grow
        height = snap(math.sqrt(budget * growth * aspect))
        width = snap(height / aspect)
        scales = np.array([fit_scale(size, (height, width)) for size in sizes])
        separation = float(np.percentile(nearest[finite] * scales[finite], 10)) if finite.any() else math.inf
        choice = InputChoice((height, width), aspect, separation, budget, len(sizes))
        if separation >= min_separation:
            break
    return choice
