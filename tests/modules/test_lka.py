"""LKA and VAN's attention block (Guo et al.) against float64 references written with per-tap loops."""

import math

import pytest
import torch
import torch.nn.functional as F

import visattn
from visattn.modules.lka import LargeKernelAttention, VanAttention


def depthwise_ref(v, weight, bias, dilation):
    """Zero-padded 'same' depthwise conv with dilation, one shifted slice per tap: weight (C, 1, k, k)."""
    k = weight.shape[-1]
    pad = dilation * (k - 1) // 2
    h, w = v.shape[-2:]
    vp = F.pad(v, (pad, pad, pad, pad))
    out = bias[None, :, None, None].expand_as(v).clone()
    for i in range(k):
        for j in range(k):
            tap = vp[:, :, i * dilation:i * dilation + h, j * dilation:j * dilation + w]
            out = out + weight[None, :, 0, i, j, None, None] * tap
    return out


def pointwise_ref(v, conv):
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], v) + conv.bias[None, :, None, None]


def reference_lka(x, m, kernel=21, dilation=3):
    """Eq. 2: Attention = Conv1x1(DW-D-Conv(DW-Conv(F))); Output = Attention (x) F (no sigmoid)."""
    assert m.conv0.kernel_size == (2 * dilation - 1,) * 2
    assert m.conv_spatial.kernel_size == (math.ceil(kernel / dilation),) * 2
    attn = depthwise_ref(x, m.conv0.weight, m.conv0.bias, 1)
    attn = depthwise_ref(attn, m.conv_spatial.weight, m.conv_spatial.bias, dilation)
    return x * pointwise_ref(attn, m.conv1)


def gelu_exact(v):
    return 0.5 * v * (1 + torch.erf(v / math.sqrt(2)))


def reference_van(x, m):
    """Official SpatialAttention: x + proj_2(LKA(GELU(proj_1(x))))."""
    u = gelu_exact(pointwise_ref(x, m.proj_1))
    return x + pointwise_ref(reference_lka(u, m.spatial_gating_unit), m.proj_2)


@pytest.mark.parametrize("shape", [(2, 6, 9, 13), (1, 6, 1, 1), (1, 6, 25, 4)])
def test_lka_matches_reference(shape):
    m = LargeKernelAttention(6).double()
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_lka(x, m))
    torch.testing.assert_close(m.attention_map(x) * x, m(x))


@pytest.mark.parametrize("kernel,dilation", [(28, 4), (14, 3), (9, 1)])
def test_lka_other_decompositions(kernel, dilation):
    m = LargeKernelAttention(4, kernel_size=kernel, dilation=dilation).double()
    x = torch.randn(2, 4, 7, 10, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_lka(x, m, kernel, dilation))


def test_lka_paper_kernels_and_receptive_field():
    m = LargeKernelAttention(4).double()
    assert (m.conv0.kernel_size, m.conv0.padding, m.conv0.groups) == ((5, 5), (2, 2), 4)
    assert (m.conv_spatial.kernel_size, m.conv_spatial.padding, m.conv_spatial.dilation) == ((7, 7), (9, 9), (3, 3))
    assert m.conv_spatial.groups == 4 and m.conv1.kernel_size == (1, 1)
    # 5x5 then 7x7 with dilation 3: offsets a + 3b, |a| <= 2, |b| <= 3 cover every offset in [-11, 11],
    # a 23 x 23 window containing the K = 21 kernel the decomposition stands for.
    x = torch.randn(1, 4, 31, 31, dtype=torch.float64, requires_grad=True)
    m.attention_map(x)[0, :, 15, 15].sum().backward()
    support = x.grad.abs().sum(1)[0] > 0
    expected = torch.zeros(31, 31, dtype=torch.bool)
    expected[15 - 11:15 + 12, 15 - 11:15 + 12] = True
    assert torch.equal(support, expected)


def test_van_matches_reference_and_official_state_dict_names():
    m = VanAttention(6).double()
    x = torch.randn(2, 6, 8, 11, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_van(x, m))
    official = {f"{p}.{t}" for p in ("proj_1", "proj_2") for t in ("weight", "bias")}
    official |= {f"spatial_gating_unit.{c}.{t}" for c in ("conv0", "conv_spatial", "conv1") for t in ("weight", "bias")}
    assert set(m.state_dict()) == official
    u = gelu_exact(pointwise_ref(x, m.proj_1))
    torch.testing.assert_close(m.attention_map(x), m.spatial_gating_unit.attention_map(u))


def test_parameter_counts():
    c = 64
    lka = c * 25 + c + c * 49 + c + c * c + c
    assert sum(p.numel() for p in visattn.create("lka", c).parameters()) == lka
    assert sum(p.numel() for p in visattn.create("van", c).parameters()) == lka + 2 * (c * c + c)
    assert sum(p.numel() for p in LargeKernelAttention(c, bias=False).parameters()) == c * 25 + c * 49 + c * c


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"LargeKernelAttention: .*ceil\(K / d\) = 4"):
        LargeKernelAttention(8, kernel_size=7, dilation=2)
    with pytest.raises(ValueError, match="LargeKernelAttention"):
        LargeKernelAttention(8, dilation=0)
    with pytest.raises(ValueError, match="LargeKernelAttention"):
        VanAttention(8, kernel_size=20, dilation=5)
    with pytest.raises(ValueError, match=r"VanAttention.*\(2, 7, 5, 5\)"):
        VanAttention(8)(torch.randn(2, 7, 5, 5))
    with pytest.raises(ValueError, match="LargeKernelAttention"):
        LargeKernelAttention(8)(torch.randn(8, 5, 5))
