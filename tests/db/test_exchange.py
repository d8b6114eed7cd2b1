"""Exchange formats through a project: export, import into a fresh project, and get back exactly what went out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from scn_annotator.app.sample_project import LANDMARK_NAMES
from scn_annotator.db.exchange import import_exchange
from scn_annotator.db.exports import export_exchange
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import import_images, import_labels, import_readings
from scn_annotator.errors import LabelFileError, ScnError

#: what each format keeps of a landmark's state (DeepLabCut has positions only)
KEEPS_STATES = {"coco": True, "labelme": True, "slicer": True, "fcsv": True, "dlc": False}
OUT = {"coco": "set.json", "labelme": "labelme", "slicer": "slicer", "fcsv": "fcsv", "dlc": "CollectedData_ann.csv"}


@pytest.fixture
def curated(loaded: Project, sample_dir):
    """The sample's labels with one absent, one occluded and one unannotated landmark, and two readers."""
    import_labels(loaded, sample_dir / "labels.csv")
    loaded.annotations.set("hand002", 3, None, None, state="absent")
    loaded.annotations.set("hand002", 4, 33.123456789, 44.987654321, state="occluded")
    loaded.annotations.clear("hand002", 6)
    import_readings(loaded, sample_dir / "labels.csv", "alice")
    shifted = sample_dir.parent / "bob.csv"
    text = (sample_dir / "labels.csv").read_text().splitlines()
    shifted.write_text("\n".join(text[:4]) + "\n")  # bob read the first three images
    import_readings(loaded, shifted, "bob")
    return loaded


def _same_annotations(a: Project, b: Project, states: bool) -> None:
    for image in a.images():
        old, new = a.annotations.of(image.name), b.annotations.of(image.name)
        if states:
            assert set(old) == set(new), image.name
        for i, x in old.items():
            if not states and (x.state.value == "absent" or i not in new):
                assert i not in new or new[i].state.value != "absent"
                continue
            y = new[i]
            assert y.state == x.state or (not states and y.state.value == "placed"), (image.name, i)
            if x.x is not None:
                assert abs(y.x - x.x) < 1e-6 and abs(y.y - x.y) < 1e-6, (image.name, i)


@pytest.mark.parametrize("fmt", list(OUT))
def test_export_then_import_gives_back_what_went_out(curated, sample_dir, tmp_path, fmt):
    out = tmp_path / OUT[fmt]
    files = export_exchange(curated, out, fmt, include_all=True)
    assert files and all(f.exists() for f in files)
    fresh = Project.create(tmp_path / "fresh", LANDMARK_NAMES, user="x")
    import_images(fresh, sample_dir / "images")
    report = import_exchange(fresh, out)  # the format detected from the file
    assert report.format == fmt and report.labels.images == 24
    _same_annotations(curated, fresh, KEEPS_STATES[fmt])
    if fmt == "coco":  # the only one that says whose points they are
        assert sorted(report.readers) == ["alice", "bob"]
        old, new = curated.readings.tables(), fresh.readings.tables()
        assert sorted(new) == ["alice", "bob"] and sorted(new["bob"].points) == sorted(old["bob"].points)
        for reader in old:
            for image, points in old[reader].points.items():
                np.testing.assert_allclose(new[reader].points[image], points, atol=1e-6)
        # and the image ids round-trip: a second export numbers the images as the first
        again = export_exchange(fresh, tmp_path / "again.json", "coco", include_all=True)[0]
        ids = [(i["id"], i["file_name"]) for i in json.loads(again.read_text())["images"]]
        assert ids == [(i["id"], i["file_name"]) for i in json.loads(out.read_text())["images"]]
    fresh.close()


def test_a_second_import_of_the_same_file_changes_nothing(curated, sample_dir, tmp_path):
    out = tmp_path / "set.json"
    export_exchange(curated, out, "coco", include_all=True)
    fresh = Project.create(tmp_path / "fresh", LANDMARK_NAMES, user="x")
    import_images(fresh, sample_dir / "images")
    import_exchange(fresh, out)
    history = len(fresh.annotations.history("hand002"))
    second = import_exchange(fresh, out)
    assert second.labels.unchanged == 24 * 15 - 1  # every consensus point (one was cleared) as it was
    assert len(fresh.annotations.history("hand002")) == history
    fresh.close()


def test_coco_import_never_overwrites_a_human_correction(curated, sample_dir, tmp_path):
    out = tmp_path / "set.json"
    export_exchange(curated, out, "coco", include_all=True)
    fresh = Project.create(tmp_path / "fresh", LANDMARK_NAMES, user="x")
    import_images(fresh, sample_dir / "images")
    fresh.annotations.set("hand005", 0, 10.0, 10.0, author="annotator")
    with pytest.raises(ScnError, match="differ from human corrections"):
        import_exchange(fresh, out)
    assert fresh.readings.readers() == []  # the whole file, readings too, refused
    assert fresh.annotations.of("hand005")[0].x == 10.0
    fresh.close()


