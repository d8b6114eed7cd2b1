from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from scn_annotator.app.sample_project import LANDMARK_NAMES
from scn_annotator.db.exports import export
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import ImportConflictError, import_images, import_labels
from scn_annotator.engine.geometry import SpacingRule
from scn_annotator.errors import LabelFileError
from scn_annotator.io.landmark_files import read_landmarks


def test_import_labels_then_export_then_reimport_round_trips(loaded, sample_dir, tmp_path, backend):
    report = import_labels(loaded, sample_dir / "labels.csv", author="importer")
    assert report.images == 24 and report.set == 24 * 15
    loaded.annotations.set("hand002", 3, None, None, state="absent")
    loaded.annotations.set("hand002", 4, 33.25, 44.5, state="occluded")
    loaded.annotations.clear("hand002", 6)
    for name in ("hand000", "hand002", "hand009"):
        loaded.set_status(name, "done")
    for layout in ("wide", "long"):
        out = tmp_path / f"export_{layout}.csv"
        manifest = export(loaded, out, layout=layout)
        assert manifest["images"] == 3 and manifest["only_done"]
        assert manifest["annotations"] == {"placed": 3 * 15 - 3, "occluded": 1, "absent": 1}
        assert json.loads(out.with_name(out.stem + ".manifest.json").read_text()) == manifest
        # into a fresh project with the same images: exactly the same annotations
        fresh = Project.create(tmp_path / f"fresh_{layout}", LANDMARK_NAMES, user="x")
        import_images(fresh, sample_dir / "images")
        again = import_labels(fresh, out)
        assert again.images == 3
        for name in ("hand000", "hand002", "hand009"):
            a, b = loaded.annotations.of(name), fresh.annotations.of(name)
            assert set(a) == set(b)
            for i in a:
                assert (b[i].state, b[i].x is None) == (a[i].state, a[i].x is None)
                if a[i].x is not None:
                    assert abs(b[i].x - a[i].x) < 5e-4 and abs(b[i].y - a[i].y) < 5e-4
        fresh.close()


