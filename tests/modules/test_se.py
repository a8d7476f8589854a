"""SE against the paper's equations (float64, einsum) and against timm / torchvision."""

import pytest
import torch

import visattn
from visattn.modules.se import SqueezeExcite


def reference_se(x, w1, b1, w2, b2, squeeze="avg", gate=torch.sigmoid):
    """Eqs. 2-4 of Hu et al.: z = F_sq(u); s = gate(W2 relu(W1 z)); x~_c = s_c u_c."""
    if squeeze == "avg":
        z = x.mean(dim=(2, 3))
    elif squeeze == "max":
        z = x.amax(dim=(2, 3))
    else:
        z = x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))
    hidden = torch.relu(torch.einsum("rc,bc->br", w1, z) + b1)
    s = gate(torch.einsum("cr,br->bc", w2, hidden) + b2)
    return torch.einsum("bchw,bc->bchw", x, s)


@pytest.mark.parametrize("squeeze", ["avg", "max", "avgmax"])
@pytest.mark.parametrize("gate,fn", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("relu", torch.relu)])
def test_matches_paper_equations(squeeze, gate, fn):
    m = SqueezeExcite(32, reduction=4, squeeze=squeeze, gate_layer=gate).double()
    x = torch.randn(3, 32, 5, 7, dtype=torch.float64)
    w1, b1 = m.fc1.weight[:, :, 0, 0], m.fc1.bias
    w2, b2 = m.fc2.weight[:, :, 0, 0], m.fc2.bias
    torch.testing.assert_close(m(x), reference_se(x, w1, b1, w2, b2, squeeze, fn))


def test_parameter_count_and_width():
    assert sum(p.numel() for p in visattn.create("se", 256).parameters()) == 8464
    assert SqueezeExcite(256, reduction=16).fc1.out_channels == 16
    assert SqueezeExcite(100, reduction=16).fc1.out_channels == 6  # floor, no rounding to 8
    assert SqueezeExcite(8, reduction=16).fc1.out_channels == 1
    assert SqueezeExcite(64, rd_channels=10).fc1.out_channels == 10
    assert sum(p.numel() for p in SqueezeExcite(256, bias=False).parameters()) == 2 * 256 * 16


def test_bad_arguments():
    with pytest.raises(ValueError, match="squeeze"):
        SqueezeExcite(64, squeeze="median")
    with pytest.raises(ValueError, match="activation"):
        SqueezeExcite(64, gate_layer="softmaxx")
    with pytest.raises(TypeError, match="reduction"):
        visattn.create("se", 64, reductoin=4)


def test_equals_timm_semodule():
    timm_se = pytest.importorskip("timm.layers.squeeze_excite")
    ref = timm_se.SEModule(64, rd_ratio=1 / 16, rd_divisor=1).eval()
    m = SqueezeExcite(64).eval()
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 64, 9, 11)
    torch.testing.assert_close(m(x), ref(x))


def test_equals_torchvision_squeeze_excitation():
    ops = pytest.importorskip("torchvision.ops")
    ref = ops.SqueezeExcitation(64, 4).eval()
    m = SqueezeExcite(64, rd_channels=4).eval()
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 64, 9, 11)
    torch.testing.assert_close(m(x), ref(x))
