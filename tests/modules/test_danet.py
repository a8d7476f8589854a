"""DANet PAM / CAM against Fu et al.'s eqs. 1-4 and the official code, written out in float64."""

import importlib

import pytest
import torch

import visattn
from tests._reference import assert_same_forward_and_gradients
from visattn.modules.danet import ChannelAttention, DualAttention, PositionAttention

attention_ops = importlib.import_module("visattn.ops.attention")


def conv1x1(x, conv):
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias[None, :, None, None]


def reference_pam(x, m):
    """s_ji = exp(B_i . C_j) / sum_i exp(B_i . C_j); E_j = alpha sum_i s_ji D_i + A_j (no 1/sqrt(d))."""
    b, c, h, w = x.shape
    query = conv1x1(x, m.query_conv).flatten(2)  # C: [B, C/8, N], index j
    key = conv1x1(x, m.key_conv).flatten(2)  # B: [B, C/8, N], index i
    value = conv1x1(x, m.value_conv).flatten(2)  # D: [B, C, N]
    e = torch.einsum("bki,bkj->bji", key, query)
    s = torch.exp(e - e.amax(-1, keepdim=True))
    s = s / s.sum(-1, keepdim=True)  # [B, j, i], normalised over i
    out = torch.einsum("bji,bci->bcj", s, value).reshape(b, c, h, w)
    return m.alpha * out + x, s


def reference_cam(x, m, energy="official"):
    """Official CAM: energy = A A^T, max(energy) - energy, softmax, out = attention A; E = beta out + A."""
    b, c, h, w = x.shape
    a = x.reshape(b, c, -1)
    e = torch.einsum("bin,bjn->bij", a, a)
    if energy == "official":
        e = e.amax(-1, keepdim=True) - e
    p = torch.exp(e - e.amax(-1, keepdim=True))
    p = p / p.sum(-1, keepdim=True)
    return m.beta * torch.einsum("bij,bjn->bin", p, a).reshape(b, c, h, w) + x, p


def randomized(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return m


@pytest.mark.parametrize("efficient", [True, False])
@pytest.mark.parametrize("size", [(5, 7), (1, 1), (4, 4)])
def test_pam_matches_paper_equations(efficient, size):
    m = randomized(PositionAttention(16, memory_efficient=efficient).double())
    x = torch.randn(2, 16, *size, dtype=torch.float64, requires_grad=True)
    out = m(x)
    ref, s = reference_pam(x, m)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(m.attention_map(x), s)
    up = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, up)[0], torch.autograd.grad(ref, x, up)[0])


def test_pam_blocked_path_equals_reference_path_over_several_blocks(monkeypatch):
    """N = 63 positions in blocks of 16 (the last one partial): forward and every gradient agree in float64."""
    monkeypatch.setattr(attention_ops, "_TILE_ELEMENTS", 64)  # forces the minimum block of 16 queries
    assert attention_ops.default_block_size(2, 63) == 16
    fast = randomized(PositionAttention(16).double())
    slow = PositionAttention(16, memory_efficient=False).double()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    assert_same_forward_and_gradients(fast, slow, x)


def test_pam_structure_and_identity_at_init():
    m = visattn.create("pam", 64)
    assert m.query_conv.out_channels == m.key_conv.out_channels == 8 and m.value_conv.out_channels == 64
    assert sum(p.numel() for p in m.parameters()) == 2 * (64 * 8 + 8) + 64 * 64 + 64 + 1  # official PAM_Module
    x = torch.randn(1, 64, 5, 6)
    assert torch.equal(m(x), x) and m.alpha.item() == 0


@pytest.mark.parametrize("channels", [1, 4, 7])
def test_pam_below_8_channels_query_key_width_is_1(channels):
    """The official query / key convs have in_dim // 8 = 0 outputs below C = 8 and fail; visattn uses width 1."""
    m = randomized(PositionAttention(channels).double())
    assert m.query_conv.out_channels == m.key_conv.out_channels == 1 and m.value_conv.out_channels == channels
    x = torch.randn(2, channels, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_pam(x, m)[0])


@pytest.mark.parametrize("energy", ["official", "paper"])
def test_cam_matches_official_code(energy):
    m = randomized(ChannelAttention(12, energy=energy).double())
    x = torch.randn(2, 12, 4, 5, dtype=torch.float64, requires_grad=True) * 0.3
    out = m(x)
    ref, p = reference_cam(x, m, energy)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(m.attention_map(x), p)
    up = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, up)[0], torch.autograd.grad(ref, x, up)[0])


def test_cam_official_energy_is_softmax_of_negative_energy():
    m = randomized(ChannelAttention(8).double())
    x = torch.randn(1, 8, 3, 3, dtype=torch.float64)
    a = x.reshape(1, 8, -1)
    torch.testing.assert_close(m.attention_map(x), torch.softmax(-(a @ a.transpose(1, 2)), -1))
    assert sum(p.numel() for p in m.parameters()) == 1 and ChannelAttention(8).beta.item() == 0


def test_dual_attention_is_the_sum():
    m = randomized(DualAttention(16).double())
    x = torch.randn(2, 16, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_pam(x, m.pam)[0] + reference_cam(x, m.cam)[0])
    fresh = DualAttention(16)
    x = torch.randn(1, 16, 3, 3)
    assert torch.equal(fresh(x), 2 * x)


def test_energies_in_float32_under_autocast():
    m = randomized(PositionAttention(32)).eval()
    x = torch.randn(1, 32, 6, 6)
    ref = m(x)
    for efficient in (True, False):
        m.memory_efficient = efficient
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
            a = m.attention_map(x)
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.sum(-1), torch.ones(1, 36))
        torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="PositionAttention: reduction"):
        PositionAttention(16, reduction=0)
    with pytest.raises(ValueError, match="ChannelAttention: energy"):
        ChannelAttention(16, energy="min")
    with pytest.raises(ValueError, match="DualAttention"):
        DualAttention(16)(torch.randn(1, 8, 3, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("efficient", [True, False])
def test_pam_on_cuda(efficient, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 1x1 convs
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    m = randomized(PositionAttention(64, memory_efficient=efficient))
    m64 = PositionAttention(64).double()
    m64.load_state_dict(m.state_dict())
    x = torch.randn(2, 64, 24, 20) * 0.5
    xd = x.double().requires_grad_()
    ref, _ = reference_pam(xd, m64)
    mc, xc = m.cuda(), x.cuda().requires_grad_()
    out = mc(xc)
    assert out.is_cuda
    torch.testing.assert_close(out.double().cpu(), ref, atol=1e-3, rtol=1e-3)
    up = torch.randn(out.shape, dtype=torch.float64)
    out.backward(up.float().cuda())
    ref.backward(up)
    torch.testing.assert_close(xc.grad.double().cpu(), xd.grad, atol=1e-3, rtol=1e-3)
    for (name, p), p64 in zip(mc.named_parameters(), m64.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double().cpu(), p64.grad, atol=1e-3, rtol=1e-3, msg=name)
