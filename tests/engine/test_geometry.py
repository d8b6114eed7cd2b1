from __future__ import annotations

import numpy as np
import pytest
import torch

from scn_annotator.engine.data import resample_to_input
from scn_annotator.engine.geometry import SpacingRule, fit_transform
from scn_annotator.engine.heatmaps import decode_peaks
from scn_annotator.errors import ScnError

RNG = np.random.default_rng(1)


@pytest.mark.parametrize(
    ("image_size", "input_size"),
    [((1350, 1950), (256, 192)), ((2000, 2000), (256, 192)), ((257, 91), (96, 80)), ((40, 30), (512, 512))],
)
def test_coordinates_round_trip_within_a_thousandth_of_a_pixel(image_size, input_size):
    t = fit_transform(image_size, input_size, spacing=(0.13, 0.12))
    points = RNG.uniform(-0.5, np.array(image_size) - 0.5, (500, 2))
    assert np.abs(t.from_network(t.to_network(points)) - points).max() < 1e-3
    assert np.abs(t.from_mm(t.to_mm(points)) - points).max() < 1e-3
    net = RNG.uniform(0, np.array(input_size[::-1]) - 1, (500, 2))
    assert np.abs(t.to_network(t.from_network(net)) - net).max() < 1e-3


def test_fit_keeps_aspect_and_centres():
    t = fit_transform((1000, 2000), (256, 192))  # tall image: height limits
    assert t.scale[1] == pytest.approx(256 / 2000)
    assert t.scale[0] == pytest.approx(t.scale[1], rel=0.01)
    corners = t.to_network(np.array([[-0.5, -0.5], [999.5, 1999.5]]))
    assert corners[0][1] == pytest.approx(-0.5) and corners[1][1] == pytest.approx(255.5)
    assert corners[0][0] + 0.5 == pytest.approx(192 - 0.5 - corners[1][0], abs=1.0)  # centred in x


def test_resampled_image_puts_a_feature_where_the_transform_says():
    h, w = 900, 700
    yy, xx = np.mgrid[0:h, 0:w]
    truth = np.array([[123.4, 456.7], [600.2, 88.9]])
    image = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 12.0**2)) for x, y in truth)
    t = fit_transform((w, h), (128, 96))
    small = resample_to_input(image.astype(np.float32), t)
    found = []
    for x, y in t.to_network(truth):  # decode each blob in its own window
        window = torch.zeros_like(small)
        xi, yi = round(x), round(y)
        window[yi - 3 : yi + 4, xi - 3 : xi + 4] = small[yi - 3 : yi + 4, xi - 3 : xi + 4]
        found.append(decode_peaks(window[None])[0][0].numpy())
    assert np.abs(t.from_network(np.array(found)) - truth).max() < 0.6  # px of the 900 px original


def test_napari_affine_maps_heatmap_pixels_onto_the_image():
    t = fit_transform((1350, 1950), (256, 192))
    net = RNG.uniform(0, 190, (20, 2))
    rows_cols = np.c_[net[:, 1], net[:, 0], np.ones(len(net))]
    mapped = (t.affine_network_to_image() @ rows_cols.T).T[:, :2]
    np.testing.assert_allclose(mapped[:, ::-1], t.from_network(net), atol=1e-9)


def test_spacing_rule():
    rule = SpacingRule.parse("1,5=50")
    pts = np.zeros((6, 2))
    pts[5] = [300, 400]
    assert rule.spacing(pts) == pytest.approx(0.1)
    pts[5] = np.nan
    assert rule.spacing(pts) is None
    assert str(SpacingRule.parse(" 2 , 3 = 12.5mm ")) == "2,3=12.5"
    for bad in ("1,5", "1;5=50", "a,b=3", "1,1=50", "1,5=0"):
        with pytest.raises(ScnError, match="spacing-from"):
            SpacingRule.parse(bad)
    with pytest.raises(ScnError, match="only 3"):
        SpacingRule(1, 5, 50).spacing(np.zeros((3, 2)))


def test_the_input_follows_the_images_aspect_and_keeps_landmarks_apart():
    from scn_annotator.engine.geometry import MIN_SEPARATION, choose_input_size

    rng = np.random.default_rng(0)
    tall = [(1000, 2500)] * 20  # spines: tall and narrow
    column = [
        np.stack([np.full(17, 500.0), np.linspace(100, 2400, 17)], axis=1) + rng.normal(0, 2, (17, 2)) for _ in tall
    ]
    choice = choose_input_size(tall, column, (256, 192), 16, max_growth=2.0)
    h, w = choice.input_size
    assert h % 16 == 0 and w % 16 == 0 and h / w > 2.0  # a tall input for tall images
    assert h * w <= 2.0 * 256 * 192 * 1.1 and choice.separation >= MIN_SEPARATION
    wide = [(3000, 1000)] * 20
    row = [p[:, ::-1] * [1.2, 0.4] for p in column]
    h, w = choose_input_size(wide, row, (256, 192), 16).input_size
    assert w / h > 2.0  # a wide input for wide images
    crowded = [np.array([[500.0, 500.0], [500.0, 503.0], [100.0, 100.0]])] * 20  # two landmarks 3 px apart
    grown = choose_input_size(tall, crowded, (256, 192), 16, max_growth=2.0)
    assert grown.input_size[0] * grown.input_size[1] > 256 * 192  # grew, up to the preset's limit
    assert grown.input_size[0] * grown.input_size[1] <= 2.0 * 256 * 192 * 1.1
    fixed = choose_input_size(tall, crowded, (256, 192), 16, max_growth=1.0)
    assert abs(fixed.input_size[0] * fixed.input_size[1] - 256 * 192) < 0.15 * 256 * 192


def test_training_records_the_chosen_input_and_prediction_uses_it(sample_dir, tmp_path):
    from scn_annotator.app.file_operations import load_training_data
    from scn_annotator.engine.config import preset
    from scn_annotator.engine.inference import Predictor
    from scn_annotator.engine.training import train

    cfg = preset("cpu", filters=8, sc_filters=8, steps=2, input_size=(64, 48), auto_input_growth=1.5)
    data = load_training_data(sample_dir / "images", sample_dir / "labels.csv", cfg, val_fraction=0.2)
    chosen = data.config
    assert chosen.input_rule is not None and tuple(chosen.input_rule["input_size"]) == chosen.input_size
    h, w = chosen.input_size
    assert abs(h / w - 320 / 256) < 0.35  # the phantoms are 256 x 320 (w x h)
    train(chosen, data.train, data.val, data.names, tmp_path / "m.pt", device="cpu")
    predictor = Predictor.from_checkpoint(tmp_path / "m.pt", device="cpu")
    assert predictor.input_size == chosen.input_size
    assert predictor.train_config is not None and predictor.train_config.input_rule["images"] == 24
