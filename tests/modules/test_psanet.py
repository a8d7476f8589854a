"""PSA against a transcription of the reference C++ collect / distribute loops (float64)."""

import pytest
import torch
import torch.nn.functional as F

import visattn
from tests._build import randomize_
from visattn.modules.psanet import PointwiseSpatialAttention
from visattn.ops.psa import psa_attention, psa_gather, psa_mask


def cpp_buffer(mask, mode):
    """PSAForward_buffer_mask_collect_cpu / _distribute_cpu of the official Caffe layer, transcribed as is.

    mask: (N, mask_H * mask_W, H, W) with mask_H = 2H - 1, mask_W = 2W - 1; returns the (N, H*W, H, W) buffer.
    """
    num_, _, feature_H_, feature_W_ = mask.shape
    mask_H_, mask_W_ = 2 * feature_H_ - 1, 2 * feature_W_ - 1
    half_mask_H_, half_mask_W_ = (mask_H_ - 1) // 2, (mask_W_ - 1) // 2
    mask_data = mask.reshape(-1).tolist()
    buffer_data = [0.0] * (num_ * feature_H_ * feature_W_ * feature_H_ * feature_W_)
    for n in range(num_):
        for h in range(feature_H_):
            for w in range(feature_W_):
                hstart = max(0, half_mask_H_ - h)
                hend = min(mask_H_, feature_H_ + half_mask_H_ - h)
                wstart = max(0, half_mask_W_ - w)
                wend = min(mask_W_, feature_W_ + half_mask_W_ - w)
                for hidx in range(hstart, hend):
                    for widx in range(wstart, wend):
                        src = ((n * mask_H_ * mask_W_ + hidx * mask_W_ + widx) * feature_H_ + h) * feature_W_ + w
                        if mode == "collect":
                            dst = ((n * feature_H_ * feature_W_ + (hidx + h - half_mask_H_) * feature_W_
                                    + (widx + w - half_mask_W_)) * feature_H_ * feature_W_ + h * feature_W_ + w)
                        else:
                            dst = ((n * feature_H_ * feature_W_ + h * feature_W_ + w) * feature_H_ * feature_W_
                                   + (hidx + h - half_mask_H_) * feature_W_ + (widx + w - half_mask_W_))
                        buffer_data[dst] = mask_data[src]
    return torch.tensor(buffer_data, dtype=mask.dtype).view(num_, feature_H_ * feature_W_, feature_H_, feature_W_)


def reference_psa(x, m):
    """The official PSA forward (semseg model/psanet.py) with the C++ buffer, then visattn's fusion conv."""
    outs = []
    for name in m.branches:
        branch = getattr(m, name)
        r = branch.reduce(x)
        if m.shrink_factor != 1:
            r = F.interpolate(r, size=m.grid, mode="bilinear", align_corners=True)
        b, c, h, w = r.shape
        mask = torch.einsum("mc,bchw->bmhw", branch.mask_conv.weight[:, :, 0, 0], branch.adapt(r))
        y = torch.softmax(cpp_buffer(mask, name), dim=1)  # over the source positions
        outs.append(torch.bmm(r.reshape(b, c, h * w), y.reshape(b, h * w, h * w)).view(b, c, h, w))
    y = m.proj(torch.cat(outs, dim=1))
    if m.shrink_factor != 1:
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)
    return m.fuse(torch.cat((x, y), dim=1))


def _module(channels=16, size=(5, 6), **kw):
    m = randomize_(PointwiseSpatialAttention(channels, feature_size=size, **kw), std=0.3).double().eval()
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize("size", [(4, 5), (1, 1), (1, 4), (3, 1), (3, 3)])
@pytest.mark.parametrize("mode", ["collect", "distribute"])
def test_mask_reindexing_matches_cpp_loops(size, mode):
    h, w = size
    mask = torch.randn(2, (2 * h - 1) * (2 * w - 1), h, w, dtype=torch.float64)
    assert torch.equal(psa_mask(mask, mode), cpp_buffer(mask, mode))


def test_gather_is_the_distribute_buffer_and_a_pure_copy():
    mask = torch.randn(2, 5 * 7, 3, 4, dtype=torch.float64)
    g = psa_gather(mask.permute(0, 2, 3, 1))
    assert torch.equal(g, cpp_buffer(mask, "distribute").flatten(2))
    assert torch.equal(g.transpose(1, 2), cpp_buffer(mask, "collect").flatten(2))
    for dtype in (torch.float16, torch.bfloat16):  # a copy: exact in any dtype
        assert torch.equal(psa_gather(mask.permute(0, 2, 3, 1).to(dtype)), g.to(dtype))
    # the input may be a view with a storage offset (a slice of a bigger tensor)
    big = torch.randn(3, 3, 4, 35, dtype=torch.float64)
    assert torch.equal(psa_gather(big[1:]), cpp_buffer(big[1:].permute(0, 3, 1, 2), "distribute").flatten(2))


