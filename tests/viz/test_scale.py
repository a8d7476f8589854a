"""Maps a reader can trust: a colour bar with the range on every map PNG, a shared scale per layer, flat maps named."""

import re

import pytest
import torch

from tests.viz._png import read_png
from tests.viz.test_show import parse
from visattn.backbones import create
from visattn.data.loader import ImageData
from visattn.viz.render import colorize, nearly_constant, overlay, text_image, with_colorbar
from visattn.viz.show import ShowError, show_model


def test_colorbar_spans_the_colour_map_and_writes_both_ends():
    pic = overlay(torch.zeros(1, 12, 12, dtype=torch.uint8), torch.rand(3, 3))
    out = with_colorbar(pic, 0.5, 0.503)
    h, w = pic.shape[:2]
    assert out.shape[1] == w and out.shape[0] > h and torch.equal(out[:h], pic)
    bar_row = out[h + 4]  # the bar starts after a 3-pixel white gap
    assert torch.equal(bar_row, colorize(torch.linspace(0, 1, w)))
    labels = out[-14:]
    dark = (labels.int().sum(-1) == 0)
    assert dark[:, : w // 2].any() and dark[:, w // 2:].any()  # a number under each end
    assert dark[:, : w // 2].sum() == text_image("0.5").sum()  # "0.5" on the left, drawn in black


def test_nearly_constant():
    assert nearly_constant(torch.full((4, 4), 0.5) + torch.linspace(0, 0.003, 16).view(4, 4))  # 0.500-0.503
    assert not nearly_constant(torch.linspace(0.2, 0.8, 16).view(4, 4))
    assert nearly_constant(torch.zeros(3, 3))


def _data(n=3):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return ImageData(images, torch.arange(n) % 10, [str(i) for i in range(10)], (0.5,), (0.25,))


def _captions(out):
    page = parse(out / "index.html")
    return " ".join(page.text)


@pytest.fixture
def cbam_at_init():
    """ResNet-20 + CBAM as built: every spatial gate is exactly 1/2 (zero-initialised BN scale, official code)."""
    torch.manual_seed(0)
    return create("resnet20", "cbam", in_chans=1, stages=[3])


def test_flat_spatial_gate_is_named_on_the_page(cbam_at_init, tmp_path):
    show_model(cbam_at_init, _data(), tmp_path, indices=[0, 1], log=lambda *a: None)
    text = _captions(tmp_path)
    assert "Nearly constant maps" in text and "NEARLY CONSTANT" in text
    listed = text.split("Nearly constant maps")[1]
    assert "cbam spatial map at layer3.0.attn" in listed and "image 2" in listed
    assert "cbam channel map" not in listed  # the channel gates at initialisation do vary
    pictures = [p for p in tmp_path.glob("img00-*.png") if p.name != "img00-input.png"]
    assert pictures
    for p in pictures:  # every map picture carries its colour bar below the square overlay
        rgb = read_png(p)
        assert rgb.shape[0] > rgb.shape[1]


def test_layer_scale_shares_one_range_image_scale_does_not(cbam_at_init, tmp_path):
    with torch.no_grad():  # give the spatial gates a real spread that differs from image to image
        for m in cbam_at_init.modules():
            if type(m).__name__ == "SpatialGate":
                m.spatial.bn.weight.fill_(3.0)
    data = _data()
    show_model(cbam_at_init, data, tmp_path / "layer", indices=[0, 1, 2], log=lambda *a: None)
    show_model(cbam_at_init, data, tmp_path / "image", indices=[0, 1, 2], scale="image", log=lambda *a: None)
    spans = re.findall(r"colours span (\S+) to (\S+), shared", _captions(tmp_path / "layer"))
    assert spans and len(set(spans)) == len(spans) // 3  # each layer: one span for its 3 images
    own = re.findall(r"spatial weights on a \d+x\d+ grid, range (\S+) to (\S+)", _captions(tmp_path / "image"))
    assert len(set(own)) > len(own) // 3  # per-image ranges differ
    assert "colours span" not in _captions(tmp_path / "image")
    with pytest.raises(ShowError, match="scale"):
        show_model(cbam_at_init, data, tmp_path / "x", indices=[0], scale="global", log=lambda *a: None)
