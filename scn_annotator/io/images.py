"""Reading radiographs as they come: any common format, with a pixel spacing and its source.

Real files are awkward. A 2-D image may be stored as a 3-D volume with one slice,
an X-ray may be saved as RGB(A), DICOM MONOCHROME1 stores bright bone as low
values (SimpleITK >= 2.4 inverts those on read), and public data sets contain
JPEGs named ``.tif``. This module turns all of them into one thing, a
:class:`Radiograph`: a float32 grayscale array in which higher means brighter,
plus a pixel spacing in mm when one is known, and where that spacing came from.
Anything that cannot become such an image fails here, with one
:class:`~scn_annotator.errors.ImageReadError` that names the file, instead of
failing later with a shape error.

Patient identifiers never leave a DICOM file: only a whitelist of technical tags is
ever read into :attr:`Radiograph.meta`.
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..engine.geometry import ImageGeometry
from ..errors import ImageReadError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageInfo",
    "Radiograph",
    "SpacingSource",
    "find_images",
    "read_image",
    "read_image_info",
]

#: Suffixes :func:`find_images` picks up (lower case; ``.nii.gz`` is matched whole).
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".dcm",
    ".dicom",
    ".mha",
    ".mhd",
    ".nrrd",
    ".nhdr",
    ".nii",
    ".nii.gz",
)

# The only DICOM tags ever read. Patient and study identifiers are not among them.
_DICOM_TAGS = {
    "0008|0060": "modality",
    "0028|0004": "photometric_interpretation",
    "0028|0030": "pixel_spacing",
    "0018|1164": "imager_pixel_spacing",
    "0028|0101": "bits_stored",
}

#: Images with more pixels than this are refused before their pixels are decoded: a few hundred
#: kilobytes of PNG can declare 20000 x 20000 pixels and take gigabytes to decode and predict.
#: The largest radiographs (stitched long-leg or full-spine films) stay well below it. Set
#: ``SCN_MAX_PIXELS`` to change it.
MAX_PIXELS = 120_000_000

# First bytes of each format, to recognise a file whose suffix lies.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNGImageIO"),
    (b"\xff\xd8\xff", "JPEGImageIO"),
    (b"II*\x00", "TIFFImageIO"),
    (b"MM\x00*", "TIFFImageIO"),
    (b"II+\x00", "TIFFImageIO"),
    (b"MM\x00+", "TIFFImageIO"),
    (b"BM", "BMPImageIO"),
    (b"NRRD", "NrrdImageIO"),
)
_SUFFIX_IO = {
    ".png": "PNGImageIO",
    ".jpg": "JPEGImageIO",
    ".jpeg": "JPEGImageIO",
    ".tif": "TIFFImageIO",
    ".tiff": "TIFFImageIO",
    ".bmp": "BMPImageIO",
}


class SpacingSource(str, enum.Enum):
    """Where a pixel spacing came from; errors in mm are only as good as this."""

    HEADER = "header"  # DICOM PixelSpacing / ImagerPixelSpacing, MetaImage, NRRD, NIfTI
    USER = "user"  # given by the user for this image or data set
    LANDMARKS = "landmarks"  # a known distance between two landmarks
    UNKNOWN = "unknown"  # no spacing: positions and errors are in pixels


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, without decoding the pixels (fast, for imports)."""

    path: Path
    size: tuple[int, int]  # (width, height) in pixels
    spacing: tuple[float, float] | None  # (x, y) mm per pixel
    spacing_source: SpacingSource
    meta: dict[str, str] = field(default_factory=dict)
    geometry: ImageGeometry = field(
        default_factory=ImageGeometry
    )  # where the header puts the pixels (for physical coordinates)


