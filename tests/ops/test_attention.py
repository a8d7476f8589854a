"""visattn.ops.attention against an explicit float64 softmax(QK^T)V, forward and gradients."""

import pytest
import torch

from visattn.ops import attention_weights, blocked_attention, default_block_size, plain_attention, softmax_attention


def reference(q, k, v, scale, mask=None):
    """softmax(scale * q k^T + mask) v with einsum and an explicit exp / sum (float64)."""
    e = torch.einsum("...nd,...md->...nm", q, k) * scale
    if mask is not None:
        e = e.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else e + mask
    p = torch.exp(e - e.amax(-1, keepdim=True))
    return torch.einsum("...nm,...mc->...nc", p / p.sum(-1, keepdim=True), v)


def qkv(shape_q, m, dv, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    *lead, n, dk = shape_q
    q = torch.randn(*lead, n, dk, generator=g, dtype=dtype)
    k = torch.randn(*lead, m, dk, generator=g, dtype=dtype)
    v = torch.randn(*lead, m, dv, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (q, k, v)]


def grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("n,m,block", [(50, 50, 16), (37, 23, 8), (20, 33, 64), (9, 9, 1)])
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_blocked_matches_reference_forward_and_gradients(n, m, block, scale):
    q, k, v = qkv((2, n, 4), m, 12)
    out = blocked_attention(q, k, v, scale=scale, block_size=block)
    ref = reference(q, k, v, scale)
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v)), strict=True):
        torch.testing.assert_close(a, b)


def test_blocked_leading_dims_and_default_scale():
    q, k, v = qkv((2, 3, 21, 5), 21, 7)  # (B, heads, N, D)
    out = blocked_attention(q, k, v, block_size=4)
    assert out.shape == (2, 3, 21, 7)
    torch.testing.assert_close(out, reference(q, k, v, 5 ** -0.5))


def test_blocked_gradcheck():
    q, k, v = qkv((1, 11, 3), 9, 4)
    assert torch.autograd.gradcheck(lambda q, k, v: blocked_attention(q, k, v, scale=0.7, block_size=4), (q, k, v))


def test_blocked_only_some_inputs_need_grad():
    q, k, v = qkv((1, 13, 3), 13, 6)
    k = k.detach()
    out = blocked_attention(q, k, v, block_size=5)
    gq, gv = grads(out, (q, v))
    rq, rv = grads(reference(q, k, v, 3 ** -0.5), (q, v))
    torch.testing.assert_close(gq, rq)
    torch.testing.assert_close(gv, rv)


def test_blocked_low_precision_computes_energies_in_float32():
    q, k, v = (t.detach() for t in qkv((2, 40, 8), 40, 16, dtype=torch.float32))
    q = q * 4  # large energies: a bf16 softmax would be far off
    ref = reference(q.double(), k.double(), v.double(), 1.0)
    out = blocked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), scale=1.0, block_size=16)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, atol=0.1, rtol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = blocked_attention(q, k, v, scale=1.0, block_size=16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)  # autocast does not reach inside


def test_blocked_never_materialises_the_full_map():
    """Profiled CPU allocations: the plain formulation allocates N x M floats at once, the blocked one never."""
    from torch.profiler import ProfilerActivity, profile

    n = 512
    q, k, v = (t.detach().float().requires_grad_() for t in qkv((1, n, 8), n, 32))
    full = n * n * 4

    def biggest(fn):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn(q, k, v)
            out.backward(torch.ones_like(out))
        return max(e.cpu_memory_usage for e in prof.events())

    assert biggest(lambda q, k, v: plain_attention(q, k, v, scale=1.0)) >= full
    assert biggest(lambda q, k, v: blocked_attention(q, k, v, scale=1.0, block_size=64)) <= full // 4


def test_saved_tensors_are_linear_in_n():
    n = 300
    q, k, v = qkv((1, n, 4), n, 16)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        blocked_attention(q, k, v, block_size=32)
    assert saved and max(saved) < n * n // 10


@pytest.mark.parametrize("efficient", [True, False])
@pytest.mark.parametrize("dv", [6, 10])
def test_attention_dispatch_matches_reference(efficient, dv):
    q, k, v = qkv((2, 2, 19, 6), 17, dv)
    out = softmax_attention(q, k, v, scale=0.5, memory_efficient=efficient)
    ref = reference(q, k, v, 0.5)
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v)), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("efficient", [True, False])
@pytest.mark.parametrize("dv", [6, 10])
def test_attention_masks_follow_sdpa(efficient, dv):
    q, k, v = qkv((2, 3, 11, 6), 11, dv)
    allowed = torch.rand(11, 11, generator=torch.Generator().manual_seed(3)) > 0.4
    allowed |= torch.eye(11, dtype=torch.bool)  # no fully masked row
    additive = torch.randn(2, 3, 11, 11, dtype=torch.float64)
    for mask in (allowed, additive):
        out = softmax_attention(q, k, v, attn_mask=mask, memory_efficient=efficient)
        torch.testing.assert_close(out, reference(q, k, v, 6 ** -0.5, mask))


def test_attention_weights_rows_sum_to_one_in_float32():
    q, k, _ = qkv((2, 7, 3), 9, 1, dtype=torch.float32)
    w = attention_weights(q.bfloat16(), k.bfloat16(), scale=1.0)
    assert w.dtype == torch.float32 and w.shape == (2, 7, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 7))


