"""GC block against the paper's equations (float64, einsum) and timm's GlobalContext."""

import pytest
import torch

import visattn
from tests._build import randomize_
from visattn.modules.gc import GlobalContext


def reference_transform(c, seq):
    """delta(c) = W_v2 ReLU(LN(W_v1 c)), LayerNorm over the C/r bottleneck vector (official LayerNorm([C/r, 1, 1]))."""
    w1, b1 = seq[0].weight[:, :, 0, 0], seq[0].bias
    ln_w, ln_b, eps = seq[1].weight.flatten(), seq[1].bias.flatten(), seq[1].eps
    w2, b2 = seq[3].weight[:, :, 0, 0], seq[3].bias
    h = torch.einsum("rc,bc->br", w1, c) + b1
    mu = h.mean(dim=1, keepdim=True)
    var = ((h - mu) ** 2).mean(dim=1, keepdim=True)
    h = torch.relu((h - mu) / torch.sqrt(var + eps) * ln_w + ln_b)
    return torch.einsum("cr,br->bc", w2, h) + b2


def reference_gc(x, m):
    """Eq. 3: alpha = softmax_j(W_k x_j); c = sum_j alpha_j x_j; z = x + delta(c) (or x * sigmoid(delta(c)))."""
    if m.pool == "att":
        wk = m.conv_mask.weight[0, :, 0, 0]
        logits = torch.einsum("c,bchw->bhw", wk, x)
        alpha = torch.softmax(logits.flatten(1), dim=1).view_as(logits)
        c = torch.einsum("bhw,bchw->bc", alpha, x)
    else:
        c = x.mean(dim=(2, 3))
    out = x
    if m.channel_mul_conv is not None:
        out = out * torch.sigmoid(reference_transform(c, m.channel_mul_conv))[:, :, None, None]
    if m.channel_add_conv is not None:
        out = out + reference_transform(c, m.channel_add_conv)[:, :, None, None]
    return out


@pytest.mark.parametrize("pool", ["att", "avg"])
@pytest.mark.parametrize("fusion", ["add", "mul", "mul+add"])
def test_matches_paper_equations(pool, fusion):
    m = randomize_(GlobalContext(32, reduction=4, pool=pool, fusion=fusion), std=0.5).double()
    x = torch.randn(2, 32, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_gc(x, m))
    alpha = m.attention_map(x)
    assert alpha.shape == (2, 1, 5, 7)
    torch.testing.assert_close(alpha.sum(dim=(2, 3)), torch.ones(2, 1, dtype=torch.float64))


def test_official_layout_init_and_widths():
    m = visattn.create("gc", 256)
    assert m.channel_add_conv[0].out_channels == 16 and m.channel_mul_conv is None and m.gate is None
    assert m.channel_add_conv[1].normalized_shape == (16, 1, 1)
    assert GlobalContext(100).channel_add_conv[0].out_channels == 6  # floor(C / 16), no rounding
    assert GlobalContext(64, rd_channels=10).channel_add_conv[0].out_channels == 10
    last = m.channel_add_conv[3]
    assert not last.weight.any() and not last.bias.any()  # last_zero_init
    assert m.conv_mask.bias is None and m.conv_mask.weight.abs().sum() > 0
    x = torch.randn(2, 256, 5, 4)
    torch.testing.assert_close(m(x), x)  # add fusion starts as the identity
    mul = GlobalContext(64, fusion="mul")
    y = torch.randn(2, 64, 3, 3)
    torch.testing.assert_close(mul(y), y * 0.5)  # zero last conv: sigmoid(0) = 1/2
    expected_keys = {"conv_mask.weight", "channel_add_conv.0.weight", "channel_add_conv.0.bias",
                     "channel_add_conv.1.weight", "channel_add_conv.1.bias", "channel_add_conv.3.weight",
                     "channel_add_conv.3.bias"}
    assert set(m.state_dict()) == expected_keys  # the official ContextBlock's, less the no-op conv_mask.bias


def test_mask_bias_would_be_a_no_op():
    """Why conv_mask has no bias: adding any constant to the logits leaves the softmax over HW unchanged."""
    m = randomize_(GlobalContext(16, reduction=4), std=0.5).double()
    x = torch.randn(2, 16, 4, 6, dtype=torch.float64)
    before = m(x)
    biased = torch.nn.Conv2d(16, 1, 1, bias=True).double()
    with torch.no_grad():
        biased.weight.copy_(m.conv_mask.weight)
        biased.bias.fill_(3.7)
    m.conv_mask = biased
    torch.testing.assert_close(m(x), before)


def test_bad_arguments():
    with pytest.raises(ValueError, match="GlobalContext: fusion"):
        GlobalContext(64, fusion="concat")
    with pytest.raises(ValueError, match="GlobalContext: pool"):
        GlobalContext(64, pool="max")


def _copy_from_timm(m, ref):
    """timm's mlp_add (fc1, norm, fc2) -> official channel_add_conv (0, 1, 3); timm's LayerNorm2d is (C,)."""
    sd = {"conv_mask.weight": ref.conv_attn.weight}  # conv_attn.bias is left out: softmax cancels it
    mlp = ref.mlp_add
    sd.update({
        "channel_add_conv.0.weight": mlp.fc1.weight, "channel_add_conv.0.bias": mlp.fc1.bias,
        "channel_add_conv.1.weight": mlp.norm.weight.view(-1, 1, 1),
        "channel_add_conv.1.bias": mlp.norm.bias.view(-1, 1, 1),
        "channel_add_conv.3.weight": mlp.fc2.weight, "channel_add_conv.3.bias": mlp.fc2.bias,
    })
    m.load_state_dict(sd)


def test_equals_timm_global_context():
    timm_gc = pytest.importorskip("timm.layers.global_context")
    ref = timm_gc.GlobalContext(64, use_attn=True, fuse_add=True, fuse_scale=False, rd_ratio=1 / 16,
                                rd_divisor=1).eval()
    randomize_(ref, std=0.5)  # timm zero-inits fc2 too: perturb so that the comparison means something
    with torch.no_grad():
        ref.conv_attn.bias.fill_(1.3)  # a bias visattn does not have: it cancels in the softmax
    # timm's LayerNorm2d has eps 1e-6, the official nn.LayerNorm([C/r, 1, 1]) 1e-5: align timm's to the official.
    ref.mlp_add.norm.eps = 1e-5
    m = GlobalContext(64).eval()
    assert m.channel_add_conv[0].out_channels == ref.mlp_add.fc1.out_channels == 4
    _copy_from_timm(m, ref)
    x = torch.randn(2, 64, 9, 11)
    torch.testing.assert_close(m(x), ref(x))
