"""Spatial transformer against the paper's grid generator and bilinear sampler (eqs. 1, 5), float64 loops."""

import math

import pytest
import torch
import torch.nn.functional as F

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
