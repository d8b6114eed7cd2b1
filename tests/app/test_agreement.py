"""Several readers: their points kept apart, their agreement measured, a consensus decided by the mean."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scn_annotator.app.agreement_report import agreement_report, bland_altman_plots
from scn_annotator.cli import main
from scn_annotator.engine.agreement import bland_altman, icc
from scn_annotator.engine.measurements import Measurement, builtin_measurements
from scn_annotator.errors import LabelFileError
from scn_annotator.io.landmark_files import read_landmarks, write_landmarks
from scn_annotator.io.measurement_file import read_measurements

#: Reader B's offset from reader A for landmark k: a known distance in a known direction.
DISTANCE = np.linspace(0.5, 2.0, 15)
ANGLE = np.linspace(0.0, 2 * np.pi, 15, endpoint=False)


def _readers(sample_dir, tmp_path, images: int = 10):
    truth = read_landmarks(sample_dir / "labels.csv")
    names = sorted(truth.points)[:images]
    offset = np.stack([DISTANCE * np.cos(ANGLE), DISTANCE * np.sin(ANGLE)], axis=1)
    a = {n: truth.points[n] for n in names}
    b = {n: truth.points[n] + offset for n in names}
    write_landmarks(tmp_path / "a.csv", truth.names, a)
    write_landmarks(tmp_path / "b.csv", truth.names, b)
    return truth, a, b


def test_two_readers_disagreement_known_by_construction_is_what_agreement_reports(sample_dir, tmp_path, capsys):
    truth, a, b = _readers(sample_dir, tmp_path)
    np.testing.assert_allclose(np.linalg.norm(b[next(iter(a))] - a[next(iter(a))], axis=1), DISTANCE)
    project_dir = tmp_path / "p"
    names_file = tmp_path / "names.txt"
    names_file.write_text("\n".join(truth.names) + "\n")
    assert main(["init", str(project_dir), "--landmark-names", str(names_file)]) == 0
    assert main(["import", str(project_dir), "--images", str(sample_dir / "images")]) == 0
    assert main(["import", str(project_dir), "--labels", str(tmp_path / "a.csv"), "--reader", "A"]) == 0
    assert main(["import", str(project_dir), "--labels", str(tmp_path / "b.csv"), "--reader", "B"]) == 0
    assert main(["agreement", str(project_dir), "--json", str(tmp_path / "agreement.json")]) == 0
    out = json.loads((tmp_path / "agreement.json").read_text())
    assert out["readers"] == ["A", "B"] and out["unit"] == "mm" and out["images"] == 10
    spacing = 0.6  # the generated images' mm per pixel
    for k, row in enumerate(out["per_landmark"]):
        assert set(row) >= {"landmark", "mean", "median", "p95", "unit"} and row["landmark"] == truth.names[k]
        assert row["mean"] == pytest.approx(DISTANCE[k] * spacing, abs=0.5 * spacing)  # within half a pixel
        assert row["mean"] == pytest.approx(DISTANCE[k] * spacing, abs=1e-3)  # in fact to the CSV's precision
        assert row["unit"] == "mm"
    assert out["overall"]["mean"] == pytest.approx(DISTANCE.mean() * spacing, abs=1e-3)
    assert out["model"] is None  # no model yet
    assert "readers mean" in capsys.readouterr().out

    # the consensus by mean is exact, and it is what the project trains on
    assert main(["consensus", str(project_dir)]) == 0
    from scn_annotator.db.store import Project

    project = Project.open(project_dir)
    stored = project.readings.all()  # the readers' points as imported (the CSVs' precision)
    for name in a:
        np.testing.assert_allclose(stored["A"][name], a[name], atol=1e-3)
        expected = (stored["A"][name] + stored["B"][name]) / 2
        np.testing.assert_allclose(project.annotations.points(name), expected, rtol=0, atol=1e-9)
    # a reader's re-import replaces only their own reading
    moved = {n: p + 1.0 for n, p in a.items()}
    write_landmarks(tmp_path / "a2.csv", truth.names, moved)
    assert main(["import", str(project_dir), "--labels", str(tmp_path / "a2.csv"), "--reader", "A"]) == 0
    readings = project.readings.all()
    first = next(iter(a))
    np.testing.assert_allclose(readings["A"][first], stored["A"][first] + 1.0, atol=1e-3)
    np.testing.assert_allclose(readings["B"][first], stored["B"][first], rtol=0, atol=0)
    project.close()


def test_a_bad_reader_file_is_refused_whole_and_changes_nothing(sample_dir, tmp_path, labelled_project):
    project, truth = labelled_project
    from scn_annotator.db.transfer import import_readings

    good = {n: truth.points[n] for n in sorted(truth.points)[:3]}
    good["not-an-image"] = truth.points[sorted(truth.points)[0]]
    write_landmarks(tmp_path / "bad.csv", truth.names, good)
    with pytest.raises(LabelFileError, match="not-an-image"):
        import_readings(project, tmp_path / "bad.csv", "A")
    assert project.readings.readers() == []


def test_icc_and_bland_altman_match_reference_computations():
    # Shrout and Fleiss (1979), Table 2: six targets, four judges; ICC(2,1) = 0.29
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert icc(ratings) == pytest.approx(0.2898, abs=5e-4)
    assert icc(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == pytest.approx(1.0)
    assert icc(ratings[:1]) is None
    ba = bland_altman("A", "B", [1.0, 2.0, 3.0, 4.0], [0.5, 1.5, 2.0, 4.0])
    diff = np.array([0.5, 0.5, 1.0, 0.0])
    assert ba.bias == pytest.approx(diff.mean()) and ba.upper - ba.bias == pytest.approx(1.96 * diff.std(ddof=1))


def test_measurements_from_a_file_and_the_spine_template(tmp_path):
    names = ["S", "N", "A", "B"]
    path = tmp_path / "measurements.txt"
    path.write_text("# cephalometry\nSNA = angle(S, N, A)\nSN = distance(S, N)\ntilt = line_angle(S, N, A, B)\n")
    sna, sn, tilt = read_measurements(path, names)
    points = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [20.0, 10.0]])
    assert sna.value(points) == pytest.approx(90.0)
    assert sn.value(points, spacing=(0.5, 0.5)) == pytest.approx(5.0)
    assert tilt.value(points) == pytest.approx(0.0)
    assert np.isnan(sn.value(np.full((4, 2), np.nan)))
    for text, message in [
        ("X = angle(S, N)\n", "line 1: angle takes 3"),
        ("X = area(S, N)\n", "unknown measurement"),
        ("X = distance(S, Q)\n", "'Q' is not in the project"),
        ("X = distance(S, N)\nX = distance(N, A)\n", "line 2: 'X' is defined twice"),
        ("nonsense\n", "line 1"),
    ]:
        path.write_text(text)
        with pytest.raises(LabelFileError, match=message):
            read_measurements(path, names)
    spine = [f"V{v}_{c}" for v in range(1, 4) for c in ("tl", "tr", "bl", "br")]
    cobb = builtin_measurements(spine)
    assert [m.kind for m in cobb] == list(Measurement.COBB) and builtin_measurements(names) == []


def test_a_measurements_agreement_and_its_bland_altman_plot(sample_dir, tmp_path, labelled_project):
    project, _ = labelled_project
    _readers(sample_dir, tmp_path, images=6)
    from scn_annotator.db.transfer import import_readings

    import_readings(project, tmp_path / "a.csv", "A")
    import_readings(project, tmp_path / "b.csv", "B")
    spread = Measurement("spread", "distance", (0, 1))
    report = agreement_report(project, [spread])
    m = report.measurements[0]
    assert m.unit == "mm" and set(m.values) == {"A", "B"} and len(m.pairs) == 1
    plots = bland_altman_plots(report, tmp_path / "plots")
    assert len(plots) == 1 and plots[0].stat().st_size > 1000
    assert "ICC" in report.table()


def test_the_model_is_set_against_each_reader_and_the_consensus(trained, sample_dir, tmp_path):
    from scn_annotator.db.store import Project
    from scn_annotator.db.transfer import import_readings

    project = Project.open(trained)
    truth = read_landmarks(sample_dir / "labels.csv")
    new = [im.name for im in project.images(["new"])][:5]  # predicted by the round
    write_landmarks(tmp_path / "a.csv", truth.names, {n: truth.points[n] for n in new})
    write_landmarks(tmp_path / "b.csv", truth.names, {n: truth.points[n] + 1.0 for n in new})
    import_readings(project, tmp_path / "a.csv", "A")
    import_readings(project, tmp_path / "b.csv", "B")
    report = agreement_report(project)
    assert report.model_version == project.models.current().id and set(report.model) == {"A", "B", "consensus"}
    predicted = {n: project.predictions.latest(n).points for n in new}
    stored = project.readings.all()
    mean_to_a = np.mean([np.linalg.norm((predicted[n] - stored["A"][n]) * 0.6, axis=1).mean() for n in new])
    assert report.model["A"][1].mean == pytest.approx(mean_to_a, rel=1e-6)
    assert len(report.within_spread()) == len(truth.names)
    text = report.table()
    assert "model-readers" in text and "within" in text
    project.close()


def test_export_writes_the_measurements_beside_the_landmarks(labelled_project, tmp_path):
    project, truth = labelled_project
    names_file = tmp_path / "m.txt"
    names_file.write_text(f"span = distance({truth.names[0]}, {truth.names[-1]})\n")
    out = tmp_path / "export.csv"
    assert main(["export", str(project.data_dir), str(out), "--measurements", str(names_file)]) == 0
    rows = (tmp_path / "export.measurements.csv").read_text().splitlines()
    assert rows[0] == "image,length_unit,span (length)" and len(rows) == 1 + 8  # the 8 done images
    image, unit, value = rows[1].split(",")
    expected = np.linalg.norm((truth.points[image][-1] - truth.points[image][0]) * 0.6)
    assert unit == "mm" and float(value) == pytest.approx(expected, abs=1e-3)
    manifest = json.loads((tmp_path / "export.manifest.json").read_text())
    assert manifest["measurements"]["definitions"] == [{"name": "span", "kind": "distance"}]
