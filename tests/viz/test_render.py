import pytest
import torch

from tests.viz._png import png_size, read_png
from visattn.viz.render import colorize, display_scale, matrix_image, normalize, overlay, save_class_heatmap, write_png


def test_png_round_trip(tmp_path):
    rgb = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    path = write_png(tmp_path / "a.png", rgb)
    assert torch.equal(read_png(path), rgb)
    assert png_size(path) == (5, 7)
    with pytest.raises(ValueError, match="expected \\(H, W, 3\\)"):
        write_png(tmp_path / "b.png", torch.zeros(4, 4, dtype=torch.uint8))


def test_colorize_ends_and_order():
    rgb = colorize(torch.tensor([0.0, 0.5, 1.0, -3.0, 7.0]))
    assert rgb[0].tolist() == [68, 1, 84] and rgb[2].tolist() == [253, 231, 37]  # viridis ends
    assert torch.equal(rgb[3], rgb[0]) and torch.equal(rgb[4], rgb[2])  # clamped
    lum = colorize(torch.linspace(0, 1, 50)).float() @ torch.tensor([0.299, 0.587, 0.114])
    assert (lum.diff() >= -0.5).all()  # viridis gets lighter from 0 to 1


def test_normalize():
    m, lo, hi = normalize(torch.tensor([[2.0, 4.0], [3.0, 6.0]]))
    assert (lo, hi) == (2.0, 6.0) and torch.allclose(m, torch.tensor([[0, 0.5], [0.25, 1.0]]))
    m, lo, hi = normalize(torch.full((3, 3), 0.7))
    assert torch.equal(m, torch.zeros(3, 3)) and lo == hi


def test_overlay_size_blend_and_marker():
    image = torch.full((1, 28, 28), 200, dtype=torch.uint8)
    s = display_scale(28, 28)
    plain = overlay(image)
    assert plain.shape == (28 * s, 28 * s, 3) and (plain == 200).all()
    heat = torch.zeros(7, 7)
    heat[3, 3] = 1.0
    out = overlay(image, heat, alpha=0.5)
    centre, corner = out[14 * s, 14 * s].float(), out[0, 0].float()
    assert torch.allclose(corner, 0.5 * 200 + 0.5 * colorize(torch.tensor(0.0)).float(), atol=1)
    assert centre[0] > corner[0] and centre[1] > corner[1]  # towards yellow where the map is high
    marked, unmarked = overlay(image, heat, marker=(5, 9)), overlay(image, heat)
    t = max(1, s // 3)  # the outline is t px wide, around the query pixel's s x s square
    assert marked[5 * s - t, 9 * s].tolist() == [255, 0, 0]
    assert marked[5 * s + 2, 10 * s + t - 1].tolist() == [255, 0, 0]
    assert torch.equal(marked[5 * s:6 * s, 9 * s:10 * s], unmarked[5 * s:6 * s, 9 * s:10 * s])  # the pixel shows
    assert (marked != unmarked).any(-1).sum() == 4 * (s + 2 * t) * t - 4 * t * t
    rgb = overlay(torch.zeros(3, 10, 12, dtype=torch.uint8))
    assert rgb.shape == (10 * display_scale(10, 12), 12 * display_scale(10, 12), 3)


def test_matrix_image():
    img = matrix_image(torch.tensor([[0.0, 1.0]]), target=10)
    assert img.shape == (10, 10, 3)
    assert img[0, 0].tolist() == [68, 1, 84] and img[0, -1].tolist() == [253, 231, 37]


def test_class_heatmap_plain(tmp_path):
    matrix = torch.rand(10, 16)
    how = save_class_heatmap(tmp_path / "h.png", matrix, [f"c{i}" for i in range(10)], "t", use_matplotlib=False)
    assert how == "plain"
    img = read_png(tmp_path / "h.png")
    assert img.shape[1] == 16 * 15 and img.shape[0] == 2 * 10 * 24 + 6


def test_class_heatmap_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    how = save_class_heatmap(tmp_path / "h.png", torch.rand(10, 64), [f"c{i}" for i in range(10)], "title")
    assert how == "matplotlib"
    w, h = png_size(tmp_path / "h.png")
    assert w > 200 and h > 200