@dataclass
class Radiograph:
    """A grayscale image in which higher is brighter, with its physical pixel size.

    ``pixels`` has shape (height, width); a landmark at ``(x, y)`` is at column x,
    row y, with (0, 0) the centre of the top-left pixel. ``spacing`` is (x, y) in mm
    per pixel, or None when unknown.
    """

    pixels: np.ndarray
    path: Path
    spacing: tuple[float, float] | None = None
    spacing_source: SpacingSource = SpacingSource.UNKNOWN
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The identifier that landmark files use for this image: the file name without suffix."""
        return image_id(self.path)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def with_spacing(self, spacing: tuple[float, float] | float, source: SpacingSource) -> Radiograph:
        """The same image with a spacing from elsewhere (the user, or two landmarks)."""
        return Radiograph(self.pixels, self.path, _as_spacing(spacing), SpacingSource(source), self.meta)


def image_id(path: str | Path) -> str:
    """``/a/b/3143.jpg`` -> ``3143``; ``scan.nii.gz`` -> ``scan``."""
    name = Path(path).name
    lower = name.lower()
    for suffix in (".nii.gz",):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _as_spacing(value: tuple[float, float] | float) -> tuple[float, float]:
    sx, sy = (value, value) if isinstance(value, (int, float)) else value
    sx, sy = float(sx), float(sy)
    if not (math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0):
        raise ValueError(f"a pixel spacing must be positive and finite, not {value!r}")
    return sx, sy


def find_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Every file under ``folder`` with an image suffix, sorted; hidden files skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageReadError(root, "is not a folder")
    pattern = root.rglob("*") if recursive else root.glob("*")
    found = [
        p
        for p in pattern
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.name.lower().endswith(IMAGE_SUFFIXES)
    ]
    return sorted(found)


def _sniff_io(path: Path) -> str | None:
    """The ImageIO that matches the file's first bytes, when the suffix alone is not enough."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "GDCMImageIO"
    for magic, io in _MAGIC:
        if head.startswith(magic):
            return io
    return None


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _reader(path: Path) -> sitk.ImageFileReader:
    """A SimpleITK reader with its header read and the file checked (size, completeness).

    Raises ImageReadError naming the file.
    """
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file (DICOM series are not supported)")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "the file is empty")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    sniffed = _sniff_io(path)
    expected = _SUFFIX_IO.get(path.suffix.lower())
    if sniffed is not None and sniffed != expected:
        # A JPEG named .tif, a PNG named .jpg, a DICOM without suffix: trust the bytes.
        reader.SetImageIO(sniffed)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        if _looks_like_text(path) and sniffed is None and path.suffix.lower() not in (".mhd", ".nhdr"):
            reason = "is a text file, not an image"
        else:
            reason = f"cannot be read as an image ({_sitk_reason(exc)})"
        raise ImageReadError(path, reason) from None
    _check_geometry(path, reader.GetSize(), reader.GetDimension())
    _check_pixel_count(path, reader.GetSize())
    _check_complete(path, _io_name(path, reader))
    return reader


def max_pixels() -> int:
    """The largest image accepted, in pixels (``SCN_MAX_PIXELS`` or :data:`MAX_PIXELS`)."""
    value = os.environ.get("SCN_MAX_PIXELS", "")
    try:
        return int(float(value)) if value.strip() else MAX_PIXELS
    except ValueError:
        return MAX_PIXELS


def _check_pixel_count(path: Path, size: Iterable[int]) -> None:
    count = math.prod(int(s) for s in size)
    if count > (limit := max_pixels()):
        dims = " x ".join(str(int(s)) for s in size)
        raise ImageReadError(
            path,
            f"declares {dims} pixels ({count / 1e6:.0f} megapixels), more than the "
            f"{limit / 1e6:.0f} accepted (SCN_MAX_PIXELS); refused before decoding",
        )


# A marker in a JPEG's entropy-coded data: 0xFF not followed by a stuffed 0x00, a restart
# marker (0xD0-0xD7) or another fill byte.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_truncated(data: bytes) -> bool:
    """Does a JPEG end before its End Of Image marker? libjpeg decodes such a file anyway,
    padding the missing part with gray and only printing a warning.

    Walks the segments from the start (each has its length), and through each scan's
    entropy-coded data to the next marker. A file whose structure surprises the walk
    is left to the decoder to judge: only a file that runs out is called truncated.
    """
    pos, end = 2, len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xD9:  # End Of Image
            return False
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            pos += 2
        else:
            if pos + 4 > end:
                return True
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            if marker == 0xDA:  # Start Of Scan: the coded data runs to the next marker
                found = _JPEG_MARKER.search(data, pos)
                if found is None:
                    return True
                pos = found.start()
    return True


def _check_complete(path: Path, io: str) -> None:
    """Refuse a file cut short in a way its decoder would not notice (JPEG, BMP)."""
    if io == "JPEGImageIO":
        if _jpeg_truncated(path.read_bytes()):
            raise ImageReadError(path, "is a truncated JPEG (it ends before its last scan is complete)")
    elif io == "BMPImageIO":
        with open(path, "rb") as fh:
            head = fh.read(6)
        declared = int.from_bytes(head[2:6], "little") if len(head) == 6 else 0
        actual = path.stat().st_size
        if declared > actual:
            raise ImageReadError(path, f"is a truncated BMP ({actual} of its {declared} bytes)")


def _io_name(path: Path, reader: sitk.ImageFileReader) -> str:
    """The ImageIO that reads the file: the one set from its bytes, else the one SimpleITK picks."""
    return reader.GetImageIO() or sitk.ImageFileReader.GetImageIOFromFileName(str(path))


