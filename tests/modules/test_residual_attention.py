"""Attention module of the Residual Attention Network (Wang et al.) against a float64 reference."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim

import visattn
from tests._reference import bn_eval, randomize_bn_
from visattn.modules.residual_attention import ResidualAttention


def bn_relu(v, bn):
    return torch.relu(bn_eval(v, bn))


def conv1x1(v, conv):
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], v)


def conv3x3(v, conv):
    h, w = v.shape[-2:]
    vp = F.pad(v, (1, 1, 1, 1))
    return sum(torch.einsum("oc,bchw->bohw", conv.weight[:, :, i, j], vp[:, :, i:i + h, j:j + w])
               for i in range(3) for j in range(3))


def unit(v, u):
    """Pre-activation bottleneck: v + conv1x1(BN-ReLU(conv3x3(BN-ReLU(conv1x1(BN-ReLU(v))))))."""
    out = conv1x1(bn_relu(v, u.bn1), u.conv1)
    out = conv3x3(bn_relu(out, u.bn2), u.conv2)
    return v + conv1x1(bn_relu(out, u.bn3), u.conv3)


def units(v, seq):
    for u in seq:
        v = unit(v, u)
    return v


def max_pool_3x3_s2(v):
    """3x3 max pooling, stride 2, padding 1: output ceil(n / 2), window rows 2i - 1 .. 2i + 1."""
    h, w = v.shape[-2:]
    ho, wo = -(-h // 2), -(-w // 2)
    vp = F.pad(v, (1, 1, 1, 1), value=-math.inf)
    out = torch.full(v.shape[:2] + (ho, wo), -math.inf, dtype=v.dtype)
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = vp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].amax((-2, -1))
    return out


def resize_matrix(n_out, n_in, mode):
    a = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        if mode == "nearest":
            a[i, min(math.floor(i * n_in / n_out), n_in - 1)] = 1
            continue
        src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0  # align_corners=True
        i0 = min(math.floor(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        a[i, i0] += 1 - (src - i0)
        a[i, i1] += src - i0
    return a


def resize(v, size, mode):
    return torch.einsum("hp,bcpq,wq->bchw", resize_matrix(size[0], v.shape[-2], mode), v,
                        resize_matrix(size[1], v.shape[-1], mode))


def reference_mask(u, m, mode):
    """Soft mask: bottom-up (pool + r units) x depth, top-down (r units, up-sample to the level above, add the
    skip unit of that level's bottom-up feature), then BN-ReLU-conv1x1 twice and a sigmoid."""
    feats, h = [], u
    for down in m.down:
        h = units(max_pool_3x3_s2(h), down)
        feats.append(h)
    for i in reversed(range(m.depth)):
        h = units(h, m.up[i])
        target = u if i == 0 else feats[i - 1]
        h = resize(h, target.shape[-2:], mode)
        if i > 0:
            h = h + unit(feats[i - 1], m.skips[i - 1][0])
    head = m.mask_head
    h = conv1x1(bn_relu(h, head[0]), head[2])
    return torch.sigmoid(conv1x1(bn_relu(h, head[3]), head[5]))


def reference(x, m, mode="bilinear"):
    """Eq. 3 (attention residual learning): H = (1 + M(u)) * T(u), u = pre-units(x), then post-units."""
    u = units(x, m.pre)
    return units((1 + reference_mask(u, m, mode)) * units(u, m.trunk), m.post)


@pytest.mark.parametrize("depth,shape", [(1, (2, 8, 5, 7)), (1, (1, 8, 3, 4)), (2, (2, 8, 7, 12)),
                                         (2, (1, 8, 5, 5)), (3, (2, 8, 9, 13)), (3, (1, 8, 16, 11))])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_matches_reference(depth, shape, mode):
    m = randomize_bn_(ResidualAttention(8, depth=depth, upsample_mode=mode).double()).eval()
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference(x, m, mode))
    torch.testing.assert_close(m.attention_map(x), reference_mask(units(x, m.pre), m, mode))


def test_unit_counts_and_parameter_count():
    m = ResidualAttention(8, depth=2, pre_units=2, trunk_units=3, mask_units=2).double()
    assert (len(m.pre), len(m.trunk), len(m.post)) == (2, 3, 2)
    assert [len(s) for s in m.down] == [2, 2] and [len(s) for s in m.up] == [2, 2] and len(m.skips) == 1
    x = torch.randn(2, 8, 6, 9, dtype=torch.float64)
    torch.testing.assert_close(randomize_bn_(m, seed=5).eval()(x), reference(x, m))

    def count(c, depth, p=1, t=2, r=1):
        mid = c // 4
        per_unit = 2 * c + c * mid + 2 * mid + 9 * mid * mid + 2 * mid + mid * c
        n_units = 2 * p + t + 2 * depth * r + (depth - 1)
        return n_units * per_unit + 2 * (2 * c + c * c)  # mask head: BN + conv1x1 (no bias), twice

    assert sum(p.numel() for p in visattn.create("residual_attention", 64).parameters()) == count(64, 1)
    assert sum(p.numel() for p in ResidualAttention(256, depth=3).parameters()) == count(256, 3)


def test_mask_is_the_gate_output_in_unit_interval():
    m = randomize_bn_(ResidualAttention(8, depth=2).double()).eval()
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    seen = []
    m.gate.register_forward_hook(lambda mod, inp, out: seen.append(out))
    m(x)
    torch.testing.assert_close(seen[0], m.attention_map(x))
    assert seen[0].shape == x.shape and 0 <= seen[0].min() and seen[0].max() <= 1


def test_minimum_size():
    for depth in (1, 2, 3):
        m = ResidualAttention(8, depth=depth).eval()
        assert m.min_size == 2**depth + 1
        m(torch.randn(1, 8, m.min_size, m.min_size + 3))  # smallest accepted size works
        with pytest.raises(ValueError, match=rf"ResidualAttention: expected H >= {m.min_size} and W >= "):
            m(torch.randn(1, 8, m.min_size + 4, m.min_size - 1))


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="ResidualAttention: depth"):
        ResidualAttention(8, depth=0)
    with pytest.raises(ValueError, match="ResidualAttention: upsample_mode"):
        ResidualAttention(8, upsample_mode="bicubic")
    with pytest.raises(ValueError, match="ResidualAttention: unit counts"):
        ResidualAttention(8, trunk_units=-1)
    with pytest.raises(ValueError, match=r"ResidualAttention.*\(2, 9, 8, 8\)"):
        ResidualAttention(8)(torch.randn(2, 9, 8, 8))


def test_deep_mask_export_dynamic_odd_sizes_and_channels_last():
    m = randomize_bn_(ResidualAttention(8, depth=3)).float().eval()
    x = torch.randn(2, 8, 16, 16)
    h, w = Dim("H", min=m.min_size, max=128), Dim("W", min=m.min_size, max=128)
    ep = torch.export.export(m, (x,), dynamic_shapes=({2: h, 3: w},))
    for size in ((9, 9), (13, 22), (31, 10)):
        y = torch.randn(2, 8, *size)
        torch.testing.assert_close(ep.module()(y), m(y), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(y.contiguous(memory_format=torch.channels_last)), m(y), atol=1e-5, rtol=1e-5)
