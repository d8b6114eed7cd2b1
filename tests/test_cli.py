from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scn_annotator.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "sample", "demo"])
def test_every_command_documents_its_options(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scn-annotator " + command)
    if command == "train":
        for option in (
            "--images",
            "--labels",
            "--out",
            "--preset",
            "--max-minutes",
            "--spacing-from",
            "--model",
        ):
            assert option in out


def test_train_predict_evaluate_end_to_end(capsys, sample_dir, tmp_path):
    model, pred, report = tmp_path / "m.pt", tmp_path / "pred.csv", tmp_path / "r.json"
    images, labels = sample_dir / "images", sample_dir / "labels.csv"
    tiny = ["--input-size", "64x48", "--filters", "8", "--steps", "30", "--val-fraction", "0.2"]
    code, out, err = run(capsys, "train", "--images", images, "--labels", labels, "--out", model, *tiny)
    assert code == 0, err
    assert "trained 30 steps" in out and model.exists()
    code, out, err = run(capsys, "predict", "--model", model, "--images", sample_dir / "images", "--out", pred)
    assert code == 0, err
    assert "predicted 15 landmarks in 24 images" in out
    header = pred.read_text().splitlines()[0].split(",")
    assert header[:4] == ["image", "thumb_base_x", "thumb_base_y", "thumb_base_confidence"]
    code, out, err = run(
        capsys,
        "evaluate",
        "--pred",
        pred,
        "--truth",
        sample_dir / "labels.csv",
        "--images",
        sample_dir / "images",
        "--json",
        report,
    )
    assert code == 0, err
    assert "in mm" in out and "within 2 mm" in out and "index_tip" in out
    assert json.loads(report.read_text())["summary"]["images"] == 24


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--images", "{d}/images", "--labels", "{d}/nope.csv", "--out", "{t}/m.pt"],
            "no such file",
        ),
        (
            ["train", "--images", "{t}/empty", "--labels", "{d}/labels.csv", "--out", "{t}/m.pt"],
            "no image files",
        ),
        (
            [
                "train",
                "--images",
                "{d}/images",
                "--labels",
                "{d}/labels.csv",
                "--out",
                "{t}/m.pt",
                "--spacing-from",
                "1-5=50",
            ],
            "A,B=MM",
        ),
        (
            ["predict", "--model", "{t}/none.pt", "--images", "{d}/images", "--out", "{t}/p.csv"],
            "no such model",
        ),
        (["evaluate", "--pred", "{d}/labels.csv", "--truth", "{t}/bad.csv"], "row 2"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, sample_dir, tmp_path, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("image,a_x,a_y\nhand000,1,x\n")
    code, _out, err = run(capsys, *[a.format(d=sample_dir, t=tmp_path) for a in argv])
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("scn-annotator: error: ") and message in lines[0]
    assert "Traceback" not in err


def test_bad_option_values_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--images", "x", "--labels", "y", "--out", "z", "--input-size", "100x50"])
    assert info.value.code == 2
    assert "multiples of 16" in capsys.readouterr().err


def test_console_script_is_installed():
    """The ``scn-annotator`` command itself (the entry point pip wrote), not ``python -m``."""
    script = shutil.which("scn-annotator", path=str(Path(sys.executable).parent))
    assert script is not None, f"no scn-annotator script beside {sys.executable}"
    result = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("scn-annotator "), result.stderr
    module = subprocess.run([sys.executable, "-m", "scn_annotator", "--version"], capture_output=True, text=True)
    assert module.stdout == result.stdout  # python -m is the same command


def test_project_commands_end_to_end(capsys, sample_dir, tmp_path):
    names = tmp_path / "names.txt"
    from scn_annotator.app.sample_project import LANDMARK_NAMES

    names.write_text("# one per line\n" + "\n".join(f"{n}, the {n.replace('_', ' ')}" for n in LANDMARK_NAMES))
    project = tmp_path / "proj"
    assert run(capsys, "init", project, "--landmark-names", names)[0] == 0
    code, out, err = run(capsys, "import", project, "--images", sample_dir / "images")
    assert code == 0 and "24 added" in out, err
    labels = tmp_path / "twelve.csv"
    labels.write_text("\n".join((sample_dir / "labels.csv").read_text().splitlines()[:13]) + "\n")
    code, out, err = run(capsys, "import", project, "--labels", labels, "--mark-done")
    assert code == 0 and "180 set" in out and "marked done" in out, err
    code, out, _ = run(capsys, "status", project)
    assert "12 new" in out and "12 done" in out and "model:     none yet" in out
    tiny = ["--input-size", "64x48", "--filters", "8", "--steps", "20", "--val-fraction", "0.2"]
    code, out, err = run(capsys, "train", "--project", project, *tiny)
    assert code == 0 and "model version 1 is now the current model" in out, err
    code, out, err = run(capsys, "predict", "--project", project)
    assert code == 0 and "predicted 12 images" in out, err
    code, out, err = run(capsys, "evaluate", "--project", project, "--summary")
    assert code == 0 and "not trained on" in out and "in mm" in out, err
    code, out, err = run(capsys, "export", project, tmp_path / "out.csv", "--format", "long")
    assert code == 0 and "exported 12 done images (180 placed" in out, err
    assert (tmp_path / "out.manifest.json").exists()
    code, _, err = run(capsys, "import", project, "--labels", tmp_path / "nope.csv")
    assert code == 2 and err.strip().startswith("scn-annotator: error:") and "no such file" in err
    code, _, err = run(capsys, "init", project, "--landmarks", "3")
    assert code == 2 and "already a project" in err


TINY = ["--input-size", "64x48", "--filters", "8"]


def _six(sample_dir, tmp_path):
    rows = (sample_dir / "labels.csv").read_text().splitlines()
    labels = tmp_path / "six.csv"
    labels.write_text("\n".join(rows[:7]) + "\n")
    return sample_dir / "images", labels


def test_train_stopped_by_time_writes_the_model_it_announces(capsys, sample_dir, tmp_path):
    images, labels = _six(sample_dir, tmp_path)
    model = tmp_path / "m.pt"
    code, out, err = run(
        capsys,
        "train",
        "--images",
        images,
        "--labels",
        labels,
        "--out",
        model,
        *TINY,
        "--steps",
        "100000",
        "--max-minutes",
        "0.02",
    )
    assert code == 0, err
    assert "(time)" in out and f"model written to {model}" in out and model.is_file()
    code, out, err = run(capsys, "predict", "--model", model, "--images", images, "--out", tmp_path / "p.csv")
    assert code == 0, err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("scn-annotator: error: ")
    return lines[0]


def test_a_checkpoint_of_another_network_is_one_line(capsys, sample_dir, tmp_path):
    images, labels = _six(sample_dir, tmp_path)
    model = tmp_path / "m.pt"
    base = ["train", "--images", images, "--labels", labels, *TINY, "--steps", "3"]
    assert run(capsys, *base, "--out", model)[0] == 0
    code, _, err = run(
        capsys,
        "train",
        "--images",
        images,
        "--labels",
        labels,
        "--out",
        tmp_path / "n.pt",
        "--input-size",
        "64x48",
        "--filters",
        "16",
        "--steps",
        "3",
        "--init",
        model,
    )
    assert code == 2 and "another network" in _one_line_error(err) and "filters=8" in err
    import torch

    state = torch.load(tmp_path / "m.pt.state", weights_only=True)
    del state["model"]
    torch.save(state, tmp_path / "m.pt.state")
    code, _, err = run(capsys, *base, "--out", model, "--resume")
    assert code == 2 and "lacks model" in _one_line_error(err)


def test_train_project_with_another_architecture_starts_afresh(capsys, sample_dir, tmp_path):
    project = tmp_path / "p"
    assert run(capsys, "init", project, "--landmarks", "15")[0] == 0
    assert run(capsys, "import", project, "--images", sample_dir / "images")[0] == 0
    rows = (sample_dir / "labels.csv").read_text().splitlines()
    named = [",".join(["image", *(f"L{i}_{a}" for i in range(15) for a in "xy")])]
    (tmp_path / "l.csv").write_text("\n".join(named + rows[1:9]) + "\n")
    assert run(capsys, "import", project, "--labels", tmp_path / "l.csv", "--mark-done")[0] == 0
    assert run(capsys, "train", "--project", project, *TINY, "--steps", "3")[0] == 0
    code, out, err = run(
        capsys, "train", "--project", project, "--input-size", "64x48", "--filters", "16", "--steps", "3"
    )
    assert code == 0, err
    assert "another architecture" in err and "model version 2" in out


def test_absurd_coordinates_are_refused_by_file_and_row(capsys, sample_dir, tmp_path):
    rows = (sample_dir / "labels.csv").read_text().splitlines()
    cells = rows[2].split(",")
    cells[1] = "1e300"
    bad = tmp_path / "pred.csv"
    bad.write_text("\n".join([rows[0], rows[1], ",".join(cells)]) + "\n")
    code, _, err = run(capsys, "evaluate", "--pred", bad, "--truth", sample_dir / "labels.csv")
    assert code == 2
    line = _one_line_error(err)
    assert str(bad) in line and "row 3" in line and "not a plausible position" in line


def test_an_unexpected_error_is_one_line_with_a_log(capsys, monkeypatch, tmp_path):
    from scn_annotator.cli import files

    def broken(_args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(files, "cmd_sample", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    code, _, err = run(capsys, "sample", tmp_path / "s")
    assert code == 1 and "Traceback" not in err
    line = err.strip()
    assert line.startswith("scn-annotator: unexpected error: ZeroDivisionError: a bug (traceback in ")
    log = next(tmp_path.glob("scn-annotator-error-*.log"))
    assert "ZeroDivisionError" in log.read_text() and str(log) in line
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "sample", str(tmp_path / "s")])


def test_a_landmark_outside_its_image_is_an_error_or_with_the_option_missing_and_listed(capsys, sample_dir, tmp_path):
    rows = (sample_dir / "labels.csv").read_text().splitlines()
    cells = rows[3].split(",")
    cells[2] = "5000.0"  # thumb_base y, far below a 320-pixel-high image
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join([*rows[:3], ",".join(cells), *rows[4:]]) + "\n")
    base = [
        "train",
        "--images",
        sample_dir / "images",
        "--labels",
        labels,
        "--out",
        tmp_path / "m.pt",
        *TINY,
        "--steps",
        "2",
    ]
    code, _, err = run(capsys, *base)
    line = _one_line_error(err)
    assert code == 2 and "row 4" in line and "'thumb_base' at (" in line and "--outside missing" in line
    code, out, err = run(capsys, *base, "--outside", "missing")
    assert code == 0, err
    assert "note: 1 landmarks outside their images were treated as missing" in err
    assert "row 4: 'thumb_base' at (" in err and "treated as missing" in err
    project = tmp_path / "p"
    assert run(capsys, "init", project, "--landmarks", "15")[0] == 0
    assert run(capsys, "import", project, "--images", sample_dir / "images")[0] == 0
    named = tmp_path / "named.csv"
    header = ",".join(["image", *(f"L{i}_{a}" for i in range(15) for a in "xy")])
    named.write_text("\n".join([header, *labels.read_text().splitlines()[1:]]) + "\n")
    code, _, err = run(capsys, "import", project, "--labels", named)
    assert code == 2 and "row 4" in _one_line_error(err) and "'L0'" in err
    code, out, err = run(capsys, "import", project, "--labels", named, "--outside", "missing")
    assert code == 0 and "359 set" in out and "row 4: landmark 'L0'" in err and "not imported" in err


