"""Self-calibrated convolution against the official SCBottleneck's equations (float64, explicit loops)."""

import pytest
import torch

import visattn
from tests._build import randomize_
from tests._reference import avg_pool_ref, batch_norm_ref, conv_ref, nearest_ref, randomize_bn_
from visattn.modules.scconv import SelfCalibratedConv


def conv_bn_ref(x, seq, training, stride=1):
    conv, bn = seq[-2], seq[-1]
    return batch_norm_ref(conv_ref(x, conv.weight, stride=stride, groups=conv.groups), bn, training)


def reference_scconv(x, m: SelfCalibratedConv, training=False, ceil_mode=True, r=4, stride=1):
    """Official SCBottleneck between its first ReLUs and conv3: Y_a = ReLU(k1(X_a)),
    Y_b = ReLU(k4(k3(X_b) * sigmoid(X_b + up(k2(avgpool_r(X_b)))))), Y = [Y_a; Y_b]."""
    c = x.shape[1] // 2
    xa, xb = x[:, :c], x[:, c:]
    ya = torch.relu(conv_bn_ref(xa, m.k1, training, stride))
    sc = m.scconv
    context = nearest_ref(conv_bn_ref(avg_pool_ref(xb, r, ceil_mode), sc.k2, training), xb.shape[-2:])
    gate = torch.sigmoid(xb + context)
    yb = torch.relu(conv_bn_ref(conv_bn_ref(xb, sc.k3, training) * gate, sc.k4, training, stride))
    return torch.cat((ya, yb), dim=1), gate


def _randomized(channels, **kw):
    return randomize_bn_(randomize_(SelfCalibratedConv(channels, **kw), std=0.3)).double()


@pytest.mark.parametrize("kw,size", [
    ({}, (8, 12)),  # r divides H, W
    ({}, (7, 13)),  # partial windows
    ({"ceil_mode": False}, (9, 14)),  # official floor pooling drops the partial windows
    ({"stride": 2, "out_channels": 48}, (7, 10)),
    ({"groups": 4, "pooling_r": 2}, (5, 6)),
])
@pytest.mark.parametrize("training", [False, True])
def test_matches_official_equations(kw, size, training):
    m = _randomized(32, **kw).train(training)
    x = torch.randn(2, 32, *size, dtype=torch.float64)
    y = m(x)
    stride = kw.get("stride", 1)
    assert y.shape == (2, kw.get("out_channels", 32), -(-size[0] // stride), -(-size[1] // stride))
    ref, gate = reference_scconv(x, m, training, kw.get("ceil_mode", True), kw.get("pooling_r", 4), stride)
    torch.testing.assert_close(y, ref)
    if not training:
        torch.testing.assert_close(m.attention_map(x), gate)


def test_ceil_and_floor_pooling_agree_when_r_divides_the_size():
    m = _randomized(16).eval()
    floor = SelfCalibratedConv(16, ceil_mode=False).double().eval()
    floor.load_state_dict(m.state_dict())
    x = torch.randn(2, 16, 8, 12, dtype=torch.float64)
    torch.testing.assert_close(m(x), floor(x))
    x = torch.randn(2, 16, 10, 12, dtype=torch.float64)  # H = 10: ceil pools rows 8-9 as a third window, floor drops
    assert not torch.allclose(m(x), floor(x))


def test_official_layout_and_parameter_count():
    m = visattn.create("scconv", 64)
    # The official SCBottleneck's k1 and scconv.k2..k4 (group_width = 32) load under the same names.
    official = {f"k1.{i}.weight" for i in (0, 1)} | {"k1.1.bias", "k1.1.running_mean", "k1.1.running_var",
                                                     "k1.1.num_batches_tracked"}
    for k, first in (("k2", 1), ("k3", 0), ("k4", 0)):
        official |= {f"scconv.{k}.{first}.weight"}
        official |= {f"scconv.{k}.{first + 1}.{n}" for n in ("weight", "bias", "running_mean", "running_var",
                                                             "num_batches_tracked")}
    assert set(m.state_dict()) == official
    assert sum(p.numel() for p in m.parameters()) == 4 * (32 * 32 * 9 + 2 * 32)
    assert m.scconv.k4[0].out_channels == 32 and m.scconv.k2[1].out_channels == 32


def test_min_size():
    m = visattn.create("scconv", 32).eval()
    assert m.min_size == 5
    m(torch.randn(1, 32, 5, 5))
    with pytest.raises(ValueError, match="SelfCalibratedConv.*H >= 5"):
        m(torch.randn(1, 32, 4, 9))
    floor = SelfCalibratedConv(32, ceil_mode=False).eval()
    assert floor.min_size == 4  # the official floor pooling runs from H, W = r (a 1 x 1 context)
    floor(torch.randn(1, 32, 4, 7))
    with pytest.raises(ValueError, match="SelfCalibratedConv"):
        floor(torch.randn(1, 32, 9, 3))


@pytest.mark.parametrize("size", [(4, 4), (7, 7), (5, 6), (7, 12)])
@pytest.mark.parametrize("training", [False, True])
def test_floor_pooling_below_2r_has_a_1x1_context_as_official(size, training):
    """SCNet-50's last stage is 7 x 7: the official AvgPool2d(4) gives a 1 x 1 context (floor(7 / 4) = 1)."""
    m = _randomized(32, ceil_mode=False).train(training)
    x = torch.randn(2, 32, *size, dtype=torch.float64)
    assert m.scconv.k2[0](x[:, 16:]).shape[-2:] == (size[0] // 4, size[1] // 4)
    ref, gate = reference_scconv(x, m, training, False, 4, 1)
    torch.testing.assert_close(m(x), ref)
    if not training:
        torch.testing.assert_close(m.attention_map(x), gate)


def test_1x1_context_at_batch_1_in_training_uses_running_statistics():
    m = _randomized(32, ceil_mode=False).train()
    bn = m.scconv.k2[2]
    before = (bn.running_mean.clone(), bn.running_var.clone())
    x = torch.randn(1, 32, 7, 7, dtype=torch.float64)
    y = m(x)  # PyTorch's BN would raise: one value per channel
    assert torch.isfinite(y).all()
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    xb = x[:, 16:]
    eval_context = m.eval().scconv.context(xb)  # the context as in eval: running statistics
    torch.testing.assert_close(m.train().scconv.context(xb), eval_context)


def test_bad_arguments():
    with pytest.raises(ValueError, match="SelfCalibratedConv.*even"):
        SelfCalibratedConv(33)
    with pytest.raises(ValueError, match="SelfCalibratedConv.*even"):
        SelfCalibratedConv(32, out_channels=30 + 1)
    with pytest.raises(ValueError, match="SelfCalibratedConv.*groups"):
        SelfCalibratedConv(32, groups=3)
