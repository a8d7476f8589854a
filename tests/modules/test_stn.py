"""Spatial transformer against the paper's grid generator and bilinear sampler (eqs. 1, 5), float64 loops."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visattn
from tests._build import randomize_
from visattn.modules.stn import SpatialTransformer, _affine_grid


def reference_warp(u, theta):
    """Eq. 1 on the output's pixel centres in normalised coordinates, then eq. 5 (bilinear kernel) in pixel units
    with zeros outside the input, one output position at a time."""
    b, c, h, w = u.shape
    theta = theta.detach().tolist()
    v = torch.zeros_like(u)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                xt, yt = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1  # target pixel centre in [-1, 1]
                xs = theta[n][0][0] * xt + theta[n][0][1] * yt + theta[n][0][2]
                ys = theta[n][1][0] * xt + theta[n][1][1] * yt + theta[n][1][2]
                px, py = ((xs + 1) * w - 1) / 2, ((ys + 1) * h - 1) / 2  # source in pixel units
                for m_ in range(math.floor(px), math.floor(px) + 2):
                    for n_ in range(math.floor(py), math.floor(py) + 2):
                        if 0 <= m_ < w and 0 <= n_ < h:
                            k = max(0.0, 1 - abs(px - m_)) * max(0.0, 1 - abs(py - n_))
                            v[n, :, i, j] += u[n, :, n_, m_] * k
    return v


@pytest.mark.parametrize("size", [(5, 7), (1, 1), (16, 3)])
def test_starts_as_the_identity(size):
    m = SpatialTransformer(8).double()
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    theta = m.attention_map(x)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=torch.float64).expand(2, 2, 3))
    torch.testing.assert_close(m(x), x, atol=1e-12, rtol=0)  # align_corners=False: pixel centres map to themselves


def test_fixed_affine_warp_matches_bilinear_loops():
    m = SpatialTransformer(3).double()
    a, s = 0.4, 0.8  # rotation, scale, translation: theta = [s R | t]
    with torch.no_grad():
        m.fc_loc.bias.copy_(torch.tensor([s * math.cos(a), -s * math.sin(a), 0.15,
                                          s * math.sin(a), s * math.cos(a), -0.3], dtype=torch.float64))
    x = torch.randn(2, 3, 6, 9, dtype=torch.float64)
    theta = m.attention_map(x)
    torch.testing.assert_close(m(x), reference_warp(x, theta))


def test_predicted_theta_warp_matches_bilinear_loops():
    m = randomize_(SpatialTransformer(4, loc_channels=6, loc_hidden=5, pool_size=2), std=0.1).double()
    x = torch.randn(2, 4, 7, 5, dtype=torch.float64)
    theta = m.attention_map(x)
    assert theta.shape == (2, 2, 3) and not torch.allclose(theta[0], theta[1])
    torch.testing.assert_close(m(x), reference_warp(x, theta))


def test_grid_equals_affine_grid():
    theta = torch.randn(3, 2, 3, dtype=torch.float64)
    for h, w in [(1, 1), (4, 9), (8, 3)]:
        ref = F.affine_grid(theta, [3, 1, h, w], align_corners=False)
        torch.testing.assert_close(_affine_grid(theta, h, w), ref)


def test_gradient_reaches_the_zero_initialised_layer():
    m = SpatialTransformer(4)
    x = torch.randn(2, 4, 8, 8)
    (m(x) * torch.randn(2, 4, 8, 8)).sum().backward()
    assert m.fc_loc.weight.grad.abs().sum() > 0 and m.fc_loc.bias.grad.abs().sum() > 0


def test_parameter_count_and_bad_arguments():
    m = visattn.create("stn", 64)
    assert sum(p.numel() for p in m.parameters()) == (64 * 32 * 9 + 32) + (32 * 32 * 9 + 32) + (512 * 32 + 32) + 198
    with pytest.raises(ValueError, match="SpatialTransformer.*padding_mode"):
        SpatialTransformer(8, padding_mode="wrap")
    with pytest.raises(ValueError, match="SpatialTransformer.*mode"):
        SpatialTransformer(8, mode="bicubic")


# ------------------------------------------------------------------- the paper's options: output size, loc. net


def _paper(**kw):
    return SpatialTransformer(1, loc_net="paper", input_size=60, **kw)


@pytest.mark.parametrize("loc_net", ["conv", "paper"])
@pytest.mark.parametrize("output_size", [None, 60, (30, 30), (20, 20), (17, 23), (1, 1)])
def test_identity_at_initialisation_at_every_output_size(loc_net, output_size):
    """Identity theta: the output is the whole input, resampled bilinearly at the output's pixel centres."""
    kw = {"input_size": 60} if loc_net == "paper" else {}
    m = SpatialTransformer(1, loc_net=loc_net, output_size=output_size, **kw).double()
    x = torch.randn(2, 1, 60, 60, dtype=torch.float64)
    torch.testing.assert_close(m.attention_map(x), torch.tensor([[1.0, 0, 0], [0, 1, 0]],
                                                                dtype=torch.float64).expand(2, 2, 3))
    h, w = (60, 60) if output_size is None else (output_size,) * 2 if isinstance(output_size, int) else output_size
    y = m(x)
    assert y.shape == (2, 1, h, w)
    torch.testing.assert_close(y, F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("output_size", [(30, 30), (11, 7)])
def test_smaller_output_samples_the_affine_grid(output_size):
    m = randomize_(SpatialTransformer(3, loc_channels=6, loc_hidden=5, pool_size=2, output_size=output_size),
                   std=0.1).double()
    x = torch.randn(2, 3, 24, 18, dtype=torch.float64)
    theta = m.attention_map(x)
    grid = F.affine_grid(theta, [2, 3, *output_size], align_corners=False)
    torch.testing.assert_close(m(x), F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                                   align_corners=False))
    assert m(x).shape == (2, 3, *output_size)