def test_predict_with_hints_in_every_layout(capsys, sample_dir, tmp_path):
    from scn_annotator.io.landmark_files import read_landmarks, write_landmarks

    images, labels = _six(sample_dir, tmp_path)
    model = tmp_path / "m.pt"
    assert run(capsys, "train", "--images", images, "--labels", labels, "--out", model, *TINY, "--steps", "3")[0] == 0
    truth = read_landmarks(labels)
    names = truth.names
    confirmed = {}
    for image, points in truth.points.items():
        hints = np.full_like(points, np.nan)
        hints[[1, 4]] = points[[1, 4]]
        confirmed[image] = hints
    files = {"wide": tmp_path / "wide.csv", "long": tmp_path / "long.csv", "headerless": tmp_path / "plain.csv"}
    write_landmarks(files["wide"], names, confirmed)
    write_landmarks(files["long"], names, confirmed, layout="long")
    files["headerless"].write_text(
        "\n".join(
            ",".join([image, *("" if np.isnan(v) else f"{v:.3f}" for v in pts.ravel())])
            for image, pts in confirmed.items()
        )
        + "\n"
    )
    for layout, hints in files.items():
        out = tmp_path / f"pred-{layout}.csv"
        code, _, err = run(capsys, "predict", "--model", model, "--images", images, "--out", out, "--hints", hints)
        assert code == 0, (layout, err)
        predicted = read_landmarks(out)
        for image, pts in truth.points.items():
            np.testing.assert_allclose(predicted.points[image][[1, 4]], pts[[1, 4]], atol=1e-3)  # as given
            assert np.isfinite(predicted.points[image]).all()  # every landmark in the output
    bad = tmp_path / "bad.csv"
    lines = files["wide"].read_text().splitlines()
    cells = lines[2].split(",")
    cells[3] = "x"  # row 3, landmark 1's x
    bad.write_text("\n".join([*lines[:2], ",".join(cells), *lines[3:]]) + "\n")
    code, _, err = run(
        capsys, "predict", "--model", model, "--images", images, "--out", tmp_path / "p.csv", "--hints", bad
    )
    assert code == 2 and str(bad) in _one_line_error(err) and "row 3" in err


