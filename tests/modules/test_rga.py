"""RGA-S and RGA-C against the paper's equations written with einsum (float64, eval-mode BN)."""

import pytest
import torch

import visattn
from tests._build import randomize_
from tests._reference import bn_eval
from visattn.modules.rga import RelationAwareChannelAttention, RelationAwareSpatialAttention


def _cbr(t, seq):
    """conv1x1 (no bias) + BN + ReLU over dim 1 of t, t: (B, Cin, ...)."""
    return torch.relu(bn_eval(torch.einsum("oc,bc...->bo...", seq[0].weight[:, :, 0, 0], t), seq[1]))


def _w(t, mlp):
    """W: conv1x1 + BN + ReLU, conv1x1 to one channel, BN."""
    hidden = _cbr(t, mlp[0])
    return bn_eval(torch.einsum("oc,bc...->bo...", mlp[1].weight[:, :, 0, 0], hidden), mlp[2])


def _joint(rel):
    """Node i's relation feature [r(i, :); r(:, i)], stacked over nodes: (B, 2N, N)."""
    n = rel.shape[1]
    return torch.stack([torch.cat((rel[:, i, :], rel[:, :, i]), dim=1) for i in range(n)], dim=2)


def reference_rga_s(x, m):
    b, c, h, w = x.shape
    theta, phi = _cbr(x, m.theta).flatten(2), _cbr(x, m.phi).flatten(2)  # [B, C', N]
    rel = torch.einsum("bci,bcj->bij", theta, phi)  # r_ij = theta(x_i) . phi(x_j)
    joint = _cbr(_joint(rel), m.gg)  # [B, N/8, N]
    own = _cbr(x, m.gx).flatten(2).mean(1, keepdim=True)  # [B, 1, N]
    a = torch.sigmoid(_w(torch.cat((own, joint), dim=1), m.W))  # [B, 1, N]
    return x * a.view(b, 1, h, w)


def reference_rga_c(x, m):
    b, c, h, w = x.shape
    xs = x.flatten(2)  # [B, C, N]: channel c is a node with the N spatial values as its feature
    theta = _cbr(xs.transpose(1, 2), m.theta)  # [B, N', C]
    phi = _cbr(xs.transpose(1, 2), m.phi)
    rel = torch.einsum("boc,bod->bcd", theta, phi)  # r_cd = theta(x_c) . phi(x_d)
    joint = _cbr(_joint(rel), m.gg)  # [B, C/8, C]
    own = _cbr(xs.transpose(1, 2), m.gx).mean(1, keepdim=True)  # [B, 1, C]
    a = torch.sigmoid(_w(torch.cat((own, joint), dim=1), m.W))  # [B, 1, C]
    return x * a.view(b, c, 1, 1)


def _module(cls, channels, size, **kw):
    m = randomize_(cls(channels, feature_size=size, **kw), std=0.3).double().eval()
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize("size", [(4, 6), (1, 1), (3, 1), (8, 8)])
def test_spatial_matches_equations(size):
    m = _module(RelationAwareSpatialAttention, 32, size)
    x = torch.randn(2, 32, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_rga_s(x, m))


@pytest.mark.parametrize("size", [(4, 6), (1, 1), (3, 1), (8, 8)])
def test_channel_matches_equations(size):
    m = _module(RelationAwareChannelAttention, 32, size)
    x = torch.randn(2, 32, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_rga_c(x, m))


def test_attention_maps():
    s = _module(RelationAwareSpatialAttention, 16, (3, 5))
    c = _module(RelationAwareChannelAttention, 16, (3, 5))
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    assert s.attention_map(x).shape == (2, 1, 3, 5) and c.attention_map(x).shape == (2, 16, 1, 1)
    torch.testing.assert_close(x * s.attention_map(x), reference_rga_s(x, s))
    torch.testing.assert_close(x * c.attention_map(x), reference_rga_c(x, c))


def test_widths_match_official_rga_module():
    # official RGA_Module(256, 16 * 8): inter_channel = 32, inter_spatial = 16, W widths 17 // 8 and 33 // 8
    s = RelationAwareSpatialAttention(256, feature_size=(16, 8))
    assert s.theta[0].out_channels == 32 and s.gg[0].in_channels == 256 and s.gg[0].out_channels == 16
    assert s.W[0][0].in_channels == 17 and s.W[0][0].out_channels == 2
    c = RelationAwareChannelAttention(256, feature_size=(16, 8))
    assert c.theta[0].in_channels == 128 and c.theta[0].out_channels == 16
    assert c.gg[0].in_channels == 512 and c.gg[0].out_channels == 32
    assert c.W[0][0].in_channels == 33 and c.W[0][0].out_channels == 4
    n_s = 3 * (256 * 32 + 64) + (256 * 16 + 32) + (17 * 2 + 4) + (2 + 2)
    assert sum(p.numel() for p in s.parameters()) == n_s
    assert visattn.info("rga_s").size_bound and visattn.info("rga_c").size_bound


@pytest.mark.parametrize("cls", [RelationAwareSpatialAttention, RelationAwareChannelAttention])
def test_errors(cls):
    name = cls.__name__
    m = cls(32, feature_size=(6, 4))
    with pytest.raises(ValueError, match=rf"{name}: built for feature_size=\(6, 4\).*\(2, 32, 4, 6\)"):
        m(torch.randn(2, 32, 4, 6))
    with pytest.raises(ValueError, match=name):
        m(torch.randn(2, 16, 6, 4))
    with pytest.raises(ValueError, match=f"{name}.*feature_size"):
        cls(32, feature_size=(6,))
    with pytest.raises(TypeError):
        cls(32)
