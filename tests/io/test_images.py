from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from scn_annotator.errors import ImageReadError
from scn_annotator.io.images import SpacingSource, find_images, image_id, read_image, read_image_info

RNG = np.random.default_rng(0)
GRAY8 = RNG.integers(0, 255, (30, 40), dtype=np.uint8)


def write(path: Path, array: np.ndarray, spacing=None, vector=False, **meta) -> Path:
    image = sitk.GetImageFromArray(array, isVector=vector)
    if spacing is not None:
        image.SetSpacing(spacing)
    for key, value in meta.items():
        image.SetMetaData(key.replace("_", "|"), value)
    sitk.WriteImage(image, str(path))
    return path


def write_dicom(path: Path, array: np.ndarray, monochrome1=False, spacing=True) -> Path:
    image = sitk.GetImageFromArray(array)
    if spacing:
        image.SetSpacing((0.14, 0.15))  # GDCM writes the image's spacing, whatever the tag says
    tags = {"0010|0010": "Doe^Jane", "0010|0020": "PID-12345", "0008|0060": "CR"}
    if spacing:
        tags["0028|0030"] = "0.15\\0.14"  # row spacing \ column spacing
    for key, value in tags.items():
        image.SetMetaData(key, value)
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.KeepOriginalImageUIDOn()
    writer.Execute(image)
    if monochrome1:  # GDCM writes MONOCHROME2; patch the value in place (same length)
        data = path.read_bytes()
        assert b"MONOCHROME2" in data
        path.write_bytes(data.replace(b"MONOCHROME2", b"MONOCHROME1"))
    return path


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".nrrd", ".nii", ".nii.gz", ".mha", ".mhd"])
def test_every_format_reads_as_grayscale_float(tmp_path, suffix):
    path = write(tmp_path / f"img{suffix}", GRAY8)
    image = read_image(path)
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == (30, 40)
    assert image.size == (40, 30)
    assert image.id == "img"
    if suffix == ".jpg":  # lossy
        assert np.abs(image.pixels - GRAY8).mean() < 20
    else:
        np.testing.assert_array_equal(image.pixels, GRAY8)


def test_sixteen_bit_and_float_keep_their_values(tmp_path):
    a16 = RNG.integers(0, 65535, (20, 25), dtype=np.uint16)
    np.testing.assert_array_equal(read_image(write(tmp_path / "a.png", a16)).pixels, a16)
    af = RNG.normal(0, 1000, (20, 25)).astype(np.float32)
    np.testing.assert_allclose(read_image(write(tmp_path / "a.tif", af)).pixels, af)


def test_rgb_and_rgba_become_luma(tmp_path):
    rgb = RNG.integers(0, 255, (10, 12, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((10, 12, 1), 7, np.uint8)], axis=-1)
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    for name, array in (("rgb.png", rgb), ("rgba.png", rgba)):
        image = read_image(write(tmp_path / name, array, vector=True))
        assert image.pixels.shape == (10, 12)
        np.testing.assert_allclose(image.pixels, expected, rtol=1e-5)


def test_two_d_image_stored_as_one_slice_volume(tmp_path):
    vol = sitk.JoinSeries(sitk.GetImageFromArray(GRAY8))
    vol.SetSpacing((0.2, 0.3, 1.0))
    sitk.WriteImage(vol, str(tmp_path / "slice.mha"))
    image = read_image(tmp_path / "slice.mha")
    assert image.pixels.shape == (30, 40)
    assert image.spacing == pytest.approx((0.2, 0.3))
    assert image.spacing_source is SpacingSource.HEADER


def test_header_spacing_only_from_physical_formats(tmp_path):
    assert read_image(write(tmp_path / "a.png", GRAY8)).spacing is None
    nrrd = read_image(write(tmp_path / "a.nrrd", GRAY8, spacing=(0.1, 0.2)))
    assert nrrd.spacing == pytest.approx((0.1, 0.2))
    nii = read_image(write(tmp_path / "a.nii.gz", GRAY8, spacing=(0.15, 0.15)))
    assert nii.spacing == pytest.approx((0.15, 0.15))
    assert nii.id == "a"


def test_user_spacing_wins_and_is_recorded(tmp_path):
    image = read_image(write(tmp_path / "a.mha", GRAY8, spacing=(0.1, 0.1)), spacing=0.25)
    assert image.spacing == (0.25, 0.25)
    assert image.spacing_source is SpacingSource.USER


def test_dicom_spacing_from_tags_and_no_patient_identifiers(tmp_path):
    array = RNG.integers(0, 4000, (20, 30), dtype=np.uint16)
    path = write_dicom(tmp_path / "cr.dcm", array)
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, array)
    assert image.spacing == pytest.approx((0.14, 0.15))  # (x = column, y = row)
    assert image.spacing_source is SpacingSource.HEADER
    text = repr(image.meta) + repr(read_image_info(path))
    assert "Doe" not in text and "PID-12345" not in text
    assert image.meta["modality"] == "CR"