def test_effort_counts_an_oracle_annotators_corrections(capsys, sample_dir, tmp_path):
    images, labels = _six(sample_dir, tmp_path)
    model = tmp_path / "m.pt"
    assert run(capsys, "train", "--images", images, "--labels", labels, "--out", model, *TINY, "--steps", "30")[0] == 0
    report = tmp_path / "effort.json"
    code, out, err = run(
        capsys,
        "effort",
        "--model",
        model,
        "--images",
        images,
        "--labels",
        labels,
        "--tolerance",
        "2mm",
        "--json",
        report,
    )
    assert code == 0, err
    data = json.loads(report.read_text())
    assert (data["images"], data["landmarks"], data["tolerance"]) == (6, 15, "2mm")
    modes = data["modes"]
    assert modes["manual"]["corrections_per_image"] == 15 == modes["manual"]["clicks_per_image"]
    for name, counts in data["per_image"].items():
        assert 0 <= counts["conditioned"] <= 15 and 0 <= counts["proposals"] <= 15, name
    assert modes["proposals"]["clicks_per_image"] == modes["proposals"]["corrections_per_image"] + 1
    assert "conditioned" in out and "corrections/image" in out
    code, _, err = run(capsys, "effort", "--model", model, "--images", images, "--labels", labels, "--tolerance", "two")
    assert code == 2 and "2mm, 25px or 1%" in err


