"""The exchange formats' readers on files written by hand from each format's documentation, good and bad."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from scn_annotator.engine.geometry import ImageGeometry
from scn_annotator.errors import LabelFileError, ScnError
from scn_annotator.io.formats import FORMATS, detect
from scn_annotator.io.images import read_image_info

NAMES = ["S", "N", "A"]


def _coco(tmp_path, keypoints, **extra):
    doc = {
        "images": [{"id": 7, "file_name": "ceph/001.bmp", "width": 100, "height": 80}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "keypoints": keypoints, "num_keypoints": 2, **extra}
        ],
        "categories": [{"id": 1, "name": "head", "keypoints": NAMES, "skeleton": [[1, 2]]}],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_visibility_is_our_three_states(tmp_path):
    path = _coco(tmp_path, [10, 20, 2, 0, 0, 0, 30.5, 40.25, 1])
    data = FORMATS["coco"].read(path, NAMES)
    table = data.consensus
    assert table.ids() == ["ceph/001.bmp"] and data.keys == {"ceph/001.bmp": 7}
    np.testing.assert_array_equal(table.points["ceph/001.bmp"][[0, 2]], [[10, 20], [30.5, 40.25]])
    assert math.isnan(table.points["ceph/001.bmp"][1, 0])  # v = 0: its 0, 0 is no position
    assert list(table.extra["ceph/001.bmp"]["state"]) == ["placed", "absent", "occluded"]


def test_coco_readers_become_readings(tmp_path):
    path = _coco(tmp_path, [10, 20, 2, 1, 1, 2, 3, 3, 2], reader="alice")
    data = FORMATS["coco"].read(path, NAMES)
    assert data.consensus is None and list(data.readings) == ["alice"]


@pytest.mark.parametrize(
    ("keypoints", "message"),
    [
        ([10, 20, 2, 0, 0, 0], r"annotations\[0\]: 6 keypoint values, expected 3 x 3"),
        ([10, 20, 3, 0, 0, 0, 1, 1, 2], r"annotations\[0\], keypoint 'S': visibility v = 3"),
        ([float("nan"), 20, 2, 0, 0, 0, 1, 1, 2], r"annotations\[0\], keypoint 'S': nan is not a finite number"),
        (["10", 20, 2, 0, 0, 0, 1, 1, 2], r"keypoint 'S': '10' is not a finite number"),
    ],
)
def test_coco_bad_keypoints_are_refused_naming_file_and_entry(tmp_path, keypoints, message):
    path = _coco(tmp_path, keypoints)
    with pytest.raises(LabelFileError, match=message) as err:
        FORMATS["coco"].read(path, NAMES)
    assert str(err.value).startswith(str(path))


def test_coco_missing_keys_and_unknown_names_are_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"images": [{"file_name": "a.png"}], "annotations": [], "categories": []}))
    with pytest.raises(LabelFileError, match=r"'categories': missing or empty.*images\[0\]: needs 'id'"):
        FORMATS["coco"].read(path, NAMES)
    path = _coco(tmp_path, [1, 1, 2] * 3)
    with pytest.raises(LabelFileError, match=r"keypoints\[1\]: 'N' is not a landmark of the project"):
        FORMATS["coco"].read(path, ["S", "Sella", "A"])


def _png(path, shape=(20, 30)):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, np.uint8)), str(path))
    return path.read_bytes()


def test_labelme_half_pixel_and_embedded_image(tmp_path):
    data = _png(tmp_path / "x.png")
    doc = {
        "version": "5.5.0",
        "flags": {"absent:A": True},
        "shapes": [
            {"label": "S", "points": [[0.5, 0.5]], "group_id": None, "shape_type": "point", "flags": {}},
            {"label": "N", "points": [[10.0, 7.25]], "shape_type": "point", "flags": {"occluded": True}},
            {"label": "outline", "points": [[0, 0], [5, 5], [0, 5]], "shape_type": "polygon", "flags": {}},
        ],
        "imagePath": "..\\elsewhere\\scan01.png",
        "imageData": base64.b64encode(data).decode(),
        "imageHeight": 20,
        "imageWidth": 30,
    }
    (tmp_path / "scan01.json").write_text(json.dumps(doc))
    result = FORMATS["labelme"].read(tmp_path / "scan01.json", NAMES)
    table = result.consensus
    np.testing.assert_array_equal(table.points["scan01"][:2], [[0, 0], [9.5, 6.75]])  # pixel centre (0, 0)
    assert list(table.extra["scan01"]["state"]) == ["placed", "occluded", "absent"]
    (source,) = result.sources
    assert source.label == "scan01" and source.path is None and source.data == data and source.suffix == ".png"


def test_labelme_found_image_wins_over_embedded_data(tmp_path):
    _png(tmp_path / "scan02.png")
    doc = {"shapes": [], "imagePath": "scan02.png", "imageData": "not even base64"}
    (tmp_path / "scan02.json").write_text(json.dumps(doc))
    (source,) = FORMATS["labelme"].read(tmp_path, NAMES).sources
    assert source.path == (tmp_path / "scan02.png").resolve()


def test_labelme_bad_entries_are_refused_together(tmp_path):
    shapes = [
        {"label": "S", "points": [[1, 2], [3, 4]], "shape_type": "point"},
        {"label": "Q", "points": [[1, 2]], "shape_type": "point"},
        {"label": "N", "points": [[1, None]], "shape_type": "point"},
    ]
    (tmp_path / "a.json").write_text(json.dumps({"shapes": shapes, "imagePath": "a.png"}))
    (tmp_path / "b.json").write_text(json.dumps({"images": []}))
    with pytest.raises(LabelFileError) as err:
        FORMATS["labelme"].read(tmp_path, NAMES)
    text = str(err.value)
    for part in (
        r"a.json, shapes[0]: a point shape needs",
        "a.json, shapes[1] label: 'Q' is not a landmark",
        "a.json, shapes[2]: None is not a finite number",
        "b.json: not a labelme file",
    ):
        assert part in text


def test_slicer_markups_with_a_rotated_image_and_ras(tmp_path):
    """Positions written by hand for an image whose header rotates it by 90 degrees."""
    geometry = ImageGeometry((0.5, 0.25), (10.0, 20.0, 0.0), (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    doc = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "RAS",
                "controlPoints": [
                    {"label": "S", "position": [-8.0, -22.0, 0.0], "positionStatus": "defined"},
                    {"label": "N", "position": [0, 0, 0], "positionStatus": "missing"},
                    {"label": "A", "position": [-10.0, -20.0, 0.0], "description": "occluded"},
                ],
            },
            {"type": "Line", "controlPoints": [{"label": "ruler", "position": [0, 0, 0]}]},
        ],
    }
    (tmp_path / "ceph7.mrk.json").write_text(json.dumps(doc))
    table = FORMATS["slicer"].read(tmp_path, NAMES).consensus
    assert table.unit == "lps" and list(table.extra["ceph7"]["state"]) == ["placed", "absent", "occluded"]
    pixels = geometry.to_index(table.points["ceph7"])
    np.testing.assert_allclose(pixels[[0, 2]], [[4.0, 8.0], [0.0, 0.0]], atol=1e-12)


def test_fcsv_as_slicer_documents_it(tmp_path):
    text = (
        "# Markups fiducial file version = 4.13\n# CoordinateSystem = LPS\n"
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        "0,-19.9067,13.9347,0,0,0,0,1,1,1,0,S,,\n"
        "1,-7.3939,-76.9499,0,0,0,0,1,1,1,0,N,occluded,,2,0\n"
        "2,0,0,0,0,0,0,1,1,1,0,A,,,3,0\n"
    )
    (tmp_path / "img.fcsv").write_text(text)
    table = FORMATS["fcsv"].read(tmp_path / "img.fcsv", NAMES).consensus
    np.testing.assert_array_equal(table.points["img"][:2], [[-19.9067, 13.9347, 0], [-7.3939, -76.9499, 0]])
    assert list(table.extra["img"]["state"]) == ["placed", "occluded", "absent"]
    (tmp_path / "img.fcsv").write_text(text.replace("= LPS", "= XYZ"))
    with pytest.raises(LabelFileError, match=r"img.fcsv, line 2: CoordinateSystem 'XYZ'"):
        FORMATS["fcsv"].read(tmp_path / "img.fcsv", NAMES)


def test_deeplabcut_both_index_layouts(tmp_path):
    new = tmp_path / "CollectedData_alice.csv"
    new.write_text(
        "scorer,,,alice,alice,alice,alice,alice,alice\n"
        "bodyparts,,,S,S,N,N,A,A\n"
        "coords,,,x,y,x,y,x,y\n"
        "labeled-data,video1,img001.png,12.5,30.25,,,1,2\n"
    )
    old = tmp_path / "old" / "CollectedData_bob.csv"
    old.parent.mkdir()
    old.write_text(
        "scorer,bob,bob,bob,bob\nbodyparts,S,S,A,A\ncoords,x,y,x,y\nlabeled-data/video1/img001.png,12.5,30.25,NaN,NaN\n"
    )
    for path in (new, old):
        table = FORMATS["dlc"].read(path, NAMES).consensus
        assert table.ids() == ["img001"]
        np.testing.assert_array_equal(table.points["img001"][0], [12.5, 30.25])
        assert table.extra["img001"]["state"][1] == ""
    multi = tmp_path / "CollectedData_m.csv"
    multi.write_text("scorer,,,a,a\nindividuals,,,m1,m1\nbodyparts,,,S,S\ncoords,,,x,y\n")
    with pytest.raises(LabelFileError, match="multi-animal"):
        FORMATS["dlc"].read(multi, NAMES)
    new.write_text(new.read_text().replace("12.5,30.25,,", "12.5,30.25,7,"))
    with pytest.raises(LabelFileError, match="row 4: bodypart 'N' has only one coordinate"):
        FORMATS["dlc"].read(new, NAMES)


def test_detect_knows_each_format_and_says_when_it_cannot(tmp_path):
    coco = _coco(tmp_path, [1, 1, 2] * 3)
    assert detect(coco).name == "coco"
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "a.json").write_text(json.dumps({"shapes": []}))
    assert detect(tmp_path / "lm").name == "labelme"
    (tmp_path / "a.csv").write_text("image,S_x,S_y\n")
    assert detect(tmp_path / "a.csv") is None  # the project's own CSV
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(ScnError, match="--format"):
        detect(tmp_path / "a.txt")


def test_image_header_geometry_is_read(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((4, 5), np.uint8))
    image.SetSpacing((0.5, 0.25))
    image.SetOrigin((10.0, 20.0))
    image.SetDirection((0.0, -1.0, 1.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / "r.mha"))
    geometry = read_image_info(tmp_path / "r.mha").geometry
    assert geometry.spacing == (0.5, 0.25) and geometry.origin == (10.0, 20.0, 0.0)
    physical = geometry.to_physical(np.array([[4.0, 8.0]]))
    itk = image.TransformContinuousIndexToPhysicalPoint((4.0, 8.0))
    np.testing.assert_allclose(physical[0, :2], itk)
    np.testing.assert_allclose(geometry.to_index(physical), [[4.0, 8.0]])
    _png(tmp_path / "p.png")
    assert read_image_info(tmp_path / "p.png").geometry == ImageGeometry()


def test_labelme_embedded_image_that_is_not_base64_is_refused(tmp_path):
    doc = {"shapes": [], "imagePath": "missing.png", "imageData": "not base64 at all!"}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(LabelFileError, match=r"x\.json: 'imageData' is not base64"):
        FORMATS["labelme"].read(tmp_path, NAMES)