def test_dicom_monochrome1_reads_with_bone_bright(tmp_path):
    array = np.zeros((10, 10), np.uint16)
    array[2, 3] = 1000  # stored high = displayed dark in MONOCHROME1
    image = read_image(write_dicom(tmp_path / "m1.dcm", array, monochrome1=True))
    assert image.meta["photometric_interpretation"] == "MONOCHROME1"
    assert image.pixels[2, 3] < image.pixels[0, 0]
    assert image.pixels[0, 0] - image.pixels[2, 3] == 1000


def test_file_whose_suffix_lies_is_read_by_its_content(tmp_path):
    jpeg = write(tmp_path / "real.jpg", GRAY8)
    shutil.copy(jpeg, tmp_path / "liar.tif")
    shutil.copy(write(tmp_path / "real.png", GRAY8), tmp_path / "liar.jpg")
    np.testing.assert_array_equal(read_image(tmp_path / "liar.tif").pixels, read_image(jpeg).pixels)
    np.testing.assert_array_equal(read_image(tmp_path / "liar.jpg").pixels, GRAY8)
    shutil.copy(write_dicom(tmp_path / "x.dcm", GRAY8.astype(np.uint16)), tmp_path / "noext")
    assert read_image(tmp_path / "noext").spacing is not None


def _mha_header(path: Path, dims: str, ndims: int) -> Path:
    path.write_text(
        f"ObjectType = Image\nNDims = {ndims}\nDimSize = {dims}\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
    )
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("text.png", lambda p: p.write_text("this is not an image\n"), "text file"),
        ("empty.png", lambda p: p.write_bytes(b""), "empty"),
        ("truncated.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "cannot be read"),
        ("garbage.jpg", lambda p: p.write_bytes(bytes(range(256)) * 4), "cannot be read"),
        ("zero.mha", lambda p: _mha_header(p, "0 5", 2), "no pixels"),
        ("missing.png", lambda p: None, "no such file"),
    ],
)
def test_bad_input_names_the_file(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_volumes_and_four_d_are_refused(tmp_path):
    vol = sitk.GetImageFromArray(RNG.integers(0, 255, (3, 10, 10), dtype=np.uint8))
    sitk.WriteImage(vol, str(tmp_path / "vol.mha"))
    with pytest.raises(ImageReadError, match="3-D volume with 3 slices"):
        read_image(tmp_path / "vol.mha")
    four = sitk.Image([4, 4, 2, 2], sitk.sitkUInt8)
    sitk.WriteImage(four, str(tmp_path / "four.nii"))
    with pytest.raises(ImageReadError, match="4-D") as info:
        read_image(tmp_path / "four.nii")
    assert "four.nii" in str(info.value)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_header_info_without_decoding(tmp_path):
    info = read_image_info(write(tmp_path / "a.mha", GRAY8, spacing=(0.5, 0.5)))
    assert info.size == (40, 30)
    assert info.spacing == (0.5, 0.5)


def test_find_images_recursive_and_skips_hidden_and_other_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for p in ("a.png", "sub/b.JPG", "sub/c.nii.gz", ".hidden/d.png", "notes.txt"):
        (tmp_path / p).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a.png", "sub/b.JPG", "sub/c.nii.gz"]
    assert image_id("x/y/c.nii.gz") == "c"


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims a huge size (a decompression bomb's first bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_pixel_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = _png_declaring(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 10_000
    for read in (read_image, read_image_info):
        with pytest.raises(ImageReadError, match=r"bomb.png: declares 20000 x 20000 pixels \(400 megapixels\)"):
            read(bomb)
    small = write(tmp_path / "small.png", GRAY8)
    monkeypatch.setenv("SCN_MAX_PIXELS", "1000")  # configurable
    with pytest.raises(ImageReadError, match="more than the 0 accepted"):
        read_image(small)
    monkeypatch.setenv("SCN_MAX_PIXELS", "1200")
    assert read_image(small).size == (40, 30)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".png"])
@pytest.mark.parametrize("keep", [600, 0.5, -10])
def test_a_truncated_file_is_refused_by_name(tmp_path, suffix, keep):
    whole = write(tmp_path / f"whole{suffix}", RNG.integers(0, 255, (300, 400), dtype=np.uint8))
    data = whole.read_bytes()
    cut = keep if keep >= 1 else (int(len(data) * keep) if keep > 0 else len(data) + keep)
    broken = tmp_path / f"cut{suffix}"
    broken.write_bytes(data[:cut])
    assert read_image(whole).size == (400, 300)
    with pytest.raises(ImageReadError, match=r"cut\.(jpg|bmp|png): "):
        read_image(broken)
    if suffix != ".png":  # a PNG's header reads; its pixels fail to decode (read_image above)
        with pytest.raises(ImageReadError, match="truncated"):
            read_image_info(broken)


def test_a_jpeg_with_bytes_after_its_end_is_whole(tmp_path):
    jpeg = write(tmp_path / "a.jpg", GRAY8)
    jpeg.write_bytes(jpeg.read_bytes() + b"\x00" * 100 + b"trailing")
    assert read_image(jpeg).size == (40, 30)