def _sitk_reason(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text.replace("sitk::ERROR: ", "")


def _check_geometry(path: Path, size: Iterable[int], dimension: int) -> None:
    size = tuple(int(s) for s in size)
    if any(s == 0 for s in size):
        raise ImageReadError(path, f"the image has no pixels (size {size})")
    if dimension == 3 and size[2] != 1:
        raise ImageReadError(path, f"is a 3-D volume with {size[2]} slices; scn-annotator reads 2-D radiographs")
    if dimension > 3:
        raise ImageReadError(path, f"is a {dimension}-D image; scn-annotator reads 2-D radiographs")
    if dimension < 2:
        raise ImageReadError(path, f"is a {dimension}-D signal, not an image")


def _dicom_meta(reader: sitk.ImageFileReader) -> dict[str, str]:
    keys = set(reader.GetMetaDataKeys())
    if "0028|0004" not in keys and "0008|0060" not in keys:
        return {}
    return {name: reader.GetMetaData(tag).strip() for tag, name in _DICOM_TAGS.items() if tag in keys}


def _parse_ds_pair(text: str) -> tuple[float, float] | None:
    """DICOM 'row\\column' spacing -> (x, y) = (column, row) in mm."""
    try:
        row, col = (float(v) for v in text.replace(" ", "").split("\\")[:2])
    except ValueError:
        return None
    if row > 0 and col > 0 and math.isfinite(row) and math.isfinite(col):
        return col, row
    return None


def _header_spacing(path: Path, reader: sitk.ImageFileReader, meta: dict[str, str]) -> tuple[float, float] | None:
    if meta:  # DICOM: only trust the tags, not ITK's default of 1.0
        for key in ("pixel_spacing", "imager_pixel_spacing"):
            if key in meta and (pair := _parse_ds_pair(meta[key])):
                return pair
        return None
    io = _io_name(path, reader)
    name = path.name.lower()
    physical = io in ("MetaImageIO", "NrrdImageIO", "NiftiImageIO") or name.endswith(
        (".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz")
    )
    if not physical:
        return None  # PNG/JPEG/TIFF/BMP resolution fields are print DPI, not detector pixels
    sx, sy = reader.GetSpacing()[:2]
    return (float(sx), float(sy)) if sx > 0 and sy > 0 else None


def read_image_info(path: str | Path) -> ImageInfo:
    """Size and spacing from the header only (and a check that the file is whole); the pixels are not decoded."""
    path = Path(path)
    reader = _reader(path)
    meta = _dicom_meta(reader)
    spacing = _header_spacing(path, reader, meta)
    w, h = reader.GetSize()[:2]
    source = SpacingSource.HEADER if spacing else SpacingSource.UNKNOWN
    return ImageInfo(path, (int(w), int(h)), spacing, source, meta, _header_geometry(reader))


def _header_geometry(reader: sitk.ImageFileReader) -> ImageGeometry:
    """The header's spacing, origin and direction as ITK (and so 3D Slicer) reads them; unit values where they
    are unusable (a zero or infinite spacing, a singular direction), which is what a viewer falls back to as well."""
    spacing, origin, direction = reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
    values = np.asarray([*spacing, *origin, *direction], dtype=np.float64)
    if not np.isfinite(values).all() or min(spacing[:2]) <= 0:
        return ImageGeometry()
    geometry = ImageGeometry.from_itk(spacing, origin, direction)
    if abs(np.linalg.det(np.asarray(geometry.direction).reshape(3, 3))) < 1e-6:
        return ImageGeometry()
    return geometry


def read_image(
    path: str | Path,
    spacing: tuple[float, float] | float | None = None,
) -> Radiograph:
    """Read any supported file as a :class:`Radiograph`.

    ``spacing`` (mm per pixel) overrides the header and is recorded as given by the
    user. Raises :class:`~scn_annotator.errors.ImageReadError` naming the file for
    anything unusable.
    """
    path = Path(path)
    reader = _reader(path)
    meta = _dicom_meta(reader)
    header_spacing = _header_spacing(path, reader, meta)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(path, f"cannot be decoded ({_sitk_reason(exc)})") from None
    # DICOM MONOCHROME1 (bone stored dark) arrives inverted already: ITK >= 5.4
    # (SimpleITK >= 2.4, which pyproject requires) converts it to MONOCHROME2 on read.
    pixels = _to_grayscale(path, image)
    if not np.isfinite(pixels).all():
        raise ImageReadError(path, "contains NaN or infinite pixel values")
    if spacing is not None:
        return Radiograph(pixels, path, _as_spacing(spacing), SpacingSource.USER, meta)
    if header_spacing is not None:
        return Radiograph(pixels, path, header_spacing, SpacingSource.HEADER, meta)
    return Radiograph(pixels, path, None, SpacingSource.UNKNOWN, meta)


def _to_grayscale(path: Path, image: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(image)
    components = image.GetNumberOfComponentsPerPixel()
    if image.GetDimension() == 3:  # (1, H, W[, C]) -> (H, W[, C])
        array = array[0]
    if components > 1:
        if components not in (3, 4):
            raise ImageReadError(path, f"has {components} channels per pixel; expected gray, RGB or RGBA")
        rgb = array[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            gray = rgb[..., 0].astype(np.float32)  # a gray image saved as colour: exact
        else:
            gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601 luma
    else:
        # np.array, not np.asarray: the view dies with the SimpleITK image, so always copy.
        gray = np.array(array, dtype=np.float32)
    if gray.ndim != 2:
        raise ImageReadError(path, f"has an unexpected pixel layout {array.shape}")
    return np.ascontiguousarray(gray)


def iter_images(paths: Iterable[str | Path]) -> Iterator[Radiograph | ImageReadError]:
    """Read many files, yielding the error for a bad one instead of stopping."""
    for path in paths:
        try:
            yield read_image(path)
        except ImageReadError as exc:
            yield exc
