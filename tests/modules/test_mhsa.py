"""MHSA and the Transformer block against Vaswani et al.'s equations (float64 einsum) and torch.nn."""

import math

import pytest
import torch
from torch import nn

import visattn
from visattn.modules.mhsa import MultiHeadSelfAttention, TransformerBlock, sine_position_embedding


def tokens_of(x):
    return x.flatten(2).transpose(1, 2)


def image_of(t, h, w):
    return t.transpose(1, 2).reshape(t.shape[0], -1, h, w)


def reference_mhsa(x, m, pos=None, mask=None):
    """Concat_i softmax((X W_i^Q)(X W_i^K)^T / sqrt(d_k) + M) X W_i^V, then W^O; pos added to the q/k input."""
    b, c, h, w = x.shape
    t = tokens_of(x)
    qk_in = t if pos is None else t + pos
    wq, wk, wv = m.in_proj_weight.chunk(3)
    bq, bk, bv = m.in_proj_bias.chunk(3)
    heads, d = m.num_heads, c // m.num_heads
    q = (torch.einsum("oc,bnc->bno", wq, qk_in) + bq).reshape(b, -1, heads, d)
    k = (torch.einsum("oc,bnc->bno", wk, qk_in) + bk).reshape(b, -1, heads, d)
    v = (torch.einsum("oc,bnc->bno", wv, t) + bv).reshape(b, -1, heads, d)
    e = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(d)
    if mask is not None:
        mask = mask.reshape(b, heads, *mask.shape[-2:]) if mask.dim() == 3 else mask
        e = e.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else e + mask
    p = torch.exp(e - e.amax(-1, keepdim=True))
    p = p / p.sum(-1, keepdim=True)
    out = torch.einsum("bhij,bjhd->bihd", p, v).reshape(b, -1, c)
    return image_of(torch.einsum("oc,bnc->bno", m.out_proj.weight, out) + m.out_proj.bias, h, w), p


def random_masks(b, heads, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    blocked = torch.rand(n, n, generator=g) > 0.6
    blocked &= ~torch.eye(n, dtype=torch.bool)  # every query keeps itself: no fully masked row
    blocked3 = (torch.rand(b * heads, n, n, generator=g) > 0.6) & ~torch.eye(n, dtype=torch.bool)
    additive = torch.randn(n, n, generator=g, dtype=torch.float64)
    additive3 = torch.randn(b * heads, n, n, generator=g, dtype=torch.float64)
    return [None, blocked, blocked3, additive, additive3]


@pytest.mark.parametrize("efficient", [True, False])
@pytest.mark.parametrize("mask_id", range(5))
def test_matches_paper_equations_with_masks(efficient, mask_id):
    m = MultiHeadSelfAttention(16, num_heads=4, memory_efficient=efficient).double()
    with torch.no_grad():
        m.in_proj_bias.normal_()
        m.out_proj.bias.normal_()
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64, requires_grad=True)
    mask = random_masks(2, 4, 15)[mask_id]
    out = m(x, mask)
    ref, p = reference_mhsa(x, m, mask=mask)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(m.attention_map(x, mask), p)
    up = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, up)[0], torch.autograd.grad(ref, x, up)[0])


@pytest.mark.parametrize("efficient", [True, False])
@pytest.mark.parametrize("mask_id", range(5))
def test_equals_torch_multihead_attention(efficient, mask_id):
    ref = nn.MultiheadAttention(16, 4, batch_first=True).double().eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    m = MultiHeadSelfAttention(16, num_heads=4, memory_efficient=efficient).double().eval()
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    mask = random_masks(2, 4, 15, seed=1)[mask_id]
    t = tokens_of(x)
    expected, weights = ref(t, t, t, attn_mask=mask, average_attn_weights=False)
    torch.testing.assert_close(m(x, mask), image_of(expected, 3, 5))
    torch.testing.assert_close(m.attention_map(x, mask), weights)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("mask_id", [0, 1, 4])
