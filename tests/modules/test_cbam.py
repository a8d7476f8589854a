"""CBAM against the paper's equations (float64, einsum and explicit conv offsets) and timm's CbamModule."""

import re

import pytest
import torch
import torch.nn.functional as F

import visattn
from tests._build import randomize_
from visattn.modules.cbam import CBAM, ChannelGate, SpatialGate


def reference_channel(x, gate: ChannelGate):
    """Eq. 2: M_c = sigmoid(sum over pools of W1 relu(W0 pool(F) + b0) + b1)."""
    w0, b0 = gate.mlp[1].weight, gate.mlp[1].bias
    w1, b1 = gate.mlp[3].weight, gate.mlp[3].bias
    total = 0
    for p in gate.pool_types:
        z = x.mean(dim=(2, 3)) if p == "avg" else x.flatten(2).max(dim=2).values
        total = total + torch.einsum("cr,br->bc", w1, torch.relu(torch.einsum("rc,bc->br", w0, z) + b0)) + b1
    return torch.sigmoid(total)[:, :, None, None]


def conv_same(z, weight):
    """k x k zero-padded cross-correlation written as a sum over kernel offsets."""
    k = weight.shape[-1]
    p = (k - 1) // 2
    h, w = z.shape[-2:]
    zp = F.pad(z, (p, p, p, p))
    out = 0
    for i in range(k):
        for j in range(k):
            out = out + torch.einsum("oc,bchw->bohw", weight[:, :, i, j], zp[:, :, i:i + h, j:j + w])
    return out


def batch_norm(u, bn, training):
    if training:
        mean, var = u.mean(dim=(0, 2, 3)), u.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    u = (u - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + bn.eps)
    return u * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]


def reference_spatial(x, gate: SpatialGate, training=False):
    """Eq. 3: M_s = sigmoid(BN(f^{kxk}([max_c F; mean_c F])))."""
    z = torch.stack((x.max(dim=1).values, x.mean(dim=1)), dim=1)
    return torch.sigmoid(batch_norm(conv_same(z, gate.spatial.conv.weight), gate.spatial.bn, training))


def reference_cbam(x, m: CBAM, training=False):
    """Eq. 1: F' = M_c(F) F; F'' = M_s(F') F'."""
    f1 = x * reference_channel(x, m.channel_gate)
    if m.spatial_gate is None:
        return f1
    return f1 * reference_spatial(f1, m.spatial_gate, training)


def _randomized(module):
    module = randomize_(module, std=0.5).double()
    for mod in module.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return module


@pytest.mark.parametrize("kw", [{}, {"kernel_size": 3}, {"pool_types": ("avg",)}, {"pool_types": ("max",)},
                                {"no_spatial": True}, {"rd_channels": 5}])
def test_matches_paper_equations_eval(kw):
    m = _randomized(CBAM(32, reduction=4, **kw)).eval()
    x = torch.randn(2, 32, 5, 9, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_cbam(x, m))
    m_c, m_s = m.attention_map(x)
    assert m_c.shape == (2, 32, 1, 1)
    if m.spatial_gate is None:
        assert m_s is None
    else:
        assert m_s.shape == (2, 1, 5, 9)
        torch.testing.assert_close(m(x), x * m_c * m_s)


def test_matches_paper_equations_train():
    m = _randomized(CBAM(16, reduction=4)).train()
    x = torch.randn(3, 16, 6, 4, dtype=torch.float64)
    ref = reference_cbam(x, m, training=True)
    torch.testing.assert_close(m(x), ref)


def test_gates_alone():
    x = torch.randn(2, 24, 4, 7, dtype=torch.float64)
    cg = _randomized(ChannelGate(24, reduction=8)).eval()
    torch.testing.assert_close(cg(x), x * reference_channel(x, cg))
    assert cg.attention_map(x).shape == (2, 24, 1, 1)
    sg = _randomized(SpatialGate(24, kernel_size=5)).eval()
    torch.testing.assert_close(sg(x), x * reference_spatial(x, sg))
    assert sg.attention_map(x).shape == (2, 1, 4, 7)
    for gate in (cg, sg):  # the same input contract as the registered modules
        name = type(gate).__name__
        with pytest.raises(ValueError, match=re.escape(name)) as err:
            gate(torch.randn(2, 27, 4, 7, dtype=torch.float64))
        assert "(2, 27, 4, 7)" in str(err.value) and "24" in str(err.value)
        with pytest.raises(ValueError, match=re.escape(name)):
            gate(x[0])
        cl = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(gate(cl), gate(x))


