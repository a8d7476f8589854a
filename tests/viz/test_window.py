"""The spatial transformer's pictures: its sampling window on the input, and its output at its own size."""

import pytest
import torch

import visattn
from visattn.train.localisation import localisation_measures
from visattn.viz.maps import Picture
from visattn.viz.pictures import ModulePicture
from visattn.viz.render import display_scale
from visattn.viz.window import (
    draw_outline,
    sampling_window,
    transform_pictures,
    transformed_output,
    window_area,
    window_centre,
    window_outside,
)

RED = torch.tensor([255, 0, 0], dtype=torch.uint8)
SIZE = (40, 60)  # (H, W): non-square, so a swapped x / y or H / W shows


def theta_of(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_identity_window_is_the_whole_canvas():
    identity = theta_of([[1, 0, 0], [0, 1, 0]])
    corners = sampling_window(identity, SIZE)
    assert corners.shape == (4, 2)
    assert corners.tolist() == [[0, 0], [60, 0], [60, 40], [0, 40]]  # (x, y): x = 0 the left edge of pixel 0
    assert window_centre(identity, SIZE).tolist() == [30, 20] and window_area(identity).item() == 1
    assert not window_outside(corners, SIZE)


def test_scaled_and_translated_window_is_the_expected_pixel_box():
    theta = theta_of([[0.5, 0, 0.2], [0, 0.5, -0.3]])
    # x: (-0.5 + 0.2 + 1) / 2 * 60 = 21 .. (0.5 + 0.2 + 1) / 2 * 60 = 51; y: (-0.8 + 1) / 2 * 40 = 4 .. 24
    expected = torch.tensor([[21, 4], [51, 4], [51, 24], [21, 24]], dtype=torch.float64)
    assert torch.allclose(sampling_window(theta, SIZE), expected)
    assert torch.allclose(window_centre(theta, SIZE), torch.tensor([36.0, 14.0], dtype=torch.float64))
    assert window_area(theta).item() == pytest.approx(0.25)
    assert not window_outside(sampling_window(theta, SIZE), SIZE)
    # a batch, and theta's rows read as (x, y): x' = 0.5 y, y' = 0.25 x maps output corner (1, -1) to (-0.5, 0.25)
    batch = torch.stack([theta, theta_of([[0, 0.5, 0], [0.25, 0, 0]])])
    corners = sampling_window(batch, SIZE)
    assert corners.shape == (2, 4, 2)
    assert torch.allclose(corners[1, 1], torch.tensor([15.0, 25.0], dtype=torch.float64))
    assert window_area(batch).tolist() == pytest.approx([0.25, 0.125])


def test_window_centre_is_the_localisation_measures_convention():
    theta = torch.tensor([[[0.4, 0.1, -0.35], [0.0, 0.3, 0.6]]])
    centre = window_centre(theta, SIZE).float()  # [1, 2]
    measures = localisation_measures(theta, centre, SIZE)
    assert measures["centre_distance_px"] == pytest.approx(0, abs=1e-5)
    assert measures["mean_abs_det"] == pytest.approx(window_area(theta).item())


def test_window_outside_and_bad_input():
    theta = theta_of([[0.5, 0, 0.8], [0, 0.5, 0]])  # x from 0.3 to 1.3: its right part is off the canvas
    assert window_outside(sampling_window(theta, SIZE), SIZE)
    with pytest.raises(ValueError, match=r"theta must be \(\.\.\., 2, 3\)"):
        sampling_window(torch.zeros(3, 3), SIZE)
    with pytest.raises(ValueError, match="size must be"):
        sampling_window(theta, (0, 60))


def test_outline_pixels_are_on_the_window_edges_and_clipped():
    s = 3
    blank = torch.zeros(40 * s, 60 * s, 3, dtype=torch.uint8)
    box = sampling_window(theta_of([[0.5, 0, 0.2], [0, 0.5, -0.3]]), SIZE)  # x 21..51, y 4..24
    drawn = draw_outline(blank, box, s)
    red = (drawn == RED).all(-1)
    assert torch.equal(drawn[~red], blank[~red])  # only the outline is drawn
    for y, x in ((14 * s, 21 * s), (14 * s, 21 * s - 1), (14 * s, 51 * s), (4 * s, 36 * s), (24 * s - 1, 36 * s)):
        assert red[y, x], (y, x)  # picture pixels either side of each edge
    for y, x in ((14 * s, 36 * s), (14 * s, 10 * s), (30 * s, 36 * s), (14 * s, 21 * s + 3)):
        assert not red[y, x], (y, x)  # the centre, outside the box, and inside next to an edge
    assert int(red[14 * s].sum()) == 4  # one row through the box crosses its two vertical edges, 2 pixels each
    # a window partly outside the canvas: the visible part is drawn, nothing wraps round
    off = draw_outline(blank, sampling_window(theta_of([[0.5, 0, 0.8], [0, 0.5, 0]]), SIZE), s)
    off_red = (off == RED).all(-1)
    assert off.shape == blank.shape and off_red[20 * s, 39 * s] and not off_red[:, : 38 * s].any()


def stn(**kwargs):
    module = visattn.create("stn", 1, **kwargs).eval()
    with torch.no_grad():  # a theta that depends on the image and moves the window off centre
        module.fc_loc.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
        module.fc_loc.bias.copy_(torch.tensor([0.45, 0.05, 0.3, -0.05, 0.5, -0.2]))
    return module


@pytest.mark.parametrize("kwargs", [{"output_size": (14, 10)}, {"output_size": 30, "mode": "nearest",
                                                                "padding_mode": "border"}, {}])
def test_transformed_output_is_the_modules_forward(kwargs):
    module = stn(**kwargs)
    x = torch.randn(2, 1, *SIZE, generator=torch.Generator().manual_seed(1))
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):  # float32: grid rounding x pixel steps
        module, x = module.to(dtype), x.to(dtype)
        with torch.no_grad():
            theta = module.attention_map(x)
            expected = module(x)
        assert theta.std(0).abs().max() > 0  # theta differs between the two images
        got = transformed_output(module, x, theta)
        assert got.shape == expected.shape == (2, 1, *(module.output_size or SIZE))
        assert torch.allclose(got, expected, atol=atol, rtol=0), float((got - expected).abs().max())


