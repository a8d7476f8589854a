"""Coordinate attention against the paper's equations (float64, loops and einsum) and timm's CoordAttn."""

import pytest
import torch

import visattn
from tests._build import randomize_
from visattn.modules.coord import CoordAttention


def reference_coord(x, m: CoordAttention, training=False):
    """Eqs. 4-9 of Hou et al.: strip pools, shared F1 + BN + h_swish, split, F_h / F_w, sigmoids, product."""
    b, c, h, w = x.shape
    z_h = sum(x[:, :, :, i] for i in range(w)) / w  # [B, C, H]: mean over W, as a loop
    z_w = sum(x[:, :, j, :] for j in range(h)) / h  # [B, C, W]: mean over H
    zc = torch.cat((z_h, z_w), dim=2)  # [B, C, H + W]
    f = torch.einsum("mc,bcl->bml", m.conv1.weight[:, :, 0, 0], zc) + m.conv1.bias[None, :, None]
    if training:
        mean, var = f.mean(dim=(0, 2)), f.var(dim=(0, 2), unbiased=False)
    else:
        mean, var = m.bn1.running_mean, m.bn1.running_var
    f = (f - mean[:, None]) / torch.sqrt(var[:, None] + m.bn1.eps) * m.bn1.weight[:, None] + m.bn1.bias[:, None]
    f = f * torch.clamp(f + 3, 0, 6) / 6  # h_swish of the official code
    f_h, f_w = f[:, :, :h], f[:, :, h:]
    g_h = torch.sigmoid(torch.einsum("cm,bmh->bch", m.conv_h.weight[:, :, 0, 0], f_h) + m.conv_h.bias[:, None])
    g_w = torch.sigmoid(torch.einsum("cm,bmw->bcw", m.conv_w.weight[:, :, 0, 0], f_w) + m.conv_w.bias[:, None])
    return torch.einsum("bchw,bch,bcw->bchw", x, g_h, g_w)


def _randomized(channels=16, **kw):
    m = randomize_(CoordAttention(channels, **kw), std=0.5).double()
    m.bn1.running_mean.uniform_(-0.5, 0.5)
    m.bn1.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize("size", [(5, 9), (1, 1), (8, 3)])
def test_matches_paper_equations_eval(size):
    m = _randomized(16).eval()
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_coord(x, m))


def test_matches_paper_equations_train():
    m = _randomized(16).train()
    x = torch.randn(3, 16, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_coord(x, m, training=True))


def test_middle_width():
    assert CoordAttention(64).conv1.out_channels == 8  # max(8, 64 // 32)
    assert CoordAttention(512).conv1.out_channels == 16
    assert CoordAttention(100).conv1.out_channels == 8
    assert CoordAttention(1000).conv1.out_channels == 31  # floor, no rounding to 8
    assert CoordAttention(64, reduction=4).conv1.out_channels == 16
    assert CoordAttention(64, rd_channels=5).conv1.out_channels == 5
    assert CoordAttention(16, min_channels=1, reduction=8).conv1.out_channels == 2
    assert sum(p.numel() for p in visattn.create("coord", 64).parameters()) == 520 + 16 + 2 * (8 * 64 + 64)


def test_attention_map_is_product_of_directional_gates():
    m = _randomized(16).eval()
    x = torch.randn(2, 16, 5, 9, dtype=torch.float64)
    shapes = []
    m.gate.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape)))
    a = m.attention_map(x)
    assert shapes == [(2, 16, 5, 1), (2, 16, 1, 9)]
    torch.testing.assert_close(m(x), x * a)


@pytest.mark.parametrize("train", [False, True])
def test_equals_timm_coord_attn(train):
    timm_layers = pytest.importorskip("timm.layers.coord_attn")
    ref = timm_layers.CoordAttn(64, rd_channels=8, bias=True, act_layer=torch.nn.Hardswish)
    randomize_(ref, std=0.3)
    ref.bn1.running_var.uniform_(0.5, 2.0)
    m = CoordAttention(64)
    m.load_state_dict(ref.state_dict())  # same names: conv1, bn1, conv_h, conv_w
    m.train(train)
    ref.train(train)
    x = torch.randn(2, 64, 9, 11)
    torch.testing.assert_close(m(x), ref(x))
    if train:
        torch.testing.assert_close(m.bn1.running_mean, ref.bn1.running_mean)


def test_bad_arguments():
    with pytest.raises(ValueError, match="CoordAttention: reduction"):
        CoordAttention(64, reduction=0)
    with pytest.raises(ValueError, match="CoordAttention: the middle width"):
        CoordAttention(64, rd_channels=0)
    with pytest.raises(ValueError, match="activation"):
        CoordAttention(64, act_layer="hswishh")
    with pytest.raises(ValueError, match="norm"):
        CoordAttention(64, norm_layer="batchh")
    with pytest.raises(TypeError, match="reduction"):
        visattn.create("coord", 64, reductoin=8)
