"""BAM against the paper's equations (float64, einsum and explicit dilated-conv offsets), both fusions."""

import pytest
import torch
import torch.nn.functional as F

import visattn
from tests._build import randomize_
from visattn.modules.bam import BAM


def batch_norm(u, bn, training):
    dims = (0,) if u.dim() == 2 else (0, 2, 3)
    shape = (1, -1) + (1,) * (u.dim() - 2)
    if training:
        mean, var = u.mean(dim=dims), u.var(dim=dims, unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    return (u - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def conv1x1(u, conv):
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], u) + conv.bias[None, :, None, None]


def dilated_conv3x3(u, conv, d):
    """3x3 conv with dilation d and zero padding d, as a sum over the nine offsets (i - 1) d, (j - 1) d."""
    h, w = u.shape[-2:]
    up = F.pad(u, (d, d, d, d))
    out = conv.bias[None, :, None, None]
    for i in range(3):
        for j in range(3):
            shifted = up[:, :, i * d:i * d + h, j * d:j * d + w]
            out = out + torch.einsum("oc,bchw->bohw", conv.weight[:, :, i, j], shifted)
    return out


def reference_bam(x, m: BAM, dilation=4, training=False, channel_training=None):
    """M_c = W1 relu(BN(W0 GAP(F) + b0)) + b1; M_s = 1x1(BRd(3x3_d(BRd(3x3_d(BRd(1x1(F))))))); F' = F (1 + M)."""
    channel_training = training if channel_training is None else channel_training
    g = m.channel_att.gate_c
    z = x.mean(dim=(2, 3))
    hidden = torch.einsum("rc,bc->br", g.gate_c_fc_0.weight, z) + g.gate_c_fc_0.bias
    hidden = torch.relu(batch_norm(hidden, g.gate_c_bn_1, channel_training))
    m_c = (torch.einsum("cr,br->bc", g.gate_c_fc_final.weight, hidden) + g.gate_c_fc_final.bias)[:, :, None, None]
    s = m.spatial_att.gate_s
    u = torch.relu(batch_norm(conv1x1(x, s.gate_s_conv_reduce0), s.gate_s_bn_reduce0, training))
    for i in range(2):
        u = dilated_conv3x3(u, getattr(s, f"gate_s_conv_di_{i}"), dilation)
        u = torch.relu(batch_norm(u, getattr(s, f"gate_s_bn_di_{i}"), training))
    m_s = conv1x1(u, s.gate_s_conv_final)
    att = torch.sigmoid(m_c + m_s if m.fusion == "sum" else m_c * m_s)
    return x + x * att


def _randomized(module):
    module = randomize_(module, std=0.5).double()
    for mod in module.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return module


@pytest.mark.parametrize("fusion", ["sum", "product"])
@pytest.mark.parametrize("training", [False, True])
def test_matches_paper_equations(fusion, training):
    m = _randomized(BAM(32, reduction=4, fusion=fusion)).train(training)
    x = torch.randn(3, 32, 9, 6, dtype=torch.float64)
    ref = reference_bam(x, m, training=training)
    torch.testing.assert_close(m(x), ref)
    att = m.attention_map(x)
    assert att.shape == (3, 32, 9, 6) and ((att >= 0) & (att <= 1)).all()
    torch.testing.assert_close(m(x), x + x * att)


def test_dilation_option_and_small_maps():
    m = _randomized(BAM(16, reduction=4, dilation=2)).eval()
    for size in [(5, 7), (1, 1), (2, 3)]:
        x = torch.randn(2, 16, *size, dtype=torch.float64)
        torch.testing.assert_close(m(x), reference_bam(x, m, dilation=2))


def test_batch_one_in_training_uses_running_stats_for_single_values():
    m = _randomized(BAM(16, reduction=4)).train()
    x = torch.randn(1, 16, 7, 13, dtype=torch.float64)
    channel_bn = m.channel_att.gate_c.gate_c_bn_1
    spatial_bn = m.spatial_att.gate_s.gate_s_bn_reduce0
    before_c, before_s = channel_bn.running_mean.clone(), spatial_bn.running_mean.clone()
    ref = reference_bam(x, m, training=True, channel_training=False)
    torch.testing.assert_close(m(x), ref)
    assert torch.equal(channel_bn.running_mean, before_c)  # one value per channel: not updated
    assert not torch.equal(spatial_bn.running_mean, before_s)  # 7 * 13 values per channel: batch statistics
    y = m(torch.randn(1, 16, 1, 1, dtype=torch.float64))  # every BN sees one value: no error, finite
    assert y.shape == (1, 16, 1, 1) and torch.isfinite(y).all()


def test_widths_and_official_layout():
    m = visattn.create("bam", 256)
    assert m.channel_att.gate_c.gate_c_fc_0.out_features == 16
    conv = m.spatial_att.gate_s.gate_s_conv_di_0
    assert conv.dilation == (4, 4) and conv.padding == (4, 4) and conv.in_channels == 16
    assert BAM(8).channel_att.gate_c.gate_c_fc_0.out_features == 1  # floor(8 / 16) = 0 -> at least 1
    rd, c = 16, 256
    channel = c * rd + rd + 2 * rd + rd * c + c
    spatial = (c * rd + rd + 2 * rd) + 2 * (rd * rd * 9 + rd + 2 * rd) + (rd + 1)
    assert sum(p.numel() for p in m.parameters()) == channel + spatial
    official = {"channel_att.gate_c.gate_c_fc_0", "channel_att.gate_c.gate_c_bn_1",
                "channel_att.gate_c.gate_c_fc_final",
                "spatial_att.gate_s.gate_s_conv_reduce0", "spatial_att.gate_s.gate_s_bn_reduce0",
                "spatial_att.gate_s.gate_s_conv_di_0", "spatial_att.gate_s.gate_s_bn_di_0",
                "spatial_att.gate_s.gate_s_conv_di_1", "spatial_att.gate_s.gate_s_bn_di_1",
                "spatial_att.gate_s.gate_s_conv_final"}
    assert {k.rsplit(".", 1)[0] for k in m.state_dict()} == official  # the official BAM's module names


def test_bad_arguments():
    with pytest.raises(ValueError, match="BAM: fusion"):
        BAM(64, fusion="max")
    with pytest.raises(ValueError, match="BAM: dilation"):
        BAM(64, dilation=0)
