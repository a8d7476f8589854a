"""Criss-cross attention against a per-position loop over each position's column and row (float64)."""

import pytest
import torch

import visattn
from tests._build import randomize_
from visattn.modules.criss_cross import CrissCrossAttention
from visattn.ops.criss_cross import criss_cross_attention


def _conv1x1(conv, x):
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias[None, :, None, None]


def reference_step(x, m):
    """One pass of Huang et al. eqs. 1-2: for u = (i, j), keys / values are the column positions (g, j), g != i,
    and the row positions (i, g) (u itself once); softmax over those H + W - 1; H'_u = gamma * sum + H_u.

    Returns the output and the weights in the module's (B, H + W, H, W) layout (column part first, self 0).
    """
    b, c, h, w = x.shape
    q, k, v = _conv1x1(m.query_conv, x), _conv1x1(m.key_conv, x), _conv1x1(m.value_conv, x)
    rows, maps = [], []
    for i in range(h):
        cols, col_maps = [], []
        for j in range(w):
            keys = [(g, j) for g in range(h) if g != i] + [(i, g) for g in range(w)]
            energy = torch.stack([(q[:, :, i, j] * k[:, :, p, r]).sum(1) for p, r in keys], dim=1)  # [B, H+W-1]
            a = torch.softmax(energy, dim=1)
            cols.append(sum(a[:, n, None] * v[:, :, p, r] for n, (p, r) in enumerate(keys)))  # [B, C]
            layout = torch.zeros(b, h + w, dtype=x.dtype)
            for n, (p, r) in enumerate(keys):
                layout[:, p if n < h - 1 else h + r] = a[:, n].detach()
            col_maps.append(layout)
        rows.append(torch.stack(cols, dim=-1))  # [B, C, W]
        maps.append(torch.stack(col_maps, dim=-1))  # [B, H + W, W]
    out = torch.stack(rows, dim=-2)  # [B, C, H, W]
    return x + m.gamma * out, torch.stack(maps, dim=-2)


def _module(channels=16, **kw):
    return randomize_(CrissCrossAttention(channels, **kw), std=0.3).double()


@pytest.mark.parametrize("size", [(5, 6), (1, 4), (3, 1), (1, 1)])
@pytest.mark.parametrize("recurrence", [1, 2])
def test_matches_loop_reference_forward_and_input_grad(size, recurrence):
    m = _module(recurrence=recurrence)
    x = torch.randn(2, 16, *size, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    ref = x_ref
    for _ in range(recurrence):  # R passes of the same weights
        ref = reference_step(ref, m)[0]
    out = m(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_attention_map_layout():
    m = _module()
    x = torch.randn(2, 16, 4, 7, dtype=torch.float64)
    amap = m.attention_map(x)
    assert amap.shape == (2, 4 + 7, 4, 7)
    torch.testing.assert_close(amap, reference_step(x, m)[1])
    torch.testing.assert_close(amap.sum(1), torch.ones(2, 4, 7, dtype=torch.float64))
    for i in range(4):  # the self position is counted once, in the row part
        assert (amap[:, i, i, :] == 0).all()


def test_recurrence_shares_weights():
    m1, m2 = CrissCrossAttention(16, recurrence=1), CrissCrossAttention(16, recurrence=2)
    assert sum(p.numel() for p in m1.parameters()) == sum(p.numel() for p in m2.parameters())
    m2.load_state_dict(randomize_(m1).state_dict())
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(m2(x), m1(m1(x)))


def test_gamma_zero_init_is_identity_and_widths():
    m = CrissCrossAttention(64)
    x = torch.randn(1, 64, 6, 9)
    assert torch.equal(m(x), x)
    assert m.query_conv.out_channels == m.key_conv.out_channels == 8 and m.value_conv.out_channels == 64
    n = sum(p.numel() for p in visattn.create("cc", 64).parameters())
    assert n == 2 * (64 * 8 + 8) + 64 * 64 + 64 + 1
    assert CrissCrossAttention(64, rd_channels=5).key_conv.out_channels == 5
    assert visattn.info("cc").complexity == "O(HW(H+W))"


@pytest.mark.parametrize("channels", [1, 4, 7])
def test_below_8_channels_query_key_width_is_1(channels):
    """The official query / key convs have in_dim // 8 = 0 outputs below C = 8 and fail; visattn uses width 1."""
    m = _module(channels)
    assert m.query_conv.out_channels == m.key_conv.out_channels == 1 and m.value_conv.out_channels == channels
    x = torch.randn(2, channels, 4, 5, dtype=torch.float64)
    ref = x
    for _ in range(m.recurrence):  # the default R = 2 passes of the same weights
        ref = reference_step(ref, m)[0]
    torch.testing.assert_close(m(x), ref)


def test_op_low_precision_softmax_in_float32():
    q, k = torch.randn(2, 5, 7, 4).bfloat16(), torch.randn(2, 5, 7, 4).bfloat16()
    v = torch.randn(2, 5, 7, 8).bfloat16()
    out, attn = criss_cross_attention(q, k, v)
    assert attn.dtype == torch.float32 and out.dtype == torch.bfloat16
    ref, _ = criss_cross_attention(q.double(), k.double(), v.double())
    torch.testing.assert_close(out.double(), ref, atol=5e-2, rtol=5e-2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="CrissCrossAttention"):
        CrissCrossAttention(64, recurrence=0)
    with pytest.raises(ValueError, match="CrissCrossAttention.*got \\(2, 32, 5, 5\\)"):
        CrissCrossAttention(64)(torch.randn(2, 32, 5, 5))


@pytest.mark.gpu
def test_cuda_matches_cpu_cc_and_psa():
    from visattn.modules.psanet import PointwiseSpatialAttention

    for m in (randomize_(CrissCrossAttention(32)), randomize_(PointwiseSpatialAttention(32, feature_size=(9, 12)))):
        m = m.eval()
        x = torch.randn(2, 32, 9, 12, requires_grad=True)
        y = m(x)
        y.square().sum().backward()
        m_cuda = m.cuda()
        x_cuda = x.detach().cuda().requires_grad_()
        y_cuda = m_cuda(x_cuda)
        y_cuda.square().sum().backward()
        torch.testing.assert_close(y_cuda.cpu(), y.detach(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(x_cuda.grad.cpu(), x.grad, atol=1e-3, rtol=1e-3)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert torch.isfinite(m_cuda(x_cuda).float()).all()