def test_a_bad_file_leaves_the_project_as_it_was(tmp_path):
    """An embedded image and a landmark name the project lacks: the file is refused, no image is added."""
    project = Project.create(tmp_path / "p", LANDMARK_NAMES, user="x")
    folder = tmp_path / "labelme"
    folder.mkdir()
    png = tmp_path / "a.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30), np.uint8)), str(png))
    import base64

    doc = {
        "shapes": [{"label": "no_such_landmark", "points": [[1, 2]], "shape_type": "point"}],
        "imagePath": "missing/a.png",
        "imageData": base64.b64encode(png.read_bytes()).decode(),
    }
    (folder / "a.json").write_text(json.dumps(doc))
    with pytest.raises(LabelFileError, match=r"a\.json, shapes\[0\] label: 'no_such_landmark'"):
        import_exchange(project, folder)
    assert project.images() == []
    project.close()


def test_slicer_export_places_points_by_the_image_header(tmp_path):
    """An image with a rotated, shifted, anisotropic header: the exported position is origin + D (spacing * index)."""
    image = sitk.GetImageFromArray(np.zeros((40, 50), np.uint8))
    image.SetSpacing((0.5, 0.25))
    image.SetOrigin((10.0, 20.0))
    image.SetDirection((0.0, -1.0, 1.0, 0.0))
    (tmp_path / "images").mkdir()
    sitk.WriteImage(image, str(tmp_path / "images" / "rot.mha"))
    project = Project.create(tmp_path / "p", ["a", "b"], user="x")
    import_images(project, tmp_path / "images")
    project.annotations.set("rot", 0, 4.0, 8.0)
    project.annotations.set("rot", 1, 0.0, 0.0, state="occluded")
    files = export_exchange(project, tmp_path / "out", "slicer", include_all=True)
    points = json.loads(files[0].read_text())["markups"][0]["controlPoints"]
    # (4, 8) px -> (2, 2) mm along the image axes -> rotated (-2, 2) -> + origin
    assert points[0]["label"] == "a" and points[0]["position"] == [8.0, 22.0, 0.0]
    assert points[1]["position"] == [10.0, 20.0, 0.0] and points[1]["description"] == "occluded"
    project.close()


def test_coco_and_deeplabcut_bring_the_images_beside_them(tmp_path):
    """A dataset as it ships (images beside the annotation file) goes into an empty project in one import."""
    folder = tmp_path / "dataset"
    (folder / "img").mkdir(parents=True)
    for i in range(2):
        sitk.WriteImage(sitk.GetImageFromArray(np.full((30, 40), 40 * i, np.uint8)), str(folder / "img" / f"f{i}.png"))
    coco = {
        "images": [{"id": 10 + i, "file_name": f"img/f{i}.png", "width": 40, "height": 30} for i in range(2)],
        "annotations": [
            {"id": i, "image_id": 10 + i, "category_id": 3, "keypoints": [5, 6, 2, 7, 8, 1]} for i in range(2)
        ],
        "categories": [{"id": 3, "name": "x", "keypoints": ["a", "b"]}],
    }
    (folder / "coco.json").write_text(json.dumps(coco))
    project = Project.create(tmp_path / "p", ["a", "b"], user="x")
    report = import_exchange(project, folder / "coco.json")
    assert report.images.added == [
        "f0.png",
        "f1.png",
    ]  # the image root: the folder that holds them and report.labels.set == 4
    assert [i.exchange_id for i in project.images()] == [10, 11]
    assert project.annotations.of("f1")[1].state.value == "occluded"
    (folder / "img" / "CollectedData_ann.csv").write_text(
        "scorer,,,ann,ann,ann,ann\nbodyparts,,,a,a,b,b\ncoords,,,x,y,x,y\nlabeled-data,img,f0.png,1.5,2.5,,\n"
    )
    other = Project.create(tmp_path / "q", ["a", "b"], user="x")
    report = import_exchange(other, folder / "img" / "CollectedData_ann.csv")
    assert report.images.added == ["f0.png"] and other.annotations.points("f0")[0].tolist() == [1.5, 2.5]
    project.close()
    other.close()


def test_coco_image_ids_stay_unique_when_an_imported_id_is_another_images_own(loaded, tmp_path):
    with loaded.db.write() as s:  # hand003 came with COCO id 1, which is hand000's own id in the project
        from scn_annotator.db.models import Image

        row = s.query(Image).filter(Image.name == "hand003").one()
        row.meta = {**row.meta, "exchange_id": 1}
    loaded.annotations.set("hand000", 0, 5.0, 5.0)
    loaded.annotations.set("hand003", 0, 6.0, 6.0)
    out = export_exchange(loaded, tmp_path / "c.json", "coco", include_all=True)[0]
    ids = [i["id"] for i in json.loads(out.read_text())["images"]]
    assert len(set(ids)) == len(ids) == 24 and dict(zip([i.name for i in loaded.images()], ids))["hand003"] == 1


def test_only_a_physical_format_needs_the_header_of_an_image_imported_before_it_was_kept(loaded, tmp_path):
    with loaded.db.write() as s:  # as an older project: no geometry kept, and the file not on this machine
        from scn_annotator.db.models import Image

        row = s.query(Image).filter(Image.name == "hand000").one()
        row.meta = {k: v for k, v in row.meta.items() if k != "geometry"}
        row.path = "elsewhere/hand000.mha"
    loaded.annotations.set("hand000", 0, 5.0, 5.0)
    assert export_exchange(loaded, tmp_path / "c.json", "coco", include_all=True)  # pixels: no header needed
    with pytest.raises(ScnError, match="'hand000': its header geometry is needed"):
        export_exchange(loaded, tmp_path / "slicer", "slicer", include_all=True)