def test_transformer_block_equals_torch_encoder_layer(norm_first, mask_id):
    ref = nn.TransformerEncoderLayer(16, 4, dim_feedforward=64, dropout=0.0, activation="relu", batch_first=True,
                                     norm_first=norm_first).double()
    block = TransformerBlock(16, num_heads=4, norm_first=norm_first).double()
    state = {k.replace("self_attn.", "attn."): v for k, v in ref.state_dict().items()}
    block.load_state_dict(state)
    mask = random_masks(2, 4, 15, seed=2)[mask_id]
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    for mode in ("train", "eval"):
        getattr(ref, mode)()
        getattr(block, mode)()
        expected = image_of(ref(tokens_of(x), src_mask=mask), 3, 5)
        torch.testing.assert_close(block(x, mask), expected)


def test_transformer_block_ffn_and_add_norm_equations():
    block = TransformerBlock(8, num_heads=2).double().eval()
    x = torch.randn(1, 8, 2, 3, dtype=torch.float64)
    t = tokens_of(x)
    a = tokens_of(reference_mhsa(x, block.attn)[0])
    ln = nn.functional.layer_norm
    t1 = ln(t + a, (8,), block.norm1.weight, block.norm1.bias)
    ffn = torch.relu(t1 @ block.linear1.weight.T + block.linear1.bias) @ block.linear2.weight.T + block.linear2.bias
    t2 = ln(t1 + ffn, (8,), block.norm2.weight, block.norm2.bias)  # LayerNorm(x + Sublayer(x)), twice
    torch.testing.assert_close(block(x), image_of(t2, 2, 3))
    assert block.linear1.out_features == 32  # d_ff = 4 d_model


def test_sine_position_embedding_formula():
    c, h, w = 8, 3, 4
    pos = sine_position_embedding(c, h, w, dtype=torch.float64)
    npf = c // 2
    for ch in range(c):
        i = ch % npf
        for y in range(h):
            for x in range(w):
                coord = (y + 1) / (h + 1e-6) if ch < npf else (x + 1) / (w + 1e-6)
                arg = coord * 2 * math.pi / 10000 ** (2 * (i // 2) / npf)
                expected = math.sin(arg) if i % 2 == 0 else math.cos(arg)
                assert abs(pos[0, ch, y, x].item() - expected) < 1e-9


@pytest.mark.parametrize("efficient", [True, False])
def test_sine_embedding_goes_to_queries_and_keys_only(efficient):
    m = MultiHeadSelfAttention(16, num_heads=2, pos_embed="sine", memory_efficient=efficient).double()
    x = torch.randn(2, 16, 4, 3, dtype=torch.float64)
    pos = tokens_of(sine_position_embedding(16, 4, 3, dtype=torch.float64))
    torch.testing.assert_close(m(x), reference_mhsa(x, m, pos=pos)[0])


def test_learned_embedding_is_resized_and_trained():
    m = MultiHeadSelfAttention(16, num_heads=2, pos_embed="learned", pos_size=(4, 6)).double()
    x = torch.randn(1, 16, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_mhsa(x, m, pos=tokens_of(m.pos_table))[0])  # own size: the table
    y = m(torch.randn(2, 16, 7, 5, dtype=torch.float64))
    y.sum().backward()
    assert y.shape == (2, 16, 7, 5) and m.pos_table.grad.abs().sum() > 0


def test_structure_and_bad_arguments():
    m = visattn.create("mhsa", 64)
    assert m.num_heads == 8 and m.head_dim == 8
    assert sum(p.numel() for p in m.parameters()) == 4 * 64 * 64 + 4 * 64
    with pytest.raises(ValueError, match="MultiHeadSelfAttention: channels"):
        MultiHeadSelfAttention(30, num_heads=8)
    with pytest.raises(ValueError, match="pos_embed"):
        MultiHeadSelfAttention(32, pos_embed="rope")
    with pytest.raises(ValueError, match="divisible by 4"):
        MultiHeadSelfAttention(18, num_heads=2, pos_embed="sine")
    with pytest.raises(ValueError, match=r"mask of shape \(6, 6\) or \(16, 6, 6\)"):
        m(torch.randn(2, 64, 2, 3), torch.zeros(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="TransformerBlock"):
        TransformerBlock(64)(torch.randn(2, 32, 2, 3))
