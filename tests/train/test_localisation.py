"""Localisation measures on synthetic thetas with known answers, and on an ST-CNN over cluttered images."""

import math

import pytest
import torch

from visattn.backbones import create
from visattn.data.cluttered import ClutteredImages, ClutterSpec
from visattn.data.loader import ImageData
from visattn.train.localisation import LOCALISATION_KEYS, localisation_measures, measure_localisation

SIZE = (60, 60)


def _centres(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 14 + 32 * torch.rand(n, 2, generator=g, dtype=torch.float64)  # items inside a 60 px canvas


def _theta(scale, tx, ty, angle=0.0):
    n = len(tx)
    c, s = math.cos(angle), math.sin(angle)
    t = torch.zeros(n, 2, 3, dtype=torch.float64)
    t[:, 0, 0], t[:, 0, 1], t[:, 1, 0], t[:, 1, 1] = scale * c, -scale * s, scale * s, scale * c
    t[:, 0, 2], t[:, 1, 2] = tx, ty
    return t


def test_a_window_on_every_item():
    centres = _centres()
    item = centres / 30 - 1  # normalised
    m = localisation_measures(_theta(0.4, item[:, 0], item[:, 1], angle=0.3), centres, SIZE)
    assert list(m) == list(LOCALISATION_KEYS)
    assert m["mean_abs_det"] == pytest.approx(0.16)  # |det| = scale^2 whatever the rotation
    assert m["corr_x"] == pytest.approx(1) and m["corr_y"] == pytest.approx(1)
    assert m["slope_x"] == pytest.approx(1) and m["slope_y"] == pytest.approx(1)
    assert m["centre_distance_px"] == pytest.approx(0, abs=1e-9)
    # only the translation varies: two of six entries, each with the items' spread
    expected_std = (item[:, 0].std(unbiased=False) + item[:, 1].std(unbiased=False)) / 6
    assert m["theta_std"] == pytest.approx(float(expected_std))
    baseline = (centres - centres.mean(0)).norm(dim=1).mean()
    assert m["baseline_distance_px"] == pytest.approx(float(baseline)) and m["baseline_distance_px"] > 5


def test_the_same_window_for_every_image():
    centres = _centres()
    n = len(centres)
    m = localisation_measures(_theta(1.0, torch.zeros(n), torch.zeros(n)), centres, SIZE)
    assert m["mean_abs_det"] == pytest.approx(1) and m["theta_std"] == 0
    assert m["corr_x"] is None and m["corr_y"] is None  # theta does not vary: no correlation
    assert m["slope_x"] == 0 and m["slope_y"] == 0
    # the window centre is the canvas centre (30, 30)
    assert m["centre_distance_px"] == pytest.approx(float((centres - 30).norm(dim=1).mean()))


def test_hand_computed_numbers():
    # two items at x = 15 and 45 (y = 30); windows at x = 20 and 40 (normalised -1/3, +1/3), half the size
    centres = torch.tensor([[15.0, 30.0], [45.0, 30.0]])
    m = localisation_measures(_theta(0.5, torch.tensor([-1 / 3, 1 / 3]), torch.zeros(2)), centres, SIZE)
    assert m["mean_abs_det"] == pytest.approx(0.25)
    assert m["corr_x"] == pytest.approx(1) and m["slope_x"] == pytest.approx((2 / 3) / 1.0)  # 40 px of 30 px
    assert m["corr_y"] is None and m["slope_y"] is None  # the items do not vary in y
    assert m["centre_distance_px"] == pytest.approx(5) and m["baseline_distance_px"] == pytest.approx(15)
    assert m["theta_std"] == pytest.approx((1 / 3) / 6)
    flipped = _theta(0.5, torch.zeros(2), torch.zeros(2))
    flipped[:, 0, 0] = -0.5  # a mirror image: det = -0.25, the window's area still a quarter
    assert localisation_measures(flipped, centres, SIZE)["mean_abs_det"] == pytest.approx(0.25)


def test_half_following_and_mirrored_windows():
    centres = _centres()
    item = centres / 30 - 1
    half = localisation_measures(_theta(1.0, 0.5 * item[:, 0], 0.5 * item[:, 1]), centres, SIZE)
    assert half["slope_x"] == pytest.approx(0.5) and half["corr_x"] == pytest.approx(1)
    mirrored = localisation_measures(_theta(1.0, -item[:, 0], item[:, 1]), centres, SIZE)
    assert mirrored["corr_x"] == pytest.approx(-1) and mirrored["slope_x"] == pytest.approx(-1)
    assert mirrored["corr_y"] == pytest.approx(1)


def test_non_square_inputs_use_each_axis():
    centres = torch.tensor([[10.0, 5.0], [70.0, 35.0]])  # an 80 wide, 40 high input
    tx, ty = centres[:, 0] / 40 - 1, centres[:, 1] / 20 - 1
    m = localisation_measures(_theta(1.0, tx, ty), centres, (40, 80))
    assert m["centre_distance_px"] == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize(("theta", "centres", "message"), [
    (torch.zeros(3, 3, 3), torch.zeros(3, 2), "theta must be \\(N, 2, 3\\)"),
    (torch.zeros(3, 2, 3), torch.zeros(4, 2), "centres must be \\(N, 2\\) with N = 3"),
    (torch.zeros(0, 2, 3), torch.zeros(0, 2), "no images"),
])
def test_bad_input(theta, centres, message):
    with pytest.raises(ValueError, match=f"localisation_measures: {message}"):
        localisation_measures(theta, centres, SIZE)


def _cluttered(n=40):
    source = torch.randint(0, 256, (n, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    images = ClutteredImages(source, ClutterSpec(canvas=60, clutter=2), "test")
    return ImageData(images, torch.arange(n) % 10, [str(k) for k in range(10)], (0.1,), (0.3,))


def test_measured_on_an_st_cnn_over_cluttered_images():
    data = _cluttered()
    model = create("plaincnn", in_chans=1, input_size=60, transform="stn", transform_kwargs={"output_size": 30})
    centres = data.images.item_centres()
    m = measure_localisation(model, data, batch_size=16)
    assert m["mean_abs_det"] == pytest.approx(1) and m["theta_std"] == pytest.approx(0, abs=1e-6)
    assert m["centre_distance_px"] == pytest.approx(float((centres - 30).norm(dim=1).mean()), rel=1e-5)
    # a window that moves with the input: per-image theta, measured on every image in order
    with torch.no_grad():
        model.transform.fc_loc.weight.normal_(0, 0.5)
    m = measure_localisation(model, data, batch_size=16)
    x = (data.images[torch.arange(len(data))].float() / 255 - 0.1) / 0.3  # every image, in order, normalised
    with torch.no_grad():
        expected = localisation_measures(model.transform.attention_map(x), centres, SIZE)
    assert m["theta_std"] > 0 and m["corr_x"] is not None
    assert m == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert model.training  # left in the mode it was in


def test_measure_needs_a_transform_and_cluttered_data():
    data = _cluttered(8)
    with pytest.raises(ValueError, match="has no input transform"):
        measure_localisation(create("plaincnn", in_chans=1), data)
    plain = ImageData(torch.zeros(8, 1, 60, 60, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), ["a"], (0.0,),
                      (1.0,))
    with pytest.raises(ValueError, match="do not know where their items are"):
        measure_localisation(create("plaincnn", in_chans=1, transform="stn", input_size=60), plain)
