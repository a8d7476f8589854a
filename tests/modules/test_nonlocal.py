"""Non-local block against eqs. 1-6 of Wang et al. written out in float64 (einsum, explicit N x N)."""

import pytest
import torch
import torch.nn.functional as F

import visattn
from tests._reference import assert_same_forward_and_gradients
from visattn.modules.nonlocal_block import NonLocalBlock

MODES = ["embedded_gaussian", "gaussian", "dot_product", "concatenation"]


def conv1x1(x, conv):
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias[None, :, None, None]


def reference_nonlocal(x, m, mode, sub_sample=False, scaled=False):
    """y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j); z = BN(W_z y) + x (BN in eval: running statistics)."""
    b, c, h, w = x.shape
    xp = F.max_pool2d(x, 2, ceil_mode=True) if sub_sample else x
    g = conv1x1(xp, m.g).flatten(2)  # [B, Ci, N]
    if mode == "gaussian":
        theta, phi = x.flatten(2), xp.flatten(2)
    else:
        theta, phi = conv1x1(x, m.theta).flatten(2), conv1x1(xp, m.phi).flatten(2)
    n = phi.shape[-1]
    if mode == "concatenation":
        ci = theta.shape[1]
        pairs = torch.cat([theta[:, :, :, None].expand(b, ci, h * w, n), phi[:, :, None, :].expand(b, ci, h * w, n)],
                          dim=1)  # [B, 2Ci, HW, N]: [theta_i, phi_j]
        f = torch.relu(torch.einsum("k,bkij->bij", m.concat_project.weight[0], pairs))
        weights = f / n
    else:
        e = torch.einsum("bci,bcj->bij", theta, phi)
        if mode == "dot_product":
            weights = e / n
        else:
            if scaled:
                e = e / theta.shape[1] ** 0.5
            f = torch.exp(e - e.amax(-1, keepdim=True))
            weights = f / f.sum(-1, keepdim=True)
    y = torch.einsum("bij,bcj->bci", weights, g).reshape(b, -1, h, w)
    wy = conv1x1(y, m.w_z)
    bn = m.norm
    z = (wy - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
    return z * bn.weight[None, :, None, None] + bn.bias[None, :, None, None] + x, weights


def randomized(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
        m.norm.running_mean.copy_(torch.randn(m.channels, generator=g, dtype=torch.float64) * 0.1)
        m.norm.running_var.copy_(torch.rand(m.channels, generator=g, dtype=torch.float64) + 0.5)
    return m.eval()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("efficient", [True, False])
def test_matches_paper_equations(mode, sub_sample, efficient):
    m = randomized(NonLocalBlock(16, mode=mode, sub_sample=sub_sample, memory_efficient=efficient).double())
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64, requires_grad=True)
    if mode == "gaussian":
        x = (x * 0.3).detach().requires_grad_()  # exp(x_i^T x_j) on raw inputs: keep the energies moderate
    out = m(x)
    ref, weights = reference_nonlocal(x, m, mode, sub_sample)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(m.attention_map(x), weights)
    upstream = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, upstream)
    (rx,) = torch.autograd.grad(ref, x, upstream)
    torch.testing.assert_close(gx, rx)


@pytest.mark.parametrize("mode", MODES)
def test_memory_efficient_equals_reference_path_with_parameter_gradients(mode):
    torch.manual_seed(0)
    fast = randomized(NonLocalBlock(12, mode=mode, sub_sample=True).double()).train()
    slow = NonLocalBlock(12, mode=mode, sub_sample=True, memory_efficient=False).double().train()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(3, 12, 7, 6, dtype=torch.float64) * 0.5
    assert_same_forward_and_gradients(fast, slow, x)


def test_scaled_energies_follow_official_code():
    m = randomized(NonLocalBlock(8, scaled=True).double())
    x = torch.randn(1, 8, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_nonlocal(x, m, "embedded_gaussian", scaled=True)[0])
    plain = NonLocalBlock(8).double().eval()
    plain.load_state_dict(m.state_dict())
    assert not torch.allclose(plain(x), m(x))


@pytest.mark.parametrize("mode", MODES)
def test_identity_at_initialisation_and_zero_initialised_bn(mode):
    m = NonLocalBlock(32, mode=mode)
    x = torch.randn(2, 32, 6, 5)
    assert torch.equal(m(x), x)
    assert torch.count_nonzero(m.norm.weight) == 0 and torch.count_nonzero(m.norm.bias) == 0
    m = NonLocalBlock(32, mode=mode, norm_layer=None)
    assert torch.equal(m(x), x) and torch.count_nonzero(m.w_z.weight) == 0


def test_structure_and_defaults():
    m = visattn.create("nonlocal", 64)
    assert m.inter_channels == 32 and m.mode == "embedded_gaussian"
    assert m.theta.out_channels == m.phi.out_channels == m.g.out_channels == 32
    assert m.w_z.in_channels == 32 and m.w_z.out_channels == 64
    # theta, phi, g, W_z with biases, BN; the paper's block has no other parameters
    assert sum(p.numel() for p in m.parameters()) == 3 * (64 * 32 + 32) + (32 * 64 + 64) + 2 * 64
    g = NonLocalBlock(64, mode="gaussian")
    assert not any(n.startswith(("theta", "phi")) for n, _ in g.named_parameters())
    assert NonLocalBlock(64, mode="concatenation").concat_project.weight.shape == (1, 64)
    assert NonLocalBlock(64, inter_channels=8).g.out_channels == 8


@pytest.mark.parametrize("size", [(1, 1), (1, 4), (3, 5), (2, 2)])
def test_sub_sampling_any_size(size):
    m = randomized(NonLocalBlock(8, mode="dot_product", sub_sample=True).double())
    x = torch.randn(1, 8, *size, dtype=torch.float64)
    ref, weights = reference_nonlocal(x, m, "dot_product", sub_sample=True)
    torch.testing.assert_close(m(x), ref)
    assert weights.shape[-1] == -(-size[0] // 2) * -(-size[1] // 2)


def test_softmax_weights_in_float32_under_autocast():
    m = randomized(NonLocalBlock(16).double()).float()
    x = torch.randn(1, 16, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = m.attention_map(x)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a.sum(-1), torch.ones(1, 36))


def test_bad_arguments():
    with pytest.raises(ValueError, match="NonLocalBlock: mode"):
        NonLocalBlock(16, mode="cosine")
    with pytest.raises(ValueError, match="NonLocalBlock: inter_channels"):
        NonLocalBlock(16, inter_channels=0)
    with pytest.raises(ValueError, match="NonLocalBlock"):
        NonLocalBlock(16)(torch.randn(1, 15, 4, 4))
