"""A project of look-alike vertebrae: its objects reach training, and its evaluation scores Cobb angles."""

from __future__ import annotations

import pytest

from scn_annotator.app.project_operations import evaluate_project, train_project
from scn_annotator.app.sample_project import sample_project
from scn_annotator.app.sample_spine import generate_spine_sample, spine_names
from scn_annotator.engine.config import preset
from scn_annotator.engine.model_file import ModelFile
from scn_annotator.engine.training import warm_startable
from scn_annotator.io.landmark_files import read_landmarks


@pytest.fixture(scope="module")
def spine_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("spines")
    truth = read_landmarks(generate_spine_sample(root / "sample", count=12, seed=2, vertebrae=6))
    names = sorted(truth.points)
    project = sample_project(
        root / "project", root / "sample" / "images", truth.points, names, user="t", landmark_names=spine_names(6)
    )
    yield project
    project.close()


def _cfg():
    return preset(
        "cpu", filters=8, sc_filters=8, sc_kernel=5, steps=30, warmup_steps=5, validate_every=10, refine=None
    )  # fmt: skip


def test_a_spine_project_trains_on_vertebra_centres_and_reports_cobb_angles(spine_project):
    assert len(spine_project.objects()) == 6
    cfg = _cfg()
    result = train_project(spine_project, cfg, val_fraction=0.25)
    version = spine_project.models.current()
    held = ModelFile.load(spine_project.models.file(version))
    # stage 1 learns the 6 centres, not the 24 corners; the input rule fitted them (and says so)
    assert held.objects is not None and held.network.num_landmarks == 6 and result.version_id == version.id
    assert held.train_config.input_rule is not None and held.train_config.input_rule.get("objects")
    report = evaluate_project(spine_project, held_out_only=True)
    assert report.cobb is not None and len(report.cobb.image_ids) == len(report.image_ids) > 0
    assert report.cobb.smape is not None and 0 <= report.cobb.smape <= 100
    assert "Cobb angles (AASCE 2019 rule)" in report.format()


def test_a_round_fine_tunes_a_spine_model_and_keeps_its_fitted_architecture(spine_project):
    first = train_project(spine_project, _cfg(), val_fraction=0.25)
    path = spine_project.models.file(first.version_id)
    held = ModelFile.load(path).network
    assert held.sc_downsample != _cfg().network.sc_downsample  # the input rule chose it for the vertebrae
    # the worker and the CLI fine-tune only where this holds; before, a spine model never did
    assert warm_startable(path, _cfg()) and not warm_startable(path, _cfg().replace(filters=16))
    # a model of more levels (and another first width) than the rule would give keeps them when fine-tuned
    deeper_cfg = _cfg().replace(levels=held.levels + 1, first_filters=4, steps=2)
    deeper = train_project(spine_project, deeper_cfg, val_fraction=0.25)
    start = spine_project.models.file(deeper.version_id)
    assert warm_startable(start, _cfg())
    tuned = train_project(spine_project, _cfg().replace(steps=5), val_fraction=0.25, init_from=start)
    network = ModelFile.load(spine_project.models.file(tuned.version_id)).network
    assert network.levels == held.levels + 1 and network.sc_downsample == held.sc_downsample
    assert network.first_filters == 4
    assert tuned.result.steps == 5
