"""Triplet attention against the paper's rotate / Z-pool / conv / rotate-back equations (float64)."""

import pytest
import torch
import torch.nn.functional as F

import visattn
from tests._build import randomize_
from visattn.modules.triplet import TripletAttention, ZPoolGate


def _branch(t, gate: ZPoolGate, training: bool):
    """One AttentionGate of the official code on an already rotated tensor t: t * sigmoid(BN(conv(ZPool(t))))."""
    z = torch.cat((t.max(dim=1, keepdim=True).values, t.mean(dim=1, keepdim=True)), dim=1)  # [max; mean]
    conv, bn = gate.conv.conv, gate.conv.bn
    k = conv.weight.shape[-1]
    u = F.conv2d(z, conv.weight, padding=(k - 1) // 2)
    if training:
        mean, var = u.mean(dim=(0, 2, 3)), u.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    u = (u - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + bn.eps)
    u = u * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
    return t * torch.sigmoid(u)


def reference_triplet(x, m: TripletAttention, training=False):
    """Y = 1/3 (s0 X + P1^-1(s1 P1(X)) + P2^-1(s2 P2(X))), the rotations as explicit permutes."""
    x1 = x.permute(0, 2, 1, 3)  # (B, H, C, W): H in the channel role
    y1 = _branch(x1, m.cw, training).permute(0, 2, 1, 3)
    x2 = x.permute(0, 3, 2, 1)  # (B, W, H, C): W in the channel role
    y2 = _branch(x2, m.hc, training).permute(0, 3, 2, 1)
    if m.no_spatial:
        return (y1 + y2) / 2
    return (_branch(x, m.hw, training) + y1 + y2) / 3


def _randomized(channels=6, **kw):
    m = randomize_(TripletAttention(channels, **kw), std=0.5).double()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize("kernel_size", [7, 3])
@pytest.mark.parametrize("no_spatial", [False, True])
def test_matches_reference_eval(kernel_size, no_spatial):
    # C, H, W all different so that a swapped plane or a transposed kernel cannot go unnoticed.
    m = _randomized(6, kernel_size=kernel_size, no_spatial=no_spatial).eval()
    x = torch.randn(2, 6, 5, 9, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_triplet(x, m))


def test_matches_reference_train_and_updates_running_stats():
    m = _randomized(6).train()
    x = torch.randn(3, 6, 8, 5, dtype=torch.float64)
    ref = reference_triplet(x, m, training=True)
    before = {n: b.clone() for n, b in m.named_buffers() if n.endswith("running_mean")}
    torch.testing.assert_close(m(x), ref)
    # The official BN momentum 0.01 moves the running mean by 1 % of the batch mean.
    conv = m.hw.conv.conv
    z = torch.cat((x.amax(1, keepdim=True), x.mean(1, keepdim=True)), 1)
    batch_mean = F.conv2d(z, conv.weight, padding=3).mean()
    expected = 0.99 * before["hw.conv.bn.running_mean"] + 0.01 * batch_mean
    torch.testing.assert_close(m.hw.conv.bn.running_mean, expected)


def test_rotation_matters():
    """Swapping the (C, W) plane's orientation gives a different result: the reference is sensitive to it."""
    m = _randomized(6).eval()
    x = torch.randn(1, 6, 5, 9, dtype=torch.float64)
    other = _randomized(6).eval()
    other.load_state_dict(m.state_dict())
    with torch.no_grad():
        other.cw.conv.conv.weight.copy_(m.cw.conv.conv.weight.transpose(-1, -2))
    assert not torch.allclose(other(x), m(x))


def test_output_is_x_times_attention_map_and_gates_record_branches():
    m = _randomized(6).eval()
    x = torch.randn(2, 6, 5, 9, dtype=torch.float64)
    seen = {}
    for name in ("cw", "hc", "hw"):
        getattr(m, name).gate.register_forward_hook(lambda mod, i, o, name=name: seen.__setitem__(name, o.shape))
    torch.testing.assert_close(m(x), x * m.attention_map(x))
    assert seen == {"cw": (2, 1, 6, 9), "hc": (2, 1, 5, 6), "hw": (2, 1, 5, 9)}


def test_parameter_count_and_official_state_dict_names():
    assert sum(p.numel() for p in visattn.create("triplet", 64).parameters()) == 3 * (2 * 7 * 7 + 2)
    assert sum(p.numel() for p in TripletAttention(64, no_spatial=True).parameters()) == 2 * (2 * 7 * 7 + 2)
    keys = set(TripletAttention(64).state_dict())
    for branch in ("cw", "hc", "hw"):
        assert {f"{branch}.conv.conv.weight", f"{branch}.conv.bn.weight", f"{branch}.conv.bn.running_var"} <= keys
    assert TripletAttention(64).cw.conv.bn.momentum == 0.01


def test_bad_arguments():
    for k in (0, 4, -3):
        with pytest.raises(ValueError, match="TripletAttention: kernel_size"):
            TripletAttention(64, kernel_size=k)
    with pytest.raises(ValueError, match="ZPoolGate: pool_dim"):
        ZPoolGate(0)
    with pytest.raises(TypeError, match="no_spatial"):
        visattn.create("triplet", 64, no_spatail=True)