def test_closing_hints_name_a_command_that_runs_as_shown(monkeypatch):
    import sys
    from pathlib import Path

    from scn_annotator.cli._common import command

    script = Path(sys.executable).parent / "scn-annotator"
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.setenv("PATH", "/nonexistent")  # the venv is not activated
    assert command() == str(script) and script.exists()
    monkeypatch.setenv("PATH", str(script.parent))
    assert command() == "scn-annotator"


def test_train_options_switch_the_local_stage_and_hint_channels():
    import argparse

    from scn_annotator.cli._common import add_train_options, train_config

    parser = argparse.ArgumentParser()
    add_train_options(parser)
    cfg = train_config(parser.parse_args(["--preset", "cpu", "--refine", "on", "--hint-rate", "0.5"]))
    assert cfg.refine is not None and cfg.hint_rate == 0.5 and cfg.network_for(3).hint_channels
    assert train_config(parser.parse_args(["--preset", "cpu"])).network_for(3).hint_channels  # the preset's default
    cfg = train_config(parser.parse_args(["--preset", "cpu", "--refine", "off", "--hint-rate", "0"]))
    assert cfg.refine is None and not cfg.network_for(3).hint_channels
    with pytest.raises(SystemExit):
        parser.parse_args(["--hint-rate", "1.5"])


