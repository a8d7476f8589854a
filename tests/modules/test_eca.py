"""ECA against the paper's equations (float64, explicit loops over the channel window) and timm's EcaModule."""

import math

import pytest
import torch

import visattn
from tests._build import randomize_
from visattn.modules.eca import EfficientChannelAttention, eca_kernel_size


def reference_eca(x, weight):
    """Eq. 11: omega_i = sigma(sum_{j=1..k} w_j y_{i + j - (k+1)/2}), zero outside [0, C); y = GAP(x)."""
    b, c = x.shape[:2]
    k = weight.numel()
    half = (k - 1) // 2
    y = x.mean(dim=(2, 3))  # [B, C]
    logits = torch.zeros(b, c, dtype=x.dtype)
    for i in range(c):
        for j in range(k):
            src = i + j - half
            if 0 <= src < c:
                logits[:, i] += weight[j] * y[:, src]
    return x * torch.sigmoid(logits)[:, :, None, None]


@pytest.mark.parametrize("channels,expected", [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_adaptive_kernel_size(channels, expected):
    # t = int(|(log2 C + 1) / 2|): 64 -> 3, 128 -> 4 -> 5, 256 -> int(4.5) = 4 -> 5, 2048 -> 6 -> 7.
    t = int(abs((math.log2(channels) + 1) / 2))
    assert (t if t % 2 else t + 1) == expected
    assert eca_kernel_size(channels) == expected
    m = visattn.create("eca", channels)
    assert m.kernel_size == expected == m.conv.kernel_size[0]
    assert sum(p.numel() for p in m.parameters()) == expected  # parameters = k


def test_kernel_size_options():
    assert EfficientChannelAttention(64, kernel_size=9).kernel_size == 9
    assert EfficientChannelAttention(64, gamma=1, b=0).kernel_size == 7  # t = 6 -> 7
    assert EfficientChannelAttention(4).kernel_size == 1  # no clamp to 3 (timm clamps)
    assert visattn.info("eca").defaults["kernel_size"] is None


@pytest.mark.parametrize("channels,kernel_size", [(32, None), (20, 7), (16, 1)])
def test_matches_paper_equations(channels, kernel_size):
    m = randomize_(EfficientChannelAttention(channels, kernel_size=kernel_size), std=0.7).double()
    x = torch.randn(3, channels, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_eca(x, m.conv.weight.detach().flatten()))
    torch.testing.assert_close(m(x), x * m.attention_map(x))
    assert m.attention_map(x).shape == (3, channels, 1, 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="EfficientChannelAttention: kernel_size"):
        EfficientChannelAttention(64, kernel_size=4)
    with pytest.raises(ValueError, match="EfficientChannelAttention: kernel_size"):
        EfficientChannelAttention(64, kernel_size=0)


@pytest.mark.parametrize("channels", [64, 128, 2048])
def test_equals_timm_eca_module(channels):
    timm_eca = pytest.importorskip("timm.layers.eca")
    ref = timm_eca.EcaModule(channels).eval()
    m = EfficientChannelAttention(channels).eval()
    assert ref.conv.kernel_size == m.conv.kernel_size
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, channels, 6, 5)
    torch.testing.assert_close(m(x), ref(x))


def test_equals_timm_eca_module_fixed_kernel():
    timm_eca = pytest.importorskip("timm.layers.eca")
    ref = timm_eca.EcaModule(kernel_size=9).eval()
    m = EfficientChannelAttention(48, kernel_size=9).eval()
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 48, 3, 4)
    torch.testing.assert_close(m(x), ref(x))