def test_widths_init_and_official_layout():
    m = visattn.create("cbam", 256)
    assert m.channel_gate.mlp[1].out_features == 16 and m.channel_gate.mlp[1].bias is not None
    assert sum(p.numel() for p in m.parameters()) == (256 * 16 + 16 + 16 * 256 + 256) + (2 * 49 + 2)
    bn = m.spatial_gate.spatial.bn
    assert bn.momentum == 0.01 and bn.eps == 1e-5 and not bn.weight.any()  # official BasicConv + ResNet init
    assert m.spatial_gate.spatial.conv.bias is None
    x = torch.randn(2, 256, 5, 6)
    torch.testing.assert_close(m.attention_map(x)[1], torch.full((2, 1, 5, 6), 0.5))  # zero_init: constant 1/2
    assert SpatialGate(8, zero_init=False).spatial.bn.weight.eq(1).all()
    # The official CBAM's state-dict keys under its ChannelGate / SpatialGate attributes.
    official = {"ChannelGate.mlp.1.weight", "ChannelGate.mlp.1.bias", "ChannelGate.mlp.3.weight",
                "ChannelGate.mlp.3.bias", "SpatialGate.spatial.conv.weight", "SpatialGate.spatial.bn.weight",
                "SpatialGate.spatial.bn.bias", "SpatialGate.spatial.bn.running_mean",
                "SpatialGate.spatial.bn.running_var", "SpatialGate.spatial.bn.num_batches_tracked"}
    ours = {k.replace("channel_gate.", "ChannelGate.").replace("spatial_gate.", "SpatialGate.") for k in m.state_dict()}
    assert ours == official


def test_bad_arguments():
    with pytest.raises(ValueError, match="ChannelGate: pool_types"):
        CBAM(64, pool_types=("avg", "lse"))
    with pytest.raises(ValueError, match="ChannelGate: pool_types"):
        ChannelGate(64, pool_types=())
    with pytest.raises(ValueError, match="SpatialGate: kernel_size"):
        CBAM(64, kernel_size=4)
    registered = {visattn.info(k).cls for k in visattn.list_modules()}
    assert CBAM in registered and ChannelGate not in registered and SpatialGate not in registered


def _copy_from_timm(m: CBAM, ref):
    ch, sp = ref.channel.state_dict(), ref.spatial.conv.state_dict()
    sd = {
        "channel_gate.mlp.1.weight": ch["fc1.weight"][:, :, 0, 0], "channel_gate.mlp.1.bias": ch["fc1.bias"],
        "channel_gate.mlp.3.weight": ch["fc2.weight"][:, :, 0, 0], "channel_gate.mlp.3.bias": ch["fc2.bias"],
        # timm stacks [mean; max], the official code [max; mean]: swap the conv's two input channels.
        "spatial_gate.spatial.conv.weight": sp["conv.weight"].flip(1),
    }
    sd.update({f"spatial_gate.spatial.bn.{k[3:]}": v for k, v in sp.items() if k.startswith("bn.")})
    m.load_state_dict(sd)


@pytest.mark.parametrize("training", [False, True])
def test_equals_timm_cbam_module(training):
    timm_cbam = pytest.importorskip("timm.layers.cbam")
    ref = timm_cbam.CbamModule(64, rd_ratio=1 / 16, rd_divisor=1, mlp_bias=True)
    randomize_(ref, std=0.5)
    ref.spatial.conv.bn.running_mean.fill_(0.3)
    ref.spatial.conv.bn.running_var.fill_(1.7)
    m = CBAM(64)
    _copy_from_timm(m, ref)
    ref.train(training)
    m.train(training)
    x = torch.randn(2, 64, 9, 11)
    torch.testing.assert_close(m(x), ref(x))
