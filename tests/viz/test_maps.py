import pytest
import torch

import visattn
from visattn.viz.maps import interpret, query_cell, reduce_channels


def test_query_cell_maps_image_pixels_to_the_grid():
    frac = lambda y, x, h=28, w=28: ((y + 0.5) / h, (x + 0.5) / w)  # noqa: E731
    assert query_cell(frac(0, 0), 7, 7) == (0, 0)
    assert query_cell(frac(27, 27), 7, 7) == (6, 6)
    assert query_cell(frac(14, 3), 7, 7) == (3, 0)
    assert query_cell(frac(13, 4), 7, 14) == (3, 2)


def test_channel_shapes():
    b = 2
    for t, n in ((torch.rand(b, 8), 1), (torch.rand(b, 8, 1, 1), 1), (torch.rand(b, 3, 8, 1, 1), 3)):
        pictures, reason = interpret(t, in_hw=(5, 5))
        assert len(pictures) == n and not reason
        assert all(p.kind == "channel" and p.data.shape == (b, 8) for p in pictures)
    pictures, _ = interpret(torch.arange(2 * 3 * 4.0).view(2, 3, 4, 1, 1), in_hw=(5, 5))
    assert torch.equal(pictures[2].data, torch.arange(2 * 3 * 4.0).view(2, 3, 4)[:, 2])


def test_criss_cross_query_map_against_a_loop():
    cc = visattn.create("cc", 16).eval()
    x = torch.randn(2, 16, 6, 9)
    with torch.no_grad():
        a = cc.attention_map(x)  # [B, H + W, H, W]
    h, w = 6, 9
    q = (0.4, 0.7)
    pictures, _ = interpret(a, in_hw=(h, w), role="context", query=q)
    assert [p.kind for p in pictures] == ["context"]
    qy, qx = query_cell(q, h, w)
    expected = torch.zeros(2, h, w)
    for b in range(2):
        for i in range(h):  # column keys (i, qx); the query itself is counted in the row
            expected[b, i, qx] += a[b, i, qy, qx]
        for j in range(w):  # row keys (qy, j)
            expected[b, qy, j] += a[b, h + j, qy, qx]
    assert torch.allclose(pictures[0].data, expected)
    assert torch.allclose(pictures[0].data.sum((1, 2)), torch.ones(2), atol=1e-5)  # softmax over H + W - 1 keys


def test_position_indexed_attention_psa_layout():
    t = torch.rand(2, 2, 20, 4, 5)  # [B, branches, source, target_h, target_w]
    pictures, _ = interpret(t, in_hw=(4, 5), role="context", query=(0.9, 0.1))
    qy, qx = query_cell((0.9, 0.1), 4, 5)
    assert len(pictures) == 2
    for k in range(2):
        assert torch.equal(pictures[k].data, t[:, k, :, qy, qx].reshape(2, 4, 5))


def test_attention_matrix_with_subsampled_keys():
    h, w = 7, 6
    t = torch.rand(2, 3, h * w, 4 * 3)  # [B, heads, queries, keys on ceil(h/2) x ceil(w/2)]
    q = (0.5, 0.5)
    pictures, _ = interpret(t, in_hw=(h, w), role="context", query=q)
    qy, qx = query_cell(q, h, w)
    assert len(pictures) == 1 and pictures[0].kind == "context"
    assert torch.allclose(pictures[0].data, t[:, :, qy * w + qx].mean(1).view(2, 4, 3))


def test_attention_on_a_pooled_grid_and_channel_attention():
    h, w = 9, 8  # ASP-OC: queries and keys on the 2x pooled grid, 5 x 4
    t = torch.rand(2, 20, 20)
    q = (0.95, 0.05)
    pictures, _ = interpret(t, in_hw=(h, w), channels=16, role="context", query=q)
    qy, qx = query_cell(q, 5, 4)
    assert pictures[0].kind == "context" and torch.equal(pictures[0].data, t[:, qy * 4 + qx].view(2, 5, 4))
    # the same shape from a module with 20 channels is channel attention (DANet's CAM)
    assert interpret(t, in_hw=(h, w), channels=20, role="context")[0][0].kind == "matrix"
    # HW == C: the shape cannot tell; the module's declared axes do, and without them nothing is drawn
    square = torch.rand(2, 72, 72)
    assert interpret(square, in_hw=(h, w), channels=72, role="context", axes="positions")[0][0].kind == "context"
    assert interpret(square, in_hw=(h, w), channels=72, role="context", axes="channels")[0][0].kind == "matrix"
    pictures, reason = interpret(square, in_hw=(h, w), channels=72, role="context")
    assert pictures == [] and "does not declare" in reason
    # declared channels: a matrix even where its size fits a pooled grid of positions
    assert interpret(t, in_hw=(h, w), channels=16, role="context", axes="channels")[0][0].kind == "matrix"
    with pytest.raises(ValueError, match="axes"):
        interpret(t, in_hw=(h, w), axes="space")


def test_spatial_shapes_and_reduction():
    t = torch.rand(2, 4, 5, 6)
    pictures, _ = interpret(t, in_hw=(5, 6))
    assert pictures[0].kind == "spatial" and torch.allclose(pictures[0].data, t.mean(1))
    flat = torch.rand(2, 1, 30)
    assert torch.equal(interpret(flat, in_hw=(5, 6))[0][0].data, flat.view(2, 5, 6))
    resp = torch.rand(2, 8, 5, 6).softmax(1)  # sums to 1 over dim 1: the mean is constant
    m, note = reduce_channels(resp)
    assert torch.equal(m, resp.amax(1)) and "max" in note
    strip = torch.rand(2, 4, 5, 1)  # one of coord's strips
    assert interpret(strip, in_hw=(5, 6))[0][0].data.shape == (2, 5, 1)


def test_other_kinds_and_unknown_shapes_never_raise():
    assert interpret(torch.rand(2, 2, 3), in_hw=(4, 4), role="transform")[0][0].kind == "transform"
    assert interpret(torch.rand(2, 12, 12), in_hw=(4, 4), role="context")[0][0].kind == "matrix"  # DANet CAM
    for bad in (torch.rand(2, 3, 7), torch.rand(5), "weights", torch.full((2, 4, 3, 3), float("nan"))):
        pictures, reason = interpret(bad, in_hw=(4, 4))
        assert pictures == [] and reason