def picture_of(module, x, mean=0.5, std=0.25):
    """What ``module_pictures`` keeps for a transformer that received ``(image / 255 - mean) / std``."""
    normalised = (x.float() / 255 - mean) / std
    with torch.no_grad():
        theta, output = module.attention_map(normalised), module(normalised)
    return ModulePicture("transform", "stn", "attention_map()", Picture("transform", theta), module,
                         normalised, output)


def test_transform_pictures_draw_the_window_and_the_output_at_its_size():
    module = stn(output_size=(14, 10))
    images = torch.randint(0, 256, (2, 1, *SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    item = picture_of(module, images)
    s = display_scale(*SIZE)
    (name1, window, caption1), (name2, output, caption2) = transform_pictures(item, 1, images[1], mean=(0.5,),
                                                                              std=(0.25,))
    assert (name1, name2) == ("sampling window", "output")
    theta = item.picture.data[1]
    cx, cy = window_centre(theta, SIZE).tolist()
    assert f"centre (x, y) = ({cx:.1f}, {cy:.1f}) px" in caption1 and "14x10 output on the 40x60 input" in caption1
    assert f"area {window_area(theta).item():.3g} of the input's" in caption1 and "theta = [" in caption1
    assert "OUTSIDE" not in caption1
    # the window picture: the input enlarged, red on the window's edges only
    red = (window == RED).all(-1)
    corners = sampling_window(theta, SIZE)
    top_left = (corners[0] * s).round().long().tolist()
    assert window.shape == (40 * s, 60 * s, 3) and red.any()
    assert red[top_left[1], top_left[0]] and not red[int(cy * s), int(cx * s)]
    plain = images[1, 0].repeat_interleave(s, 0).repeat_interleave(s, 1)
    assert torch.equal(window[~red][:, 0], plain[~red])
    # the output picture: the module's 14x10 output for image 1, de-normalised, each pixel s x s
    assert "the transformer's 14x10 output" in caption2 and "de-normalised" in caption2
    assert output.shape == (14 * s, 10 * s, 3)
    seen = ((item.module_output[1, 0] * 0.25 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(output[::s, ::s, 0], seen)


def test_transform_pictures_say_when_the_window_leaves_the_input():
    module = stn(output_size=20)
    with torch.no_grad():
        module.fc_loc.weight.zero_()
        module.fc_loc.bias.copy_(torch.tensor([0.5, 0, 0.8, 0, 0.5, 0]))  # the right quarter of the window is off
    images = torch.full((1, 1, *SIZE), 200, dtype=torch.uint8)
    item = picture_of(module, images)
    (_, window, caption1), (_, output, caption2) = transform_pictures(item, 0, images[0], mean=(0.5,), std=(0.25,))
    assert "PART OF THE WINDOW LIES OUTSIDE THE INPUT" in caption1 and "reads zeros there" in caption1
    assert "the transformer reads zeros of the normalised input, drawn as the data's mean colour" in caption2
    s = display_scale(*SIZE)
    assert output[0, -1].tolist() == [128, 128, 128]  # its last column reads the normalised zero: the mean, 0.5
    assert output[0, 0].tolist() == [200, 200, 200]
    # without the normalisation the picture is the image itself sampled as the module samples, and says so
    (_, _, caption1), (_, raw, caption2) = transform_pictures(item, 0, images[0])
    assert "the input image sampled as the transformer samples its own input" in caption2
    expected = transformed_output(module, images[:1].float() / 255, item.picture.data[:1])[0, 0]
    assert torch.equal(raw[::s, ::s, 0], (expected * 255).round().to(torch.uint8))
    assert raw[0, -1].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="expected a 'transform' picture"):
        transform_pictures(ModulePicture("a", "se", "gate", Picture("channel", torch.ones(1, 4)), module), 0,
                           images[0])
