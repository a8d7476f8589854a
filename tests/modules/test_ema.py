"""EMA against the EM equations written step by step (float64), and the moving average of the bases."""

import math

import pytest
import torch

import visattn
from tests._build import randomize_
from visattn.modules.ema import EMAttention


def _bn_eval(t, bn):
    shape = (1, -1) + (1,) * (t.dim() - 2)
    return ((t - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def reference_em(x, m):
    """conv1, then T EM steps, official form: E z_nk = softmax_k(x_n . mu_k); M mu_k = sum_n z_nk x_n /
    (1e-6 + sum_n z_nk), mu_k <- mu_k / (1e-6 + ||mu_k||). Returns (features, mu_T, z_T)."""
    b, c, h, w = x.shape
    feats = torch.einsum("oc,bchw->bohw", m.conv1.weight[:, :, 0, 0], x) + m.conv1.bias[None, :, None, None]
    xs = feats.reshape(b, c, h * w)  # [B, C, N]
    mu = m.mu.expand(b, -1, -1).clone()  # [B, C, K]
    for _ in range(m.iterations):
        logits = torch.einsum("bcn,bck->bnk", xs, mu)
        z = torch.exp(logits - logits.amax(2, keepdim=True))
        z = z / z.sum(2, keepdim=True)  # E step
        mu = torch.einsum("bcn,bnk->bck", xs, z) / (1e-6 + z.sum(1))[:, None, :]  # M step
        mu = mu / (1e-6 + torch.sqrt((mu * mu).sum(1, keepdim=True)))
    return feats, mu, z


def reference_ema(x, m):
    b, c, h, w = x.shape
    _, mu, z = reference_em(x, m)
    rec = torch.relu(torch.einsum("bck,bnk->bcn", mu, z)).view(b, c, h, w)  # x~ = Z mu, ReLU
    y = _bn_eval(torch.einsum("oc,bchw->bohw", m.conv2[0].weight[:, :, 0, 0], rec), m.conv2[1])
    return torch.relu(x + y)


def _module(channels=16, **kw):
    m = randomize_(EMAttention(channels, **kw), std=0.2).double()
    m.conv2[1].running_mean.uniform_(-0.5, 0.5)
    m.conv2[1].running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize("size", [(5, 7), (1, 1), (3, 1)])
@pytest.mark.parametrize("bases,iterations", [(64, 3), (5, 1), (8, 4)])
def test_eval_matches_em_equations(size, bases, iterations):
    m = _module(bases=bases, iterations=iterations).eval()
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    mu0 = m.mu.clone()
    torch.testing.assert_close(m(x), reference_ema(x, m))
    assert torch.equal(m.mu, mu0)  # no update of the bases in eval mode


def test_training_updates_bases_by_moving_average():
    m = _module(bases=8).train()
    x = torch.randn(3, 16, 4, 6, dtype=torch.float64)
    mu0 = m.mu.clone()
    _, mu_t, _ = reference_em(x, m)
    m(x)
    torch.testing.assert_close(m.mu, 0.9 * mu0 + 0.1 * mu_t.mean(0, keepdim=True))
    assert not m.mu.requires_grad
    m.eval()
    mu1 = m.mu.clone()
    m(x)
    assert torch.equal(m.mu, mu1)


def test_attention_map_is_last_responsibilities():
    m = _module(bases=6).eval()
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    amap = m.attention_map(x)
    assert amap.shape == (2, 6, 3, 5)
    _, _, z = reference_em(x, m)
    torch.testing.assert_close(amap, z.transpose(1, 2).reshape(2, 6, 3, 5))
    torch.testing.assert_close(amap.sum(1), torch.ones(2, 3, 5, dtype=torch.float64))


def test_initial_bases_and_init():
    m = EMAttention(32)
    assert m.mu.shape == (1, 32, 64) and "mu" in dict(m.named_buffers())
    torch.testing.assert_close(m.mu.norm(dim=1), torch.ones(1, 64), atol=1e-5, rtol=1e-5)
    assert abs(m.conv1.weight.std().item() - math.sqrt(2 / 32)) < 0.05  # N(0, sqrt(2 / (k*k*out)))
    assert sum(p.numel() for p in visattn.create("ema", 32).parameters()) == 32 * 32 + 32 + 32 * 32 + 2 * 32


def test_gradients_through_em_by_default_and_official_stop():
    x = torch.randn(2, 16, 4, 4)
    m = randomize_(EMAttention(16, bases=8))
    m(x).sum().backward()
    assert m.conv1.weight.grad is not None and m.conv1.weight.grad.abs().sum() > 0
    m = randomize_(EMAttention(16, bases=8, stop_em_grad=True))
    m(x).sum().backward()
    assert m.conv1.weight.grad is None  # official: no gradient reaches conv1
    assert m.conv2[0].weight.grad.abs().sum() > 0


def test_bad_arguments():
    for kw in ({"bases": 0}, {"iterations": 0}, {"momentum": 1.5}):
        with pytest.raises(ValueError, match="EMAttention"):
            EMAttention(16, **kw)
    with pytest.raises(ValueError, match="EMAttention"):
        EMAttention(16)(torch.randn(2, 8, 4, 4))
