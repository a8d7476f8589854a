"""OCNet base-OC and ASP-OC against the official modules' computation, written out in float64."""

import pytest
import torch
import torch.nn.functional as F

import visattn
from tests._reference import assert_same_forward_and_gradients
from visattn.modules.ocnet import ASPObjectContext, ObjectContext


def conv(x, c, dilation=1):
    """A Conv2d's computation with F.conv2d (same weights), padding keeping H, W."""
    pad = dilation * (c.weight.shape[-1] - 1) // 2
    return F.conv2d(x, c.weight, c.bias, padding=pad, dilation=dilation)


def bn(x, b):
    """BatchNorm in eval mode, written out."""
    scale = b.weight / torch.sqrt(b.running_var + b.eps)
    return (x - b.running_mean[None, :, None, None]) * scale[None, :, None, None] + b.bias[None, :, None, None]


def cna(x, block, dilation=1):
    """ConvNormAct (conv, BN, ReLU) written out."""
    return torch.relu(bn(conv(x, block[0], dilation), block[1]))


def reference_context(x, sa, pool=1):
    """Official _SelfAttentionBlock: (pool,) key = query = f_key(x), value = f_value(x),
    sim = softmax(key_channels^-0.5 Q K^T), context = W(sim V), (upsample, corners aligned)."""
    b, _, h, w = x.shape
    xp = F.max_pool2d(x, pool, ceil_mode=True) if pool > 1 else x
    key = cna(xp, sa.f_key).flatten(2)  # [B, Ck, N]
    query = key if sa.f_query is None else cna(xp, sa.f_query).flatten(2)
    value = conv(xp, sa.f_value).flatten(2)  # [B, Cv, N]
    e = torch.einsum("bki,bkj->bij", query, key) * sa.key_channels ** -0.5
    p = torch.exp(e - e.amax(-1, keepdim=True))
    p = p / p.sum(-1, keepdim=True)
    ctx = torch.einsum("bij,bcj->bci", p, value).reshape(b, -1, *xp.shape[-2:])
    ctx = conv(ctx, sa.W)
    if pool > 1:
        ctx = F.interpolate(ctx, size=(h, w), mode="bilinear", align_corners=True)
    return ctx, p


def reference_oc(x, m):
    """BaseOC_Module: conv_bn(cat([context, x]))."""
    ctx, p = reference_context(x, m.context)
    return cna(torch.cat([ctx, x], 1), m.fuse), p


def reference_asp_oc(x, m):
    """ASP_OC_Module: [context (3x3 conv, OC at scale 2, conv_bn), 1x1, three dilated 3x3], cat, 1x1 fuse."""
    c = cna(x, m.context_conv)
    ctx, p = reference_context(c, m.oc, pool=2)
    feats = [cna(ctx, m.context_out), cna(x, m.conv1x1)]
    feats += [cna(x, branch, d) for branch, d in zip(m.dilated, m.dilations, strict=True)]
    return cna(torch.cat(feats, 1), m.fuse), p


def randomized(m, seed=0):
    """Random weights (the zero-initialised W included) and BN statistics; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g, dtype=torch.float64) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g, dtype=torch.float64) + 0.5)
    return m.eval()


@pytest.mark.parametrize("efficient", [True, False])
@pytest.mark.parametrize("share", [True, False])
def test_base_oc_matches_official_computation(efficient, share):
    m = randomized(ObjectContext(16, share_query_key=share, memory_efficient=efficient).double())
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    out = m(x)
    ref, p = reference_oc(x, m)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(m.attention_map(x), p)
    up = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, up)[0], torch.autograd.grad(ref, x, up)[0])


@pytest.mark.parametrize("efficient", [True, False])
@pytest.mark.parametrize("size", [(7, 9), (1, 3), (4, 4)])
def test_asp_oc_matches_official_computation(efficient, size):
    m = randomized(ASPObjectContext(16, dilations=(1, 2, 3), memory_efficient=efficient).double())
    x = torch.randn(2, 16, *size, dtype=torch.float64, requires_grad=True)
    out = m(x)
    ref, p = reference_asp_oc(x, m)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(m.attention_map(x), p)
    up = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, up)[0], torch.autograd.grad(ref, x, up)[0])


@pytest.mark.parametrize("cls", [ObjectContext, ASPObjectContext])
def test_memory_efficient_equals_reference_path_with_parameter_gradients(cls):
    fast = randomized(cls(16, memory_efficient=True).double()).train()
    slow = cls(16, memory_efficient=False).double().train()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, 16, 7, 5, dtype=torch.float64)
    assert_same_forward_and_gradients(fast, slow, x)


def test_context_starts_at_zero():
    m = ObjectContext(16).eval()
    x = torch.randn(1, 16, 4, 4)
    assert torch.count_nonzero(m.context(x)) == 0
    torch.testing.assert_close(m(x), cna(torch.cat([torch.zeros_like(x), x], 1), m.fuse))


def test_parameter_counts_equal_the_official_modules():
    # BaseOC_Module(in=512, out=512, key=256, value=256): f_key conv + ABN, f_value, W, conv + ABN on 2C
    official = (512 * 256 + 256 + 2 * 256) + (512 * 256 + 256) + (256 * 512 + 512) + (1024 * 512 + 512 + 2 * 512)
    assert sum(p.numel() for p in visattn.create("oc", 512).parameters()) == official
    # ASP_OC_Module(512, 256): context 3x3 conv(bias) + ABN + BaseOC_Context(256, key 128, value 256), conv2 1x1,
    # conv3-5 3x3 (no bias) + ABN each, 1x1 fuse 5*256 -> 512 (no bias) + ABN
    context = (512 * 256 * 9 + 256 + 512) + (256 * 128 + 128 + 256) + (256 * 256 + 256) * 2 + (256 * 256 + 256 + 512)
    branches = (512 * 256 + 512) + 3 * (512 * 256 * 9 + 512)
    fuse = 1280 * 512 + 1024
    assert sum(p.numel() for p in visattn.create("asp_oc", 512).parameters()) == context + branches + fuse
    m = ASPObjectContext(512)
    assert m.dilations == (12, 24, 36) and [b[0].dilation for b in m.dilated] == [(12, 12), (24, 24), (36, 36)]


def test_out_channels_and_dropout():
    x = torch.randn(2, 16, 5, 5)
    assert ObjectContext(16, out_channels=24)(x).shape == (2, 24, 5, 5)
    assert ASPObjectContext(16, out_channels=8, dilations=(1, 2, 3))(x).shape == (2, 8, 5, 5)
    m = randomized(ObjectContext(16, dropout=0.5))
    z = m(x)  # eval: no dropout
    m.dropout.train()
    y = m(x)
    dropped = y.abs().sum((2, 3)) == 0
    kept = torch.isclose(y, 2 * z).all(-1).all(-1)  # Dropout2d: whole channels, survivors scaled by 1 / (1 - p)
    assert (dropped | kept).all() and (dropped & (z.abs().sum((2, 3)) > 0)).any() and kept.any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="ObjectContext: key_channels"):
        ObjectContext(16, key_channels=0)
    with pytest.raises(ValueError, match="ASPObjectContext: dilations"):
        ASPObjectContext(16, dilations=(1, 2))
    with pytest.raises(ValueError, match="ASPObjectContext"):
        ASPObjectContext(16)(torch.randn(1, 8, 5, 5))
