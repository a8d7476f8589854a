"""Squeeze-and-Attention module against the paper's equations (float64, explicit loops)."""

import pytest
import torch

import visattn
from tests._build import randomize_
from tests._reference import avg_pool_ref, batch_norm_ref, bilinear_ref, conv_ref, nearest_ref, randomize_bn_
from visattn.modules.sanet import SqueezeAttention


def reference_sa(x, m: SqueezeAttention, training=False, stride=1, mode="nearest"):
    """X_res = ReLU(BN(conv3x3_s(X))), X_attn = Up(sigmoid(BN(conv(ReLU(BN(conv(APool(X)))))))),
    X_out = X_attn * X_res + X_attn."""
    res = torch.relu(batch_norm_ref(conv_ref(x, m.conv.conv.weight, stride=stride), m.conv.bn, training))
    a = avg_pool_ref(x, 2, ceil_mode=True)
    a = torch.relu(batch_norm_ref(conv_ref(a, m.attn[0].conv.weight), m.attn[0].bn, training))
    a = torch.sigmoid(batch_norm_ref(conv_ref(a, m.attn[1].conv.weight), m.attn[1].bn, training))
    a = nearest_ref(a, res.shape[-2:]) if mode == "nearest" else bilinear_ref(a, res.shape[-2:])
    return a * res + a, a


def _randomized(channels, **kw):
    return randomize_bn_(randomize_(SqueezeAttention(channels, **kw), std=0.3)).double()


@pytest.mark.parametrize("kw,size", [
    ({}, (8, 6)),
    ({}, (7, 13)),
    ({"stride": 2, "out_channels": 24}, (9, 6)),
    ({"stride": 3, "upsample_mode": "bilinear"}, (7, 11)),
    ({"upsample_mode": "bilinear"}, (5, 3)),
])
@pytest.mark.parametrize("training", [False, True])
def test_matches_paper_equations(kw, size, training):
    m = _randomized(16, **kw).train(training)
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    stride = kw.get("stride", 1)
    y = m(x)
    assert y.shape == (2, kw.get("out_channels", 16), -(-size[0] // stride), -(-size[1] // stride))
    ref, attn = reference_sa(x, m, training, stride, kw.get("upsample_mode", "nearest"))
    torch.testing.assert_close(y, ref)
    if not training:
        torch.testing.assert_close(m.attention_map(x), attn)


def test_parameter_count_and_min_size():
    m = visattn.create("sanet", 64)
    assert sum(p.numel() for p in m.parameters()) == 3 * (64 * 64 * 9 + 2 * 64)
    assert m.min_size == 3
    m.eval()(torch.randn(1, 64, 3, 3))
    with pytest.raises(ValueError, match="SqueezeAttention.*H >= 3"):
        m(torch.randn(1, 64, 2, 8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="SqueezeAttention.*upsample_mode"):
        SqueezeAttention(16, upsample_mode="bicubic")
    with pytest.raises(ValueError, match="SqueezeAttention.*stride"):
        SqueezeAttention(16, stride=0)
