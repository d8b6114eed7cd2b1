from __future__ import annotations

import numpy as np
import pytest

from scn_annotator.errors import LabelFileError
from scn_annotator.io.landmark_files import read_landmarks, write_landmarks

HEADERLESS = "3143,1,2,3,4\n3146,5,6,7.5,8.25\n"
WIDE = "image,a_x,a_y,b_x,b_y\n3143,1,2,3,4\n3146,5,6,7.5,8.25\n"
LONG = "image,landmark,x,y\n3143,a,1,2\n3143,b,3,4\n3146,a,5,6\n3146,b,7.5,8.25\n"


def write(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text", [HEADERLESS, WIDE, LONG])
def test_three_layouts_read_the_same_points(tmp_path, text):
    table = read_landmarks(write(tmp_path, text))
    assert table.ids() == ["3143", "3146"]
    np.testing.assert_array_equal(table.points["3146"], [[5, 6], [7.5, 8.25]])
    assert table.unit == "px"
    assert table.names == (["L0", "L1"] if text is HEADERLESS else ["a", "b"])


def test_missing_landmarks_are_nan(tmp_path):
    table = read_landmarks(write(tmp_path, "image,a_x,a_y,b_x,b_y\n1,,,3,4\n"))
    assert np.isnan(table.points["1"][0]).all()
    long = read_landmarks(write(tmp_path, "image,landmark,x,y\n1,a,1,2\n2,b,3,4\n"))
    assert np.isnan(long.points["1"][1]).all() and np.isnan(long.points["2"][0]).all()


def test_mm_columns_and_extra_columns(tmp_path):
    table = read_landmarks(write(tmp_path, "image,a_x_mm,a_y_mm,note\n1,0.5,0.25,hello\n"))
    assert table.unit == "mm" and table.names == ["a"]
    wide = read_landmarks(write(tmp_path, "image,a_x,a_y,a_confidence\n1,1,2,0.9\n"))
    assert wide.extra["1"]["confidence"].tolist() == ["0.9"]


def test_bom_blank_lines_and_spaces_are_tolerated(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffimage, a_x , a_y\n\n 1 , 2 , 3 \n".encode())
    table = read_landmarks(path)
    np.testing.assert_array_equal(table.points["1"], [[2, 3]])


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_write_then_read_round_trips(tmp_path, layout):
    points = {
        "x1": np.array([[1.0, 2.0], [np.nan, np.nan], [3.123, 4.5]]),
        "x2": np.arange(6.0).reshape(3, 2),
    }
    conf = {"x1": np.array([0.5, 0.1, 2.0]), "x2": np.array([1.0, 1.0, 1.0])}
    path = tmp_path / f"out_{layout}.csv"
    write_landmarks(path, ["p", "q", "r"], points, confidence=conf, layout=layout)
    table = read_landmarks(path)
    assert table.names == ["p", "q", "r"]
    for key, value in points.items():
        np.testing.assert_allclose(table.points[key], value, atol=5e-4)
    assert not list(tmp_path.glob(".out_*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "no rows"),
        ("1,2,3,4\n", "expected id and x,y pairs"),
        ("1,2,3,4,5\n2,3,4\n", "row 2: 3 columns, expected 5"),
        ("1,2,3\n2,abc,4\n", "row 2: landmark 0 is not a number: 'abc'"),
        ("1,2,3\n2,nan,4\n", "leave both cells empty"),
        ("1,2,3\n2,inf,4\n", "not a number"),
        ("1,2,3\n2,,4\n", "row 2: landmark 0 has only one coordinate"),
        ("1,2,3\n1,4,5\n", "row 2: image '1' appears twice (first in row 1)"),
        ("1,2,3\n,4,5\n", "row 2: the image name is empty"),
        ("foo,a_x,a_y\n1,2,3\n", "no image column"),
        ("image,a_x,b_y\n1,2,3\n", "has no y column"),
        ("image,c,d\n1,2,3\n", "no landmark columns"),
        ("image,a_x,a_y\n1,2\n", "row 2: 2 columns, expected 3"),
        ("image,landmark,x,y\n1,a,1,2\n1,a,3,4\n", "row 3: landmark 'a' of image '1' appears twice"),
        ("image,landmark,u,v\n1,a,1,2\n", "no x and y columns"),
        ("image,landmark,x,y\n1,,1,2\n", "row 2: the image or landmark name is empty"),
        ("image,landmark,x,y\n1,a,1,NaN\n", "row 2"),
    ],
)
def test_bad_files_are_refused_naming_file_and_row(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(LabelFileError) as info:
        read_landmarks(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_every_bad_row_is_listed(tmp_path):
    path = write(tmp_path, "1,2,3\n2,x,4\n3,5,6\n4,y,8\n")
    with pytest.raises(LabelFileError) as info:
        read_landmarks(path)
    assert "row 2" in str(info.value) and "row 4" in str(info.value)
    assert len(info.value.problems) == 2


def test_binary_and_missing_files(tmp_path):
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(LabelFileError, match=r"not a UTF-8|binary"):
        read_landmarks(binary)
    with pytest.raises(LabelFileError, match="no such file"):
        read_landmarks(tmp_path / "nope.csv")


FORMULAS = ['=HYPERLINK("http://x","y")', "+SUM(1;2)", "-1+1", "@cmd", "'quoted", "'=both", "\tTab"]


def test_no_cell_a_spreadsheet_would_run_and_an_exact_round_trip(tmp_path):
    from scn_annotator.io.landmark_files import read_landmarks, write_landmarks

    names = ["=tip", "base"]
    points = {name: np.array([[1.5, -2.25], [np.nan, np.nan]]) for name in FORMULAS}
    for layout in ("wide", "long"):
        path = tmp_path / f"{layout}.csv"
        write_landmarks(path, names, points, layout=layout)
        import csv

        cells = [c for row in csv.reader(path.open()) for c in row]
        assert not [c for c in cells if c.startswith(("=", "+", "@", "\t")) or (c.startswith("-") and c != "-2.250")]
        table = read_landmarks(path)
        assert list(table.points) == FORMULAS and table.names == names
        np.testing.assert_array_equal(table.points["@cmd"], points["@cmd"])