def test_gather_backward_is_the_transposed_copy():
    mask = torch.randn(1, 3, 2, 15, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(psa_gather, (mask,))
    g = torch.randn(1, 6, 6, dtype=torch.float64)
    (grad,) = torch.autograd.grad(psa_gather(mask), mask, g)
    # adjoint of the distribute loop: each mask entry inside the window receives its buffer entry's gradient
    grad_ref = torch.zeros(1, 3, 2, 5, 3, dtype=torch.float64)
    for h in range(3):
        for w in range(2):
            for hidx in range(5):
                for widx in range(3):
                    ph, pw = hidx + h - 2, widx + w - 1
                    if 0 <= ph < 3 and 0 <= pw < 2:
                        grad_ref[0, h, w, hidx, widx] = g[0, h * 2 + w, ph * 2 + pw]
    assert torch.equal(grad, grad_ref.view(1, 3, 2, 15))


@pytest.mark.parametrize("mode", ["collect", "distribute"])
def test_op_matches_official_aggregation(mode):
    h, w = 3, 5
    mask = torch.randn(2, (2 * h - 1) * (2 * w - 1), h, w, dtype=torch.float64)
    x = torch.randn(2, 4, h, w, dtype=torch.float64)
    y = torch.softmax(cpp_buffer(mask, mode), dim=1).view(2, h * w, h * w)
    ref = torch.bmm(x.view(2, 4, h * w), y).view(2, 4, h, w)
    torch.testing.assert_close(psa_attention(mask.permute(0, 2, 3, 1), x, mode), ref)


@pytest.mark.parametrize("mode", ["collect", "distribute", "both"])
@pytest.mark.parametrize("size,shrink", [((5, 6), 1), ((1, 1), 1), ((2, 7), 1), ((7, 5), 2)])
def test_forward_matches_reference(mode, size, shrink):
    m = _module(size=size, mode=mode, shrink_factor=shrink)
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_psa(x, m))


def test_attention_map_is_the_softmaxed_official_buffer():
    m = _module(size=(4, 3))
    x = torch.randn(2, 16, 4, 3, dtype=torch.float64)
    amap = m.attention_map(x)
    assert amap.shape == (2, 2, 12, 4, 3)
    for k, name in enumerate(("collect", "distribute")):
        branch = getattr(m, name)
        mask = torch.einsum("mc,bchw->bmhw", branch.mask_conv.weight[:, :, 0, 0], branch.adapt(branch.reduce(x)))
        torch.testing.assert_close(amap[:, k], torch.softmax(cpp_buffer(mask, name), dim=1))


def test_widths_and_metadata():
    m = PointwiseSpatialAttention(64, feature_size=(5, 6))
    assert m.collect.reduce[0].out_channels == 16  # official 2048 -> 512: C / 4
    assert m.collect.mask_conv.out_channels == 9 * 11
    shrunk = PointwiseSpatialAttention(64, feature_size=(5, 6), shrink_factor=2)
    assert shrunk.grid == (3, 3) and shrunk.collect.mask_conv.out_channels == 5 * 5
    assert not hasattr(PointwiseSpatialAttention(64, feature_size=(5, 6), mode="collect"), "distribute")
    assert PointwiseSpatialAttention(64, feature_size=(5, 6), rd_channels=8).proj[0].in_channels == 16
    assert visattn.info("psa").size_bound


def test_errors():
    m = PointwiseSpatialAttention(32, feature_size=(6, 7))
    expected = r"PointwiseSpatialAttention: built for feature_size=\(6, 7\).*\(2, 32, 7, 6\)"
    with pytest.raises(ValueError, match=expected):
        m(torch.randn(2, 32, 7, 6))
    with pytest.raises(ValueError, match="PointwiseSpatialAttention.*mode"):
        PointwiseSpatialAttention(32, feature_size=(6, 7), mode="both_ways")
    with pytest.raises(ValueError, match="PointwiseSpatialAttention.*feature_size"):
        PointwiseSpatialAttention(32, feature_size=(0, 7))
    with pytest.raises(ValueError, match="PointwiseSpatialAttention.*shrink_factor"):
        PointwiseSpatialAttention(32, feature_size=(6, 7), shrink_factor=0)
    with pytest.raises(TypeError):
        PointwiseSpatialAttention(32)  # feature_size is required
    with pytest.raises(ValueError, match="mode"):
        psa_mask(torch.randn(1, 9, 2, 2), "scatter")
    with pytest.raises(ValueError, match="psa_gather"):
        psa_gather(torch.randn(1, 2, 2, 8))
