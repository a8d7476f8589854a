"""Attention gate against the official GridAttentionBlock2D's equations (float64, explicit loops)."""

import pytest
import torch

import visattn
from tests._build import randomize_
from tests._reference import batch_norm_ref, bilinear_ref, randomize_bn_
from visattn.modules.attention_gate import AttentionGate


def reference_ag(x, g, m: AttentionGate, training=False, s=2):
    """q = psi^T ReLU(W_x^T x + Up(W_g^T g + b_g)) + b_psi, alpha = Up(sigmoid(q)), y = W(x * alpha).

    W_x is a kernel = stride = s conv on x zero-padded at the bottom / right to a multiple of s, written as a
    loop over the s x s window offsets."""
    b, c, h, w = x.shape
    hc, wc = -(-h // s), -(-w // s)
    xp = torch.zeros(b, c, hc * s, wc * s, dtype=x.dtype)
    xp[:, :, :h, :w] = x
    theta = sum(torch.einsum("oc,bchw->bohw", m.theta.weight[:, :, i, j], xp[:, :, i::s, j::s])
                for i in range(s) for j in range(s))  # [B, F_int, hc, wc]
    phi = torch.einsum("oc,bchw->bohw", m.phi.weight[:, :, 0, 0], g) + m.phi.bias[None, :, None, None]
    f = torch.relu(theta + bilinear_ref(phi, (hc, wc)))
    q = torch.einsum("oc,bchw->bohw", m.psi.weight[:, :, 0, 0], f) + m.psi.bias[None, :, None, None]
    alpha = bilinear_ref(torch.sigmoid(q), (h, w))  # [B, 1, H, W]
    y = x * alpha
    if isinstance(m.W, torch.nn.Sequential):
        conv, bn = m.W
        y = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], y) + conv.bias[None, :, None, None]
        y = batch_norm_ref(y, bn, training)
    return y, alpha


def _randomized(channels, **kw):
    return randomize_bn_(randomize_(AttentionGate(channels, **kw), std=0.3)).double()


@pytest.mark.parametrize("kw,xsize,gsize", [
    ({}, (8, 12), (4, 6)),  # g on theta's grid: official and visattn agree exactly
    ({"gating_channels": 24}, (7, 9), (4, 5)),  # odd x: the last row / column is kept (zero-padded window)
    ({"inter_channels": 3}, (10, 6), (2, 3)),  # g coarser than theta's grid: bilinear up-sampling
    ({"sub_sample_factor": 3}, (8, 7), (5, 5)),
    ({"output_transform": False}, (5, 11), (3, 6)),  # the paper's x * alpha
])
@pytest.mark.parametrize("training", [False, True])
def test_matches_official_equations(kw, xsize, gsize, training):
    m = _randomized(16, **kw).train(training)
    x = torch.randn(2, 16, *xsize, dtype=torch.float64)
    g = torch.randn(2, kw.get("gating_channels", 16), *gsize, dtype=torch.float64)
    y = m(x, g)
    ref, alpha = reference_ag(x, g, m, training, kw.get("sub_sample_factor", 2))
    assert y.shape == x.shape
    torch.testing.assert_close(y, ref)
    a = m.attention_map(x, g)
    assert a.shape == (2, 1, *xsize) and ((a > 0) & (a < 1)).all()
    torch.testing.assert_close(a, alpha)


def test_official_layout_and_parameter_count():
    m = visattn.create("attention_gate", 64)
    # _GridAttentionBlockND's names: theta (no bias), phi, psi, and the output transform W = conv + BN.
    assert set(m.state_dict()) == {
        "theta.weight", "phi.weight", "phi.bias", "psi.weight", "psi.bias", "W.0.weight", "W.0.bias",
        "W.1.weight", "W.1.bias", "W.1.running_mean", "W.1.running_var", "W.1.num_batches_tracked"}
    assert m.theta.kernel_size == (2, 2) and m.theta.stride == (2, 2) and m.theta.out_channels == 32
    assert sum(p.numel() for p in m.parameters()) == 64 * 32 * 4 + (64 * 32 + 32) + (32 + 1) + (64 * 64 + 64) + 128
    assert AttentionGate(1).theta.out_channels == 1  # inter channels C // 2, at least 1


def test_errors_name_the_module_and_the_input():
    m = AttentionGate(16, gating_channels=8).eval()
    x = torch.randn(2, 16, 8, 8)
    with pytest.raises(ValueError, match=r"AttentionGate: expected g of shape \(B, 8, H, W\)"):
        m(x, torch.randn(2, 16, 4, 4))
    with pytest.raises(ValueError, match="AttentionGate.*batch size"):
        m(x, torch.randn(3, 8, 4, 4))
    with pytest.raises(ValueError, match="AttentionGate.*H >= 3"):
        m(torch.randn(2, 16, 2, 8), torch.randn(2, 8, 1, 4))
    m(torch.randn(2, 16, 3, 3), torch.randn(2, 8, 1, 1))  # the smallest x; g of any size