def test_compiled_unequal_widths_matches_eager():
    q, k, v = (t.detach().float() for t in qkv((2, 30, 4), 30, 16))
    fn = torch.compile(lambda q, k, v: softmax_attention(q, k, v, scale=1.0), fullgraph=True, backend="eager")
    torch.testing.assert_close(fn(q, k, v), softmax_attention(q, k, v, scale=1.0))


def test_block_size_rules():
    assert default_block_size(1, 9216) == (1 << 21) // 9216
    assert default_block_size(64, 1 << 20) == 16
    q, k, v = qkv((1, 5, 2), 5, 2)
    with pytest.raises(ValueError, match="block_size"):
        blocked_attention(q, k, v, block_size=0)


@pytest.mark.gpu
def test_blocked_on_cuda_matches_reference():
    q, k, v = qkv((2, 300, 8), 300, 64, dtype=torch.float32)
    ref = reference(*(t.detach().double() for t in (q, k, v)), 1.0)
    qc, kc, vc = (t.detach().cuda().requires_grad_() for t in (q, k, v))
    out = blocked_attention(qc, kc, vc, scale=1.0, block_size=64)
    torch.testing.assert_close(out.double().cpu(), ref, atol=1e-4, rtol=1e-4)
    out.sum().backward()
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    reference(qd, kd, vd, 1.0).sum().backward()
    for a, b in ((qc, qd), (kc, kd), (vc, vd)):
        torch.testing.assert_close(a.grad.double().cpu(), b.grad, atol=1e-3, rtol=1e-3)


# -- the size rule: the explicit map where it is small, the lean kernels where it is large ------------------
def _paths(monkeypatch):
    """Record which path softmax_attention takes: "plain", "sdpa" or "blocked"."""
    from visattn.ops import attention

    taken = []
    for name, label in (("plain_attention", "plain"), ("blocked_attention", "blocked")):
        real = getattr(attention, name)
        monkeypatch.setattr(attention, name, lambda *a, _r=real, _l=label, **k: taken.append(_l) or _r(*a, **k))
    real_sdpa = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: taken.append("sdpa") or real_sdpa(*a, **k))
    return taken


@pytest.mark.size_rule
@pytest.mark.parametrize("dv", [8, 32])  # equal widths (non-local: SDPA) and unequal (PAM: blocked)
def test_size_rule_picks_the_explicit_map_up_to_the_documented_bytes(monkeypatch, dv):
    from visattn.ops import attention

    assert attention.EXPLICIT_MAX_BYTES == 64 * 2**20  # as documented in the module and the notes
    taken = _paths(monkeypatch)
    # B = 1, N = M = 4096 (64 x 64): 4096 * 4096 * 4 bytes = 64 MiB exactly (float32 energies): written out
    q, k, v = torch.randn(1, 4096, 8), torch.randn(1, 4096, 8), torch.randn(1, 4096, dv)
    assert attention.explicit_map_bytes(q, k) == 64 * 2**20
    small = softmax_attention(q, k, v, scale=1.0)
    assert taken == ["plain"]
    # one more key: over the threshold, the lean kernel
    taken.clear()
    k2, v2 = torch.randn(1, 4097, 8), torch.randn(1, 4097, dv)
    softmax_attention(q, k2, v2, scale=1.0)
    assert taken == (["sdpa"] if dv == 8 else ["blocked"])
    # the batch (and heads) count: two maps of 32 MiB + one column are over it
    taken.clear()
    softmax_attention(torch.randn(2, 2048, 8), torch.randn(2, 4097, 8), torch.randn(2, 4097, dv), scale=1.0)
    assert taken == (["sdpa"] if dv == 8 else ["blocked"])
    # float64 energies take twice the bytes
    assert attention.explicit_map_bytes(q.double(), k.double()) == 128 * 2**20
    torch.testing.assert_close(small, plain_attention(q, k, v, scale=1.0))


@pytest.mark.size_rule
@pytest.mark.parametrize("dv", [8, 32])
def test_both_sides_of_the_threshold_give_the_same_values_and_gradients(monkeypatch, dv):
    from visattn.ops import attention

    q, k, v = (torch.randn(2, 40, 8, dtype=torch.float64, requires_grad=True),
               torch.randn(2, 40, 8, dtype=torch.float64, requires_grad=True),
               torch.randn(2, 40, dv, dtype=torch.float64, requires_grad=True))
    results = []
    for threshold in (2**40, -1):  # explicit map, then the lean kernel, on the same inputs
        monkeypatch.setattr(attention, "EXPLICIT_MAX_BYTES", threshold)
        taken = _paths(monkeypatch)
        out = softmax_attention(q, k, v, scale=0.7)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, dv, dtype=torch.float64)).sum(), (q, k, v))
        results.append((out, grads, taken[0]))
        monkeypatch.undo()
    assert [r[2] for r in results] == ["plain", "sdpa" if dv == 8 else "blocked"]
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.size_rule
def test_small_maps_compile_in_one_graph():
    from visattn.ops import attention

    q, k, v = torch.randn(1, 16, 8), torch.randn(1, 16, 8), torch.randn(1, 16, 8)
    assert attention.explicit_map_bytes(q, k) <= attention.EXPLICIT_MAX_BYTES
    fn = torch.compile(lambda q, k, v: softmax_attention(q, k, v, scale=1.0), fullgraph=True, backend="eager")
    torch.testing.assert_close(fn(q, k, v), plain_attention(q, k, v, scale=1.0))
