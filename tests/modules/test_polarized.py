"""Polarized self-attention against the paper's branch equations, in einsum (float64)."""

import pytest
import torch

import visattn
from tests._build import randomize_
from visattn.modules.polarized import PolarizedChannelAttention, PolarizedSelfAttention, PolarizedSpatialAttention


def _w(conv):
    return conv.weight[:, :, 0, 0]


def _b(conv, n):
    return conv.bias if conv.bias is not None else torch.zeros(n, dtype=conv.weight.dtype)


def reference_channel(x, ch: PolarizedChannelAttention):
    """A_ch = sigmoid(LN(W_z(sum_j W_v(x)_j softmax_j(W_q(x))))), softmax over the HW positions j."""
    b, c, h, w = x.shape
    m = _w(ch.wv).shape[0]
    q = torch.einsum("oc,bchw->bhw", _w(ch.wq), x) + _b(ch.wq, 1)
    q = torch.exp(q - q.amax(dim=(1, 2), keepdim=True))
    q = q / q.sum(dim=(1, 2), keepdim=True)  # softmax over all H * W positions
    v = torch.einsum("mc,bchw->bmhw", _w(ch.wv), x) + _b(ch.wv, m)[:, None, None]
    z = torch.einsum("bmhw,bhw->bm", v, q)  # [B, C/2]
    z = torch.einsum("cm,bm->bc", _w(ch.wz), z) + _b(ch.wz, c)  # [B, C]
    if isinstance(ch.norm, torch.nn.LayerNorm):
        mu, var = z.mean(1, keepdim=True), z.var(1, unbiased=False, keepdim=True)
        z = (z - mu) / torch.sqrt(var + ch.norm.eps) * ch.norm.weight + ch.norm.bias
    return torch.sigmoid(z)[:, :, None, None]


def reference_spatial(x, sp: PolarizedSpatialAttention):
    """A_sp = sigmoid(sum_m softmax_m(GAP(W_q(x)))_m W_v(x)_m), softmax over the C/2 channels m."""
    m = _w(sp.wv).shape[0]
    q = torch.einsum("mc,bchw->bm", _w(sp.wq), x) / (x.shape[2] * x.shape[3]) + _b(sp.wq, m)  # GAP(W_q x)
    q = torch.exp(q - q.amax(1, keepdim=True))
    q = q / q.sum(1, keepdim=True)
    v = torch.einsum("mc,bchw->bmhw", _w(sp.wv), x) + _b(sp.wv, m)[:, None, None]
    return torch.sigmoid(torch.einsum("bm,bmhw->bhw", q, v))[:, None]


def reference_psa(x, psa: PolarizedSelfAttention):
    if psa.layout == "parallel":
        return x * reference_channel(x, psa.channel) + x * reference_spatial(x, psa.spatial)
    z = x * reference_channel(x, psa.channel)
    return z * reference_spatial(z, psa.spatial)


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
@pytest.mark.parametrize("channel_norm", [True, False])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_paper_equations(layout, channel_norm, bias):
    m = randomize_(PolarizedSelfAttention(10, layout=layout, channel_norm=channel_norm, bias=bias), std=0.5)
    m = m.double()
    x = torch.randn(2, 10, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_psa(x, m))


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (4, 3)])
def test_odd_channels_and_small_maps(size):
    m = randomize_(PolarizedSelfAttention(7, layout="sequential"), std=0.5).double()
    assert m.channel.wv.out_channels == 3 and m.spatial.wq.out_channels == 3
    x = torch.randn(1, 7, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_psa(x, m))


def test_softmax_axes():
    """Each branch's context is a convex combination over the axis its softmax runs on.

    Channel branch: before W_z, each of the C/2 values is a weighted mean of W_v(x) over the positions.
    Spatial branch: before the sigmoid, each position's value is a weighted mean of W_v(x) over the C/2 channels
    (the official code's softmax over positions would not keep it in that range).
    """
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    ch = randomize_(PolarizedChannelAttention(8, channel_norm=False), std=0.5).double()
    with torch.no_grad():
        ch.wz.weight.copy_(torch.cat((torch.eye(4), torch.eye(4)))[:, :, None, None])  # W_z = [I; I]
    context = torch.logit(ch.attention_map(x)[:, :4, 0, 0])  # [B, C/2]
    v = ch.wv(x).flatten(2)  # [B, C/2, HW]
    assert (context <= v.amax(2) + 1e-9).all() and (context >= v.amin(2) - 1e-9).all()
    assert not torch.allclose(context, v.mean(2))  # weighted, not a plain mean

    sp = randomize_(PolarizedSpatialAttention(8), std=0.5).double()
    logits = torch.logit(sp.attention_map(x))[:, 0]  # [B, H, W]
    v = sp.wv(x)  # [B, C/2, H, W]
    assert (logits <= v.amax(1) + 1e-9).all() and (logits >= v.amin(1) - 1e-9).all()


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
def test_attention_map_and_gates(layout):
    m = randomize_(PolarizedSelfAttention(8, layout=layout), std=0.5).double()
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    shapes = {}
    m.channel.gate.register_forward_hook(lambda mod, i, o: shapes.__setitem__("channel", tuple(o.shape)))
    m.spatial.gate.register_forward_hook(lambda mod, i, o: shapes.__setitem__("spatial", tuple(o.shape)))
    y = m(x)
    assert shapes == {"channel": (2, 8, 1, 1), "spatial": (2, 1, 4, 5)}
    a_ch, a_sp = m.attention_map(x)
    expected = x * a_ch * a_sp if layout == "sequential" else x * a_ch + x * a_sp
    torch.testing.assert_close(y, expected)


def test_branches_alone():
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    ch = randomize_(PolarizedChannelAttention(8), std=0.5).double()
    sp = randomize_(PolarizedSpatialAttention(8), std=0.5).double()
    torch.testing.assert_close(ch(x), x * reference_channel(x, ch))
    torch.testing.assert_close(sp(x), x * reference_spatial(x, sp))


def test_parameter_counts():
    c = 64
    branch_ch = c + 2 * c * (c // 2)
    branch_sp = 2 * c * (c // 2)
    assert sum(p.numel() for p in visattn.create("polarized", c).parameters()) == branch_ch + 2 * c + branch_sp
    assert sum(p.numel() for p in PolarizedSelfAttention(c, channel_norm=False).parameters()) == branch_ch + branch_sp
    assert isinstance(PolarizedSelfAttention(c, channel_norm=False).channel.norm, torch.nn.Identity)


def test_bfloat16_autocast_close_to_float32():
    m = randomize_(PolarizedSelfAttention(32), std=0.2).eval()
    x = torch.randn(2, 32, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    torch.testing.assert_close(y.float(), m(x), atol=5e-2, rtol=5e-2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="PolarizedSelfAttention: layout"):
        PolarizedSelfAttention(64, layout="serial")
    with pytest.raises(ValueError, match="PolarizedSelfAttention: channels"):
        PolarizedSelfAttention(1)
    with pytest.raises(ValueError, match="PolarizedChannelAttention: channels"):
        PolarizedChannelAttention(1)
    with pytest.raises(TypeError, match="channel_norm"):
        visattn.create("polarized", 64, channel_nrom=False)