def test_rank_lists_done_images_that_carry_no_score(trained, capsys):
    from scn_annotator.db.store import Project

    project = Project.open(trained)
    for image in project.images():
        project.set_status(image.id, "done")
    project.close()
    code, out, _ = run(capsys, "rank", trained, "--top", "30")
    assert code == 0 and out.count(" done ") == 24 and "None" not in out


def test_gui_without_the_gui_extra_says_what_to_install_in_one_line(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "napari" else real(name, *a))
    code, out, err = run(capsys, "gui")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and 'pip install "scn-annotator[gui,qt]"' in err and "no napari" in err


def test_one_spelling_works_in_every_command(capsys, sample_dir, tmp_path):
    """A project as PROJECT or --project, the written file as --out, -v and --debug after the command."""
    project = tmp_path / "proj"
    names = tmp_path / "names.txt"
    from scn_annotator.app.sample_project import LANDMARK_NAMES

    names.write_text("\n".join(LANDMARK_NAMES))
    assert run(capsys, "init", "--project", project, "--landmark-names", names, "-v")[0] == 0
    code, out, err = run(capsys, "import", project, "--images", sample_dir / "images", "--debug")
    assert code == 0 and "24 added" in out, err
    code, out, _ = run(capsys, "status", "--project", project)
    assert code == 0 and "24 new" in out
    code, _, err = run(capsys, "export", project, "--out", tmp_path / "a.csv", "--layout", "long", "--all")
    assert code == 0 and (tmp_path / "a.csv").exists(), err
    code, _, err = run(capsys, "export", project, tmp_path / "b.csv", "--format", "long", "--all")  # the old name
    assert code == 0 and (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text(), err
    code, _, err = run(capsys, "rank", "--project", project, "--out", tmp_path / "rank.json")
    assert code == 0, err
    with pytest.raises(SystemExit):
        run(capsys, "export", project)  # nothing to write to
    assert "export needs OUT (or --out)" in capsys.readouterr().err


def test_init_groups_landmarks_into_the_objects_the_names_file_gives(capsys, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("tip_a, mesial cusp, object=tooth\ntip_b, object=tooth\nV1_tl\nV1_tr\nV2_tl\nV2_tr\nnose\n")
    code, out, err = run(capsys, "init", tmp_path / "p", "--landmark-names", names)
    assert code == 0 and "7 landmarks in 4 objects" in out, err  # tooth, V1, V2 and the nose alone
    bad = tmp_path / "bad.txt"
    bad.write_text("a\nb\na\n")
    code, _, err = run(capsys, "init", tmp_path / "q", "--landmark-names", bad)
    assert code == 2 and f"{bad}: line 3: landmark 'a' is given twice" in err and err.count("\n") == 1
    assert not (tmp_path / "q").exists()  # nothing half-made
