"""The landmark-names file: names, descriptions and the objects it groups landmarks into."""

from __future__ import annotations

import pytest

from scn_annotator.errors import LabelFileError
from scn_annotator.io.landmark_names import read_landmark_names


def test_names_descriptions_and_objects(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text(
        "# a comment\n"
        "tip_a, mesial cusp, object=tooth 11\n"
        "\n"
        "tip_b, object=tooth 11, distal cusp, worn\n"
        "nose\n"
        "chin, the lowest point\n",
        encoding="utf-8",
    )
    read = read_landmark_names(path)
    assert read.names == ["tip_a", "tip_b", "nose", "chin"]
    assert read.descriptions == ["mesial cusp", "distal cusp, worn", "", "the lowest point"]
    assert read.objects == ["tooth 11", "tooth 11", None, None]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\nb\na\n", "line 3: landmark 'a' is given twice (first on line 1)"),
        ("a\n, nameless\n", "line 2: a landmark needs a name"),
        ("a, object=x, object=y\n", "line 1: more than one object= for 'a'"),
        ("a, object=\n", "line 1: object= needs a name"),
        ("# only a comment\n", "no landmark names in it"),
    ],
)
def test_a_bad_names_file_is_refused_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "names.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelFileError) as caught:
        read_landmark_names(path)
    assert str(caught.value) == f"{path}: {message}"
