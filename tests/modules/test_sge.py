"""SGE against the paper's equations (float64, a loop over groups) and the official code's statistics."""

import pytest
import torch

import visattn
from tests._build import randomize_
from visattn.modules.sge import SpatialGroupEnhance


def reference_sge(x, groups, gamma, beta, eps=1e-5):
    """Per group: g = mean_i x_i; c_i = g . x_i; c^ = (c - mean) / (std + eps), std unbiased; x_i sigmoid(a c^ + b)."""
    b, c, h, w = x.shape
    cg = c // groups
    out = torch.empty_like(x)
    for n in range(b):
        for k in range(groups):
            xs = x[n, k * cg:(k + 1) * cg].reshape(cg, h * w)  # [C/G, m]
            g = xs.mean(dim=1)  # [C/G]
            ci = torch.einsum("d,dm->m", g, xs)  # [m]
            ci = (ci - ci.mean()) / (ci.std(unbiased=True) + eps)
            a = torch.sigmoid(gamma[k] * ci + beta[k])
            out[n, k * cg:(k + 1) * cg] = (xs * a).reshape(cg, h, w)
    return out


@pytest.mark.parametrize("channels,groups,size", [(64, 64, (5, 7)), (24, 4, (6, 3)), (12, 1, (4, 4)), (16, 8, (1, 2))])
def test_matches_paper_equations(channels, groups, size):
    m = randomize_(SpatialGroupEnhance(channels, groups=groups), std=0.8).double()
    x = torch.randn(2, channels, *size, dtype=torch.float64)
    ref = reference_sge(x, groups, m.weight.detach().flatten(), m.bias.detach().flatten())
    torch.testing.assert_close(m(x), ref)
    att = m.attention_map(x)
    assert att.shape == (2, groups, *size)
    torch.testing.assert_close(m(x), (x.view(2, groups, -1, *size) * att.unsqueeze(2)).view_as(x))


def test_official_init_and_parameter_count():
    m = visattn.create("sge", 128)
    assert m.groups == 64 and m.weight.shape == (1, 64, 1, 1) and m.bias.shape == (1, 64, 1, 1)
    assert torch.equal(m.weight, torch.zeros(1, 64, 1, 1)) and torch.equal(m.bias, torch.ones(1, 64, 1, 1))
    assert sum(p.numel() for p in m.parameters()) == 128
    x = torch.randn(2, 128, 5, 6)
    torch.testing.assert_close(m(x), x * torch.sigmoid(torch.tensor(1.0)))  # gamma = 0: starts as x * sigmoid(1)


def test_single_position_is_finite_and_gates_with_sigmoid_bias():
    # H * W = 1: the official unbiased std is NaN; visattn takes the normalised value as 0.
    m = randomize_(SpatialGroupEnhance(32, groups=8), std=0.8).double()
    x = torch.randn(3, 32, 1, 1, dtype=torch.float64, requires_grad=True)
    y = m(x)
    expected = x.view(3, 8, 4) * torch.sigmoid(m.bias.view(1, 8, 1))
    torch.testing.assert_close(y, expected.view_as(x))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_constant_map_has_finite_gradients():
    m = randomize_(SpatialGroupEnhance(8, groups=2), std=0.8).double()
    x = torch.ones(1, 8, 4, 5, dtype=torch.float64, requires_grad=True)
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_gradcheck_small_groups():
    m = randomize_(SpatialGroupEnhance(8, groups=2), std=0.8).double()
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"SpatialGroupEnhance: channels \(96\) must be divisible by groups \(64\)"):
        SpatialGroupEnhance(96)
    with pytest.raises(ValueError, match="SpatialGroupEnhance: channels"):
        visattn.create("sge", 32)  # fewer channels than the default 64 groups
    with pytest.raises(ValueError, match="SpatialGroupEnhance: groups"):
        SpatialGroupEnhance(64, groups=0)
    assert SpatialGroupEnhance(96, groups=32).groups == 32
