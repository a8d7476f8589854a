"""SPM and MPM (Hou et al., CVPR 2020) against float64 references written with loops and einsum."""

import math

import pytest
import torch
import torch.nn.functional as F

import visattn
from tests._reference import bn_eval, bn_train, randomize_bn_
from visattn.modules.strip import MixedPooling, StripPooling


def conv1d_same(v, w):
    """Zero-padded 'same' 1-D conv, one einsum per tap: v (B, Cin, L), w (Cout, Cin, k)."""
    k, length = w.shape[-1], v.shape[-1]
    vp = F.pad(v, (k // 2, k // 2))
    return sum(torch.einsum("oc,bcl->bol", w[:, :, t], vp[:, :, t:t + length]) for t in range(k))


def conv2d_same(v, w):
    """Zero-padded 'same' 2-D conv (odd kernels), one einsum per tap: v (B, Cin, H, W), w (Cout, Cin, kh, kw)."""
    kh, kw = w.shape[-2:]
    h, wd = v.shape[-2:]
    vp = F.pad(v, (kw // 2, kw // 2, kh // 2, kh // 2))
    return sum(torch.einsum("oc,bchw->bohw", w[:, :, i, j], vp[:, :, i:i + h, j:j + wd])
               for i in range(kh) for j in range(kw))


def adaptive_avg_pool(v, p):
    """Adaptive average pooling to p x p with PyTorch's bins [floor(i n / p), ceil((i + 1) n / p))."""
    h, w = v.shape[-2:]
    out = v.new_zeros(v.shape[:-2] + (p, p))
    for i in range(p):
        h0, h1 = (i * h) // p, -(-((i + 1) * h) // p)
        for j in range(p):
            w0, w1 = (j * w) // p, -(-((j + 1) * w) // p)
            out[..., i, j] = v[..., h0:h1, w0:w1].mean((-2, -1))
    return out


def interp_matrix(n_out, n_in, align_corners):
    """Linear interpolation weights A (n_out, n_in): resized = A @ v."""
    a = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        if align_corners:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(math.floor(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        a[i, i0] += 1 - lam
        a[i, i1] += lam
    return a


def bilinear(v, size, align_corners):
    ah = interp_matrix(size[0], v.shape[-2], align_corners)
    aw = interp_matrix(size[1], v.shape[-1], align_corners)
    return torch.einsum("hp,bcpq,wq->bchw", ah, v, aw)


def reference_spm(x, m, act=True, bn=bn_eval):
    """Fig. 2 / eqs. 1-2: strip pools, 1-D convs + BN, expand and sum, (ReLU), 1x1 conv, sigmoid, scale."""
    _, _, h, w = x.shape
    y_h = x.sum(3) / w  # (B, C, H): average over each row
    y_v = x.sum(2) / h  # (B, C, W): average over each column
    a = bn(conv1d_same(y_h, m.conv_h[0].weight[:, :, :, 0]), m.conv_h[1])
    b = bn(conv1d_same(y_v, m.conv_w[0].weight[:, :, 0, :]), m.conv_w[1])
    y = a[:, :, :, None].expand(-1, -1, -1, w) + b[:, :, None, :].expand(-1, -1, h, -1)
    if act:
        y = torch.relu(y)
    f = torch.einsum("oc,bchw->bohw", m.fuse.weight[:, :, 0, 0], y) + m.fuse.bias[None, :, None, None]
    return x * torch.sigmoid(f)


def conv_bn(v, seq, relu):
    out = bn_eval(conv2d_same(v, seq[0].weight), seq[1])
    return torch.relu(out) if relu else out


def reference_mpm(x, m, residual=True, align_corners=True):
    """The official StripPooling (MPM) forward, written with tap loops, bin loops and interpolation matrices."""
    _, _, h, w = x.shape
    x1 = conv_bn(x, m.reduce_short, True)
    x2 = conv_bn(x, m.reduce_long, True)
    short = conv_bn(x1, m.local, False)
    for p, seq in zip(m.pool_sizes, m.pyramid, strict=True):
        short = short + bilinear(conv_bn(adaptive_avg_pool(x1, p), seq, False), (h, w), align_corners)
    short = conv_bn(torch.relu(short), m.fuse_short, True)
    strip_w = conv_bn(x2.sum(2, keepdim=True) / h, m.strip_w, False)  # (B, Cr, 1, W)
    strip_h = conv_bn(x2.sum(3, keepdim=True) / w, m.strip_h, False)  # (B, Cr, H, 1)
    long = conv_bn(torch.relu(strip_w.expand(-1, -1, h, -1) + strip_h.expand(-1, -1, -1, w)), m.fuse_long, True)
    out = bn_eval(torch.einsum("oc,bchw->bohw", m.project[0].weight[:, :, 0, 0], torch.cat([short, long], 1)),
                  m.project[1])
    return torch.relu(x + out) if residual else out


@pytest.mark.parametrize("shape", [(2, 8, 5, 7), (1, 8, 1, 9), (3, 8, 6, 1)])
@pytest.mark.parametrize("act", ["relu", None])
def test_spm_matches_reference(shape, act):
    m = randomize_bn_(StripPooling(8, act_layer=act).double()).eval()
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_spm(x, m, act=act is not None))
    torch.testing.assert_close(m.attention_map(x) * x, m(x))


def test_spm_train_mode_normalises_the_strips_with_batch_statistics():
    m = StripPooling(8).double().train()
    x = torch.randn(4, 8, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_spm(x, m, bn=bn_train))


def test_spm_kernel_size_and_parameter_count():
    m = StripPooling(16, kernel_size=5).double().eval()
    assert m.conv_h[0].kernel_size == (5, 1) and m.conv_w[0].kernel_size == (1, 5)
    x = torch.randn(2, 16, 7, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_spm(x, m))
    c = 64  # two C x C x 3 strip convs (no bias) + 2 BN + the 1x1 conv with bias
    assert sum(p.numel() for p in visattn.create("strip", c).parameters()) == 2 * 3 * c * c + 4 * c + c * c + c


@pytest.mark.parametrize("shape", [(2, 16, 9, 13), (1, 16, 3, 5), (2, 16, 24, 21)])
@pytest.mark.parametrize("residual", [True, False])
def test_mpm_matches_reference(shape, residual):
    m = randomize_bn_(MixedPooling(16, pool_sizes=(6, 4), residual=residual).double()).eval()
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_mpm(x, m, residual=residual))
    if not residual:
        torch.testing.assert_close(m.attention_map(x), m(x))


def test_mpm_official_pool_sizes_and_align_corners_false():
    m = randomize_bn_(MixedPooling(8, rd_channels=4).double()).eval()
    assert m.pool_sizes == (20, 12)
    x = torch.randn(1, 8, 11, 26, dtype=torch.float64)  # pools larger and smaller than the input
    torch.testing.assert_close(m(x), reference_mpm(x, m))
    m = randomize_bn_(MixedPooling(8, pool_sizes=(5, 3), align_corners=False).double()).eval()
    x = torch.randn(2, 8, 10, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_mpm(x, m, align_corners=False))


def test_mpm_widths_and_parameter_count():
    c, r = 64, 16  # official inter_channels = C / 4
    m = visattn.create("mixed_pool", c)
    assert m.reduce_short[0].out_channels == r and m.project[0].in_channels == 2 * r
    conv_bn3 = 9 * r * r + 2 * r
    expected = (2 * (c * r + 2 * r)  # two 1x1 reductions + BN
                + 3 * conv_bn3  # local 3x3 and the two pyramid 3x3
                + 2 * (3 * r * r + 2 * r)  # 1x3 and 3x1 strip convs
                + 2 * conv_bn3  # the two 3x3 fusions
                + 2 * r * c + 2 * c)  # 1x1 projection + BN
    assert sum(p.numel() for p in m.parameters()) == expected
    assert MixedPooling(64, reduction=8).reduce_long[0].out_channels == 8


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="StripPooling: kernel_size"):
        StripPooling(16, kernel_size=4)
    with pytest.raises(ValueError, match="MixedPooling: pool_sizes"):
        MixedPooling(16, pool_sizes=(20,))
    with pytest.raises(ValueError, match="MixedPooling: pool_sizes"):
        MixedPooling(16, pool_sizes=(20, 0))
    with pytest.raises(ValueError, match=r"StripPooling.*\(1, 9, 4, 4\)"):
        StripPooling(8)(torch.randn(1, 9, 4, 4))
    with pytest.raises(ValueError, match="MixedPooling"):
        MixedPooling(8)(torch.randn(8, 4, 4))
    with pytest.raises(TypeError, match="pool_sizes"):
        visattn.create("mixed_pool", 16, pool_size=(3, 2))