def test_export_columns_and_only_two_files(loaded, sample_dir, tmp_path):
    import_labels(loaded, sample_dir / "labels.csv")
    loaded.set_status("hand001", "done")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    export(loaded, out_dir / "curated.csv")
    assert sorted(p.name for p in out_dir.iterdir()) == ["curated.csv", "curated.manifest.json"]
    header = (out_dir / "curated.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["image", "status", "width", "height", "spacing_mm_x", "spacing_mm_y", "spacing_source"]
    assert header[7:12] == ["thumb_base_x", "thumb_base_y", "thumb_base_x_mm", "thumb_base_y_mm", "thumb_base_state"]
    table = read_landmarks(out_dir / "curated.csv")
    assert table.ids() == ["hand001"] and table.unit == "px"
    np.testing.assert_allclose(table.points["hand001"], loaded.annotations.points("hand001"), atol=5e-4)
    everything = export(loaded, out_dir / "all.csv", include_all=True)
    assert everything["images"] == 24 and not everything["only_done"]


def test_export_never_contains_patient_identifiers(project, tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    image = sitk.GetImageFromArray(np.zeros((40, 30), np.uint16))
    image.SetSpacing((0.2, 0.2))
    for tag, value in {"0010|0010": "Doe^Jane", "0010|0020": "PID-98765", "0028|0030": "0.2\\0.2"}.items():
        image.SetMetaData(tag, value)
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(folder / "cr.dcm"))
    writer.KeepOriginalImageUIDOn()
    writer.Execute(image)
    assert import_images(project, folder).added == ["cr.dcm"]
    project.annotations.set("cr", 0, 5, 5)
    project.set_status("cr", "done")
    export(project, tmp_path / "e.csv", layout="long")
    text = (tmp_path / "e.csv").read_text() + (tmp_path / "e.manifest.json").read_text()
    with project.db.read() as s:
        from scn_annotator.db.models import Image

        text += json.dumps([row.meta for row in s.query(Image)])
    assert "Doe" not in text and "98765" not in text
    assert "0.200" in text  # the spacing did make it


def test_conflicts_with_human_corrections_change_nothing_unless_asked(loaded, sample_dir, tmp_path):
    import_labels(loaded, sample_dir / "labels.csv")
    loaded.annotations.set("hand004", 2, 12.0, 13.0, author="expert")
    before = loaded.annotations.history()
    with pytest.raises(ImportConflictError) as info:
        import_labels(loaded, sample_dir / "labels.csv")
    assert "hand004/thumb_tip: human by expert" in str(info.value)
    assert loaded.annotations.of("hand004")[2].x == 12.0 and loaded.annotations.history() == before
    report = import_labels(loaded, sample_dir / "labels.csv", overwrite=True)
    assert report.overwritten == ["hand004/thumb_tip: human by expert"] and report.set == 1
    assert loaded.annotations.of("hand004")[2].x != 12.0
    assert import_labels(loaded, sample_dir / "labels.csv").set == 0  # nothing new: nothing written


def test_mm_labels_and_the_spacing_rule(loaded, sample_dir, tmp_path):
    truth = read_landmarks(sample_dir / "labels.csv")
    mm = tmp_path / "mm.csv"
    rows = ["image," + ",".join(f"{n}_x_mm,{n}_y_mm" for n in truth.names)]
    rows.append("hand010," + ",".join(f"{x * 0.6:.4f},{y * 0.6:.4f}" for x, y in truth.points["hand010"]))
    mm.write_text("\n".join(rows) + "\n")
    import_labels(loaded, mm)
    np.testing.assert_allclose(loaded.annotations.points("hand010"), truth.points["hand010"], atol=1e-3)
    import_labels(loaded, sample_dir / "labels.csv", spacing_rule=SpacingRule(1, 4, 25.0))
    image = loaded.image("hand011")
    expected = 25.0 / np.linalg.norm(truth.points["hand011"][1] - truth.points["hand011"][4])
    assert image.spacing_source == "landmarks" and image.spacing[0] == pytest.approx(expected)


HEADER = "image," + ",".join(f"{n}_x,{n}_y" for n in LANDMARK_NAMES)
GOOD = ",".join(["10", "20"] * 15)


def wide(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def good(name: str = "hand000") -> str:
    return f"{name},{GOOD}"


def with_cell(index: int, value: str, name: str = "hand000") -> str:
    cells = GOOD.split(",")
    cells[index] = value
    return f"{name}," + ",".join(cells)


MALFORMED = [
    # (file content, words the message must contain)
    ("", "no rows"),
    ("\n\n", "no rows"),
    (wide(), None),  # a header and no rows is a valid, empty file (handled below)
    (wide(good("nobody")), "image 'nobody' is not in the project"),
    (wide(good(), good("ghost1"), good("ghost2")), "row 3: image 'ghost1'"),
    (wide(good(), good("hand000")), "row 3: image 'hand000' appears twice"),
    (wide(with_cell(0, "abc")), "row 2: 'thumb_base' is not a number: 'abc'"),
    (wide(with_cell(1, "NaN")), "leave both cells empty"),
    (wide(with_cell(2, "nan")), "is not a number"),
    (wide(with_cell(3, "inf")), "is not a number"),
    (wide(with_cell(4, "-Infinity")), "is not a number"),
    (wide(with_cell(5, "1,5")), "columns, expected 31"),
    (wide(with_cell(6, "")), "has only one coordinate"),
    (wide(with_cell(7, "12px")), "is not a number: '12px'"),
    (wide(with_cell(8, "0x10")), "is not a number"),
    (wide(with_cell(0, "-20")), "lies outside image 'hand000'"),
    (wide(with_cell(1, "99999")), "lies outside image"),
    (wide(with_cell(0, "256")), "lies outside image"),
    (wide(good() + ",extra"), "row 2: 32 columns, expected 31"),
    (wide("hand000,1,2"), "row 2: 3 columns"),
    (wide(good(), header=HEADER.replace("image,", "picture,")), "no image column"),
    (wide(good(), header=HEADER.replace("thumb_base_y", "thumb_base_z")), "has no y column"),
    (wide(good(), header=HEADER.replace("thumb_base", "pinky_base")), "unknown: pinky_base"),
    (wide(",".join(["x"] * 31)), "row 2"),
    (wide("," + GOOD), "the image name is empty"),
    ("image,landmark,x,y\nhand000,thumb_base,1,2\nhand000,thumb_base,3,4\n", "appears twice"),
    ("image,landmark,x,y\nhand000,elbow,1,2\n", "unknown: elbow"),
    ("image,landmark,x,y\nhand000,thumb_base,1\n", "3 columns, expected 4"),
    ("image,landmark,u,v\nhand000,thumb_base,1,2\n", "no x and y columns"),
    ("image,landmark,x,y\nhand000,thumb_base,abc,2\n", "is not a number"),
    ("image,landmark,x,y,state\nhand000,thumb_base,1,2,flying\n", "unknown state 'flying'"),
    ("image,landmark,x,y,state\nhand000,thumb_base,,,occluded\n", "is occluded but has no position"),
    ("image,landmark,x_mm,y_mm\nnope,thumb_base,1,2\n", "image 'nope' is not in the project"),
    ("hand000,1,2,3\n", "expected id and x,y pairs"),
    ("hand000," + ",".join(["1"] * 28) + "\n", "do not match the project's"),
    ("\x00\x01\x02binary", "binary"),
]


@pytest.mark.parametrize(("content", "expected"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_landmark_files_are_refused_whole_with_file_and_row(loaded, tmp_path, content, expected):
    import_labels(loaded, _write(tmp_path / "before.csv", wide(good("hand001"))))
    snapshot = (
        loaded.annotations.history(),
        loaded.annotations.points("hand000"),
        loaded.annotations.points("hand001"),
    )
    path = _write(tmp_path / "bad.csv", content)
    if expected is None:
        assert import_labels(loaded, path).set == 0
        return
    with pytest.raises(LabelFileError) as info:
        import_labels(loaded, path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message, message
    assert loaded.annotations.history() == snapshot[0]
    np.testing.assert_array_equal(loaded.annotations.points("hand000"), snapshot[1])
    np.testing.assert_array_equal(loaded.annotations.points("hand001"), snapshot[2])


def test_mm_without_spacing_is_refused(project, tmp_path):
    folder = tmp_path / "png"
    folder.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((50, 40), np.uint8)), str(folder / "plain.png"))
    import_images(project, folder)
    with pytest.raises(LabelFileError, match="row 2: image 'plain' has no pixel spacing"):
        import_labels(project, _write(tmp_path / "mm.csv", "image,landmark,x_mm,y_mm\nplain,thumb_base,1,2\n"))


def _write(path, text):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_truncated_jpeg_and_a_pixel_bomb_are_not_imported(project, tmp_path):
    import struct
    import zlib

    folder = tmp_path / "incoming"
    folder.mkdir()
    pixels = np.random.default_rng(1).integers(0, 255, (200, 160), dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(folder / "good.jpg"))
    (folder / "cut.jpg").write_bytes((folder / "good.jpg").read_bytes()[:600])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    bomb = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b"")
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bomb)
    report = import_images(project, folder)
    assert [i.name for i in project.images()] == ["good"]
    failed = dict(report.failed)
    assert "truncated JPEG" in failed[str(folder / "cut.jpg")]
    assert "20000 x 20000" in failed[str(folder / "bomb.png")]


def test_exports_are_safe_in_a_spreadsheet_and_import_back(project, tmp_path):
    import csv

    folder = tmp_path / "formula"
    folder.mkdir()
    for i, name in enumerate(("=HYPERLINK(1)", "+SUM(1;2)", "-1+1", "@cmd")):
        pixels = np.full((40, 50), 10 * i, np.uint8)  # distinct files: the same content is imported once
        sitk.WriteImage(sitk.GetImageFromArray(pixels), str(folder / f"{name}.png"))
    import_images(project, folder)
    for image in project.images():
        project.annotations.set(image.id, 0, 3.0, 4.0)
        project.set_status(image.id, "done")
    out = tmp_path / "export.csv"
    export(project, out)
    cells = [row[0] for row in csv.reader(out.open())][1:]
    assert sorted(cells) == ["'+SUM(1;2)", "'-1+1", "'=HYPERLINK(1)", "'@cmd"]
    table = read_landmarks(out)
    assert sorted(table.points) == sorted(i.name for i in project.images())
    report = import_labels(project, out)
    assert report.images == 4 and report.set == 0  # the very same landmarks: nothing to change
