"""SimAM against its energy equation, computed with plain Python loops (float64)."""

import math

import pytest
import torch

import visattn
from visattn.modules.simam import SimAM


def reference_simam(x, e_lambda=1e-4):
    """Per channel: y_i = x_i * sigmoid((x_i - mu)^2 / (4 (sum_j (x_j - mu)^2 / (HW - 1) + lambda)) + 1/2)."""
    b, c, h, w = x.shape
    y = torch.empty_like(x)
    for bi in range(b):
        for ci in range(c):
            vals = [float(v) for v in x[bi, ci].flatten()]
            mu = sum(vals) / len(vals)
            var = sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)
            for i in range(h):
                for j in range(w):
                    t = float(x[bi, ci, i, j])
                    inv_e = (t - mu) ** 2 / (4 * (var + e_lambda)) + 0.5
                    y[bi, ci, i, j] = t / (1 + math.exp(-inv_e))
    return y


@pytest.mark.parametrize("size", [(5, 7), (1, 4), (3, 1), (2, 2)])
@pytest.mark.parametrize("e_lambda", [1e-4, 0.5])
def test_matches_energy_equation(size, e_lambda):
    x = torch.randn(2, 3, *size, dtype=torch.float64) * 2 + 0.5
    torch.testing.assert_close(SimAM(3, e_lambda=e_lambda)(x), reference_simam(x, e_lambda))


def test_one_by_one_map_is_finite_and_the_limit():
    m = SimAM(8)
    x = torch.randn(3, 8, 1, 1, dtype=torch.float64, requires_grad=True)
    y = m(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, x * torch.sigmoid(torch.tensor(0.5, dtype=torch.float64)))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_constant_channel_is_finite():
    x = torch.full((1, 4, 3, 3), 2.0)
    torch.testing.assert_close(SimAM(4)(x), x * torch.sigmoid(torch.tensor(0.5)))


def test_low_precision_close_to_float64():
    x = torch.randn(2, 16, 9, 7, dtype=torch.float64)
    ref = SimAM(16)(x)
    for dtype in (torch.bfloat16, torch.float16):
        y = SimAM(16)(x.to(dtype))
        assert y.dtype == dtype
        torch.testing.assert_close(y.double(), ref, atol=2e-2, rtol=2e-2)


def test_parameter_free_and_attention_map():
    m = visattn.create("simam", 64)
    assert visattn.info("simam").parameter_free and not list(m.parameters())
    x = torch.randn(2, 64, 5, 6)
    a = m.attention_map(x)
    assert a.shape == x.shape and ((a > 0.5) & (a < 1)).all()  # sigmoid of something >= 1/2
    torch.testing.assert_close(m(x), x * a)


def test_bad_arguments():
    for lam in (0.0, -1e-4):
        with pytest.raises(ValueError, match="SimAM: e_lambda"):
            SimAM(64, e_lambda=lam)
    with pytest.raises(TypeError, match="e_lambda"):
        visattn.create("simam", 64, lambda_=1e-4)