def test_paper_localisation_net_layout():
    m = _paper()
    kinds = [type(layer).__name__ for layer in m.localization]
    assert kinds == ["MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Flatten", "Linear", "ReLU"]
    convs = [layer for layer in m.localization if isinstance(layer, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [(20, (5, 5), (0, 0))] * 2
    # 60 -> pool 30 -> conv 26 -> pool 13 -> conv 9: the FC reads 20 x 9 x 9 values, 50 units, then 6
    assert m.localization[-2].in_features == 20 * 9 * 9 and m.localization[-2].out_features == 50
    assert m.fc_loc.in_features == 50 and m.fc_loc.out_features == 6
    assert sum(p.numel() for p in m.parameters()) == (25 * 20 + 20) + (500 * 20 + 20) + (1620 * 50 + 50) + 306
    wide = SpatialTransformer(2, loc_net="paper", input_size=(43, 53), loc_channels=8, loc_hidden=16)  # 4x7 (floor)
    assert wide.localization[-2].in_features == 8 * 4 * 7 and wide(torch.randn(1, 2, 43, 53)).shape == (1, 2, 43, 53)


def test_paper_net_learns_per_image_theta():
    m = _paper()
    x = torch.randn(3, 1, 60, 60)
    (m(x) * torch.randn(3, 1, 60, 60)).sum().backward()
    assert m.fc_loc.weight.grad.abs().sum() > 0
    with torch.no_grad():
        m.fc_loc.weight.normal_(0, 0.1)
    theta = m.attention_map(x)
    assert not torch.allclose(theta[0], theta[1])


def test_created_by_key_with_the_paper_options():
    m = visattn.create("stn", 1, loc_net="paper", input_size=(60, 60), output_size=(30, 30))
    assert m(torch.randn(2, 1, 60, 60)).shape == (2, 1, 30, 30)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"loc_net": "lasagne"}, "loc_net must be one of"),
    ({"loc_net": "paper"}, "loc_net='paper' is built for one input size; pass input_size"),
    ({"loc_net": "paper", "input_size": 60, "pool_size": 4}, "loc_net='paper' has no pool_size"),
    ({"loc_net": "paper", "input_size": 20}, "needs inputs of at least 28 pixels"),
    ({"input_size": 60}, "loc_net='conv' works at any input size"),
    ({"output_size": 0}, "output_size must be a whole number >= 1, got 0"),
    ({"output_size": (30, 30, 1)}, "output_size must be \\(h, w\\) or one int"),
    ({"output_size": 2.5}, "output_size must be \\(h, w\\) or one int"),
    ({"output_size": (30.5, 30)}, "output_size must be a whole number"),
    ({"loc_channels": 2.5}, "loc_channels must be a whole number"),
    ({"loc_hidden": True}, "loc_hidden must be a whole number"),
])
def test_bad_paper_options(kwargs, message):
    with pytest.raises(ValueError, match=f"SpatialTransformer: .*{message}"):
        SpatialTransformer(1, **kwargs)


def test_paper_net_refuses_another_input_size():
    with pytest.raises(ValueError, match="SpatialTransformer: loc_net='paper' was built for 60x60 inputs, got 64x60"):
        _paper()(torch.randn(1, 1, 64, 60))
