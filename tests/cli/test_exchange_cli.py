"""``import --format`` and ``export --format`` from the command line: a labelme folder in, every format out."""

from __future__ import annotations

import base64
import json

import numpy as np
import SimpleITK as sitk

from scn_annotator.cli import main
from scn_annotator.db.store import Project


def test_a_labelme_folder_with_embedded_images_into_a_new_project_and_out_again(tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("S, sella\nN, nasion\nA\n")
    folder = tmp_path / "labelme"
    folder.mkdir()
    for i in range(3):  # the images only inside the JSON files, as some public sets ship them
        png = tmp_path / f"ceph{i}.png"
        sitk.WriteImage(sitk.GetImageFromArray(np.full((40, 60), i * 50, np.uint8)), str(png))
        shapes = [
            {"label": n, "points": [[5.5 + i, 7.5 + j]], "shape_type": "point", "flags": {}}
            for j, n in enumerate("SNA")
        ]
        doc = {"shapes": shapes, "imagePath": f"ceph{i}.png", "imageData": base64.b64encode(png.read_bytes()).decode()}
        (folder / f"ceph{i}.json").write_text(json.dumps(doc))
        png.unlink()  # not beside the JSON files: taken from imageData
    project_dir = tmp_path / "project"
    assert main(["init", str(project_dir), "--landmark-names", str(names)]) == 0
    argv = ["import", str(project_dir), "--labels", str(folder), "--format", "labelme", "--mark-done"]
    assert main(argv) == 0
    assert "labelme: 9 landmarks set, 0 unchanged, in 3 images" in capsys.readouterr().out
    assert main(argv) == 0  # a second time: the decoded images are found, nothing is added
    assert "labelme: 0 landmarks set, 9 unchanged, in 3 images" in capsys.readouterr().out
    with Project.open(project_dir) as project:
        assert [i.name for i in project.images()] == ["ceph0", "ceph1", "ceph2"]
        assert (project.data_dir / "images" / "ceph1.png").exists()
        np.testing.assert_allclose(project.annotations.points("ceph1")[0], [6.0, 7.0])  # labelme's half pixel
    for fmt, out in (("coco", "set.json"), ("labelme", "lm"), ("slicer", "sl"), ("dlc", "dlc")):
        assert main(["export", str(project_dir), str(tmp_path / out), "--format", fmt]) == 0
    coco = json.loads((tmp_path / "set.json").read_text())
    assert coco["categories"][0]["keypoints"] == ["S", "N", "A"] and len(coco["annotations"]) == 3
    assert sorted(p.name for p in (tmp_path / "sl").iterdir()) == [f"ceph{i}.mrk.json" for i in range(3)]
    assert (tmp_path / "dlc" / f"CollectedData_{Project.open(project_dir).user}.csv").exists()
    exported = json.loads((tmp_path / "lm" / "ceph2.json").read_text())
    assert exported["shapes"][0]["points"] == [[7.5, 7.5]]
    assert (tmp_path / "lm" / exported["imagePath"]).resolve() == (project_dir / "images" / "ceph2.png").resolve()
