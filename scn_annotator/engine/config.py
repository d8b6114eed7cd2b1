"""What a model is and how it is trained, as configs: no torch here.

The network's architecture (:class:`SCNConfig`), the augmentation, the local
stage and the training run (:class:`TrainConfig`, with the presets measured for
it) are plain frozen dataclasses in one module that imports no torch, because
more than the engine reads them: the store records how each model version was
trained, the CLI and the napari panel offer the presets, and the napari process
never imports torch (a test checks). The modules that build from them
(``network.py``, ``augment.py``, ``refinement.py``, ``trainer.py``) import them
from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..configs import Record, from_dict
from ..errors import ScnError

if TYPE_CHECKING:
    import torch

__all__ = [
    "NETWORK_FIELDS",
    "PRESETS",
    "AugmentConfig",
    "LevelCheckConfig",
    "RefineConfig",
    "SCNConfig",
    "TrainConfig",
    "auto_preset",
    "preset",
]


@dataclass(frozen=True)
class SCNConfig(Record):
    """Architecture of one SCN (or of the U-Net baseline when ``spatial`` is False)."""

    num_landmarks: int
    in_channels: int = 1
    filters: int = 128
    levels: int = 4
    #: Width of the full-resolution level (stem, first block, its skip); None: ``filters``. That level
    #: is two thirds of a CPU training step's convolutions (benchmarks/profile_step.py).
    first_filters: int | None = None
    dropout: float = 0.5
    spatial: bool = True
    sc_filters: int = 128
    sc_kernel: int = 11
    sc_convs: int = 3
    sc_downsample: int = 16
    heatmap_init_std: float = 1e-4
    negative_slope: float = 0.1
    #: "element" drops single activations as the paper does; "channel" drops whole
    #: feature maps, which is ten times cheaper on a CPU (random numbers dominate).
    dropout_mode: str = "element"
    #: The SC component also sees one hint channel per landmark: a Gaussian where a person
    #: confirmed it, zero elsewhere (trained with hint dropout; see ``reconfigure``).
    hint_channels: bool = False

    def __post_init__(self) -> None:
        if self.num_landmarks < 1:
            raise ValueError("an SCN needs at least one landmark")
        if self.levels < 1:
            raise ValueError("the local-appearance net needs at least one level")
        if self.dropout_mode not in ("element", "channel"):
            raise ValueError(f"dropout_mode must be 'element' or 'channel', not {self.dropout_mode!r}")

    @property
    def local_view(self) -> int:
        """Width in input pixels of what one output pixel of the local-appearance net sees.

        Its receptive field (the contracting path's stem, two 3x3 convolutions a level and 2x
        pooling between levels; the expanding path's bilinear upsampling; the head): each level
        doubles it, which is why an object layout's input rule adds levels until the net sees
        the whole layout.
        """
        size, step = 3, 1  # the stem's 3x3
        for level in range(self.levels):
            if level:
                size, step = size + step, step * 2  # the 2x average pooling before this level
            size += 4 * step  # the level's two 3x3 convolutions
        for level in range(self.levels - 1, 0, -1):
            size += 2**level  # bilinear upsampling from this level reaches one of its pixels further
        return size + 2  # the head's 3x3 at full resolution

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        multiple = 2 ** (self.levels - 1)
        if self.spatial:
            multiple = math.lcm(multiple, self.sc_downsample)
        return multiple


@dataclass(frozen=True)
class AugmentConfig(Record):
    """Ranges of the random transforms (the paper's values by default)."""

    translate: float = 0.05  # +- fraction of the output size (the paper: +-10 mm of ~240 mm)
    rotate: float = 0.25  # +- radians
    scale: tuple[float, float] = (0.8, 1.2)  # isotropic
    scale_axis: tuple[float, float] = (0.8, 1.2)  # per axis, on top of the isotropic one
    elastic: float = 0.04  # +- fraction of the output size per control point
    elastic_grid: int = 5  # control points per axis
    intensity_shift: float = 0.25
    intensity_scale: float = 0.25
    enabled: bool = True


@dataclass(frozen=True)
class RefineConfig(Record):
    """The local stage: its patch, its net and how long it trains."""

    patch: int = 32  # side of a patch, refinement pixels
    filters: int = 32
    levels: int = 3
    sigma: float = 1.5  # width of the target, refinement pixels
    reach: float = 0.6  # training patches are shifted up to reach * patch from the truth (> 0.5: sometimes outside)
    rotate: float = 0.15  # radians, training only
    scale: tuple[float, float] = (0.9, 1.1)  # training only
    patches: int = 64  # per training step
    images: int = 8  # images the patches of one step come from
    lr: float = 1e-3
    steps: int = 1500  # at most; a shorter coarse run gets proportionally fewer (``per_step``)
    per_step: float = 0.55  # refinement steps per coarse step (1,500 for the cpu preset's 2,800)
    share: float = 0.25  # of a time-limited run's minutes
    min_peak: float = 0.3  # a refined heatmap peaking lower leaves the coarse position
    #: Stage 2 of an object layout (``objects.py``): a crop per object, sized to hold its members (at most
    #: ``max_object_patch``) when its centre is off by up to ``object_reach`` of the gap between neighbouring
    #: centres (trained with such offsets; a member is looked for within half a gap); ``object_crops`` a step.
    object_reach: float = 0.3
    max_object_patch: int = 128
    object_crops: int = 32
    #: Stage 2 looks for a member only within half a gap of its place, so a weaker peak than a single
    #: landmark's ``min_peak`` is still an answer (real spines: median 1.21 -> 1.02 % of the height).
    object_min_peak: float = 0.1
    #: Whether an object's fitted shape takes the turn its found members show, or keeps the chain's (the
    #: training run decides on validation: generated spines, whose boxes tilt against the chain, need it;
    #: on real spines the chain's tilt was the better one, for the points and for the Cobb angles).
    object_turn: bool = False

    def __post_init__(self) -> None:
        if self.patch % 2 ** (self.levels - 1):
            raise ValueError(f"the refinement patch ({self.patch}) must be a multiple of {2 ** (self.levels - 1)}")


@dataclass(frozen=True)
class LevelCheckConfig(Record):
    """The check of a chain's two ends (``levels.py``): its classifier, how long it trains, how it is weighed."""

    crop: int = 64  # the crop's side, px
    reach: float = 3.0  # the crop spans this many steps of the chain each side of its centre
    channels: tuple[int, ...] = (12, 24, 32, 48)
    batch: int = 64
    lr: float = 1e-3
    steps: int = 1000  # at most; a shorter coarse run gets proportionally fewer (``per_step``)
    per_step: float = 0.35  # its steps per coarse step
    share: float = 0.1  # of a time-limited run's minutes
    #: Half the training crops mirrored across the column: an AP radiograph's left and right say nothing
    #: about the level (real spines: ends named right 84-85 -> 86 %; benchmarks/RESULTS.md). Averaging each
    #: crop with its mirror in use as well gained nothing over this and doubled the crops, so it is not done.
    mirror: bool = True
    #: The decoding (real spines, benchmarks/RESULTS.md): the end cost's weight, the share of an interior
    #: candidate's cost from its own channel's heatmap (the rest: "some object is here"), and the interior
    #: place prior's weight relative to the chain's (the ends keep theirs).
    weight: float = 4.0
    identity_share: float = 0.3
    inner_place: float = 0.3


@dataclass(frozen=True)
class TrainConfig(Record):
    """Everything that decides what a training run learns.

    The network's architecture is embedded, not copied: ``network`` is the SCN's own
    config, whose landmark count and hint channels the data and ``hint_rate`` fill in
    (:meth:`network_for`). ``replace`` and ``from_dict`` take the architecture's
    fields at the top level too (``preset("cpu", filters=64)``, a policy's overrides,
    a model file written before the network was embedded).
    """

    input_size: tuple[int, int] = (256, 192)  # (height, width)
    #: The architecture (``spatial=False``: the U-Net baseline, LA alone).
    network: SCNConfig = field(default_factory=lambda: SCNConfig(1))
    sigma: float = 2.5  # initial sigma, network pixels
    learn_sigma: bool = True
    heatmap_scale: float = 100.0
    sigma_alpha: float = 100.0
    optimizer: str = "adam"  # "adam" or "sgd" (Nesterov)
    lr: float = 1e-3
    momentum: float = 0.99
    weight_decay: float = 1e-3
    grad_clip: float = 1e4
    steps: int = 2000
    batch_size: int = 4
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" or "constant"
    validate_every: int = 100
    patience: int = 0  # validations without improvement before stopping; 0: never
    cache_factor: float = 2.0
    normalisation: tuple[float, float] = (0.5, 99.5)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    amp: bool = True  # mixed precision: fp16 on CUDA, bf16 on CPUs that have it (device.mixed_precision)
    #: Choose the input's aspect and size from the training images and landmarks (``fit_input_to_data``),
    #: growing the area at most this many times; 0 keeps ``input_size`` as given.
    auto_input_growth: float = 0.0
    input_rule: dict[str, Any] | None = None  # how the input size was chosen, when it was
    #: The local stage that re-finds each landmark at the cache's resolution (``refine.py``); None: none.
    refine: RefineConfig | None = None
    #: Train the SC component with hint channels (confirmed landmarks): each image gets hints with this
    #: probability, each landmark then with a random share in (0, 1) (hint dropout); 0: no hint channels.
    hint_rate: float = 0.0
    #: Where landmarks come in objects (the four corners of a vertebra), learn in two stages: the SCN on the
    #: objects' centres, then each object's members in its own crop (``objects.py``); False: every landmark alone.
    objects: bool = True
    #: Where the objects form a chain (a spine's vertebrae), a classifier of its two ends from what lies
    #: around them (the first ribs, the pelvis) helps the decoding tell T1 from C7 (``levels.py``); None: none.
    level_check: LevelCheckConfig | None = field(default_factory=LevelCheckConfig)

    def network_for(self, num_landmarks: int) -> SCNConfig:
        """The network this config trains on data with ``num_landmarks`` landmarks."""
        return self.network.replace(num_landmarks=num_landmarks, hint_channels=self.hint_rate > 0)

    def replace(self, **changes: Any) -> TrainConfig:
        architecture = {k: changes.pop(k) for k in list(changes) if k in NETWORK_FIELDS}
        if architecture:
            changes["network"] = changes.get("network", self.network).replace(**architecture)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        flat = {k: v for k, v in values.items() if k in NETWORK_FIELDS}
        cfg = from_dict(cls, {k: v for k, v in values.items() if k not in NETWORK_FIELDS})
        return cfg.replace(**flat) if flat else cfg


#: The architecture's fields a TrainConfig takes at its top level; the landmark count and
#: the hint channels are not among them (the data and ``hint_rate`` decide those).
NETWORK_FIELDS = frozenset(f.name for f in dataclasses.fields(SCNConfig)) - {"num_landmarks", "hint_channels"}


#: ``paper``: the published settings, for a GPU. ``cpu``: a useful model in minutes on
#: two cores, chosen by measurement on the hand radiographs (benchmarks/RESULTS.md).
#: ``gpu``: the cpu preset's recipe at four times the area and twice the filters, from
#: a measurement on an H100 (benchmarks/RESULTS.md); ``auto`` picks cpu or gpu.
PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(
        input_size=(512, 512),
        network=SCNConfig(1, filters=128, sc_filters=128),
        optimizer="sgd",
        lr=1e-6,
        momentum=0.99,
        weight_decay=1e-3,
        steps=30_000,
        batch_size=1,
        warmup_steps=0,
        schedule="constant",
        validate_every=1000,
        cache_factor=1.5,
    ),
    # Each choice below was measured on the hand radiographs (benchmarks/RESULTS.md):
    # 256 x 192 with 32 filters is ~0.65 s per step of 4 on two cores; channel dropout
    # is 10x cheaper than element dropout; heatmap heads initialised at 1e-3 leave the
    # "everything is zero" plateau in half the steps; and with only ~2,800 steps milder
    # augmentation than the paper's (tuned for 30,000+) converges faster and further.
    "cpu": TrainConfig(
        input_size=(256, 192),
        network=SCNConfig(1, filters=32, sc_filters=32, dropout_mode="channel", heatmap_init_std=1e-3),
        optimizer="adam",
        lr=1e-3,
        weight_decay=1e-5,
        steps=2800,
        batch_size=4,
        warmup_steps=100,
        validate_every=100,
        augment=AugmentConfig(translate=0.05, rotate=0.15, scale=(0.9, 1.1), scale_axis=(0.95, 1.05), elastic=0.02),
        auto_input_growth=1.0,  # aspect of the data, area of the preset: 1.46x area cost hands 0.8 mm in 30 CPU-min
        refine=RefineConfig(),  # hands: median 0.62 -> 0.56 mm, mean 1.07 -> 1.03 mm for 1.7 more minutes
        hint_rate=0.5,  # trained conditioning: spines 45.4 -> 34.0 corrections per image (oracle, 1 %)
    ),
}
# Not yet measured on a GPU by this project: chosen from the H100 figures of issue 14 (``--preset cpu
# --input-size 512x384 --filters 64 --steps 6000``: 0.73 mm, 94 % within 2 mm in ~7 minutes); the
# input keeps that area and takes the data's aspect.
PRESETS["gpu"] = PRESETS["cpu"].replace(
    input_size=(512, 384), filters=64, sc_filters=64, steps=6000, validate_every=250
)


def auto_preset(device: torch.device | str | None = None) -> str:
    """``gpu`` where CUDA or Apple's MPS computes, ``cpu`` otherwise: what ``--preset auto`` means."""
    import torch  # only here: everything else in this module is read where torch is never imported

    from . import device as devices

    device = torch.device(device) if device is not None else devices.best_device()
    return "gpu" if device.type in ("cuda", "mps") else "cpu"


def preset(name: str, **changes: Any) -> TrainConfig:
    """A preset by name (``auto``: the one for this machine's device), with ``changes`` applied."""
    if name == "auto":
        name = auto_preset()
    try:
        base = PRESETS[name]
    except KeyError:
        raise ScnError(f"unknown preset {name!r}; choose auto or one of {', '.join(PRESETS)}") from None
    return base.replace(**changes) if changes else base
