"""A channel map is a matrix, never an image; flat maps are drawn flat; page and captions state one colour rule.

Issue 19.6: with 64 channels on 8x8 features (the default scenes setup), DANet's CAM, a 64 x 64 matrix over
channels, has the shape of attention over the 64 positions, and `show` drew it as a query map over the image.
"""

import pytest
import torch
from torch import nn

import visattn
from tests._build import build, make_inputs
from visattn.modules.danet import ChannelAttention, DualAttention, PositionAttention
from visattn.viz import Recorder
from visattn.viz.draw import draw_picture, scale_rule
from visattn.viz.maps import Picture
from visattn.viz.pictures import ModulePicture, module_pictures
from visattn.viz.recorder import declared_axes, outermost
from visattn.viz.render import matrix_image, overlay, with_colorbar


def _pictures(model: nn.Module, x: torch.Tensor) -> dict[str, list[ModulePicture]]:
    with Recorder(model, inputs=True) as rec, torch.no_grad():
        model(x)
        return {rec.modules[o]: module_pictures(model, o, rec, (0.5, 0.5))[0] for o in outermost(rec.modules)}


def _randomised(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():  # alpha / beta start at 0: give the branches weight, as after training
        for name in ("alpha", "beta"):
            if isinstance(getattr(m, name, None), nn.Parameter):
                getattr(m, name).data.fill_(0.5)
    return model.eval()


@pytest.mark.parametrize("memory_efficient", [True, False])
def test_danet_cam_with_as_many_channels_as_positions_is_a_matrix(memory_efficient):
    # the scenes head: PAM and CAM side by side on 64 channels of an 8x8 grid, so C == H x W == 64
    model = _randomised(nn.Sequential(nn.Conv2d(3, 64, 3, padding=1),
                                      PositionAttention(64, memory_efficient=memory_efficient), ChannelAttention(64)))
    pictures = _pictures(model, torch.randn(2, 3, 8, 8))
    (cam,) = pictures["cam"]
    assert cam.picture.kind == "matrix" and cam.picture.data.shape == (2, 64, 64)
    assert "channel-by-channel" in cam.label and "query" not in cam.label
    (pam,) = pictures["pam"]
    assert pam.picture.kind == "context" and pam.picture.data.shape == (2, 8, 8)
    rgb, caption = draw_picture(cam, 0, torch.zeros(3, 8, 8, dtype=torch.uint8), (4, 4), scale="image")
    data = cam.picture.data[0]
    lo, hi = float(data.min()), float(data.max())
    assert torch.equal(rgb, with_colorbar(matrix_image((data - lo) / (hi - lo)), lo, hi))  # the matrix, not the image
    assert caption.startswith("(64, 64)")


def test_dual_attention_declares_each_of_its_two_maps():
    model = _randomised(nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), DualAttention(64)))
    (found,) = _pictures(model, torch.randn(1, 3, 8, 8)).values()
    assert [(it.source, it.picture.kind) for it in found] == [("attention_map()[0]", "context"),
                                                              ("attention_map()[1]", "matrix")]


def test_an_undeclared_square_matrix_of_both_sizes_is_listed_not_guessed():
    class Undeclared(ChannelAttention):  # the CAM without its declaration: the shape alone cannot tell
        attention_map_axes = None

    from visattn.viz import recorder

    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), Undeclared(64)).eval()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recorder, "_registered_classes", lambda: {Undeclared: "cam"})
        with Recorder(model, inputs=True) as rec, torch.no_grad():
            model(torch.randn(1, 3, 8, 8))
            items, notes = module_pictures(model, "1", rec, (0.5, 0.5))
    assert items == [] and any("does not declare" in n for n in notes)


@pytest.mark.parametrize("key", visattn.list_modules())
def test_every_square_attention_matrix_is_declared(key):
    """A module whose attention_map gives a (B, n, n) matrix says what n is over, one entry per map."""
    module = build(key, size=(8, 8)).eval()
    inputs = make_inputs(key, 1, 64, (8, 8), gen=torch.Generator().manual_seed(0))
    if not callable(getattr(module, "attention_map", None)):
        return
    with torch.no_grad():
        maps = module.attention_map(*inputs)
    parts = maps if isinstance(maps, (tuple, list)) else (maps,)
    axes = declared_axes(module)
    if any(t is not None and t.dim() == 3 and t.shape[1] == t.shape[2] for t in parts):
        assert axes is not None, f"{key}: attention_map gives a square matrix; declare attention_map_axes"
    if axes is not None:
        assert len(axes) == len(parts)


def test_a_flat_map_is_drawn_in_one_colour_not_stretched():
    image = torch.randint(0, 256, (1, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    flat = 0.5 + 0.001 * torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(1))  # range 0.2% of the mean
    item = ModulePicture("attn", "cbam", "gate", Picture("spatial", flat), nn.Identity())
    lo, hi = float(flat.min()), float(flat.max())
    for scale in ("image", "layer"):  # its own range is the layer's: both would stretch the noise over all colours
        rgb, caption = draw_picture(item, 0, image, (0, 0), scale=scale)
        assert torch.equal(rgb, with_colorbar(overlay(image, torch.full((6, 6), 0.5)), lo, hi))
        assert "NEARLY CONSTANT" in caption and "drawn in one colour" in caption
    # in a layer whose range is wide, the flat map keeps its place on that range, in one colour
    layer = torch.cat([flat.flatten(), torch.tensor([0.0, 1.0])])
    rgb, _ = draw_picture(item, 0, image, (0, 0), scale="layer", layer=layer)
    assert torch.equal(rgb, with_colorbar(overlay(image, torch.full((6, 6), float(flat.mean()))), 0.0, 1.0))
    varied = ModulePicture("attn", "cbam", "gate", Picture("spatial", torch.linspace(0, 1, 36).view(1, 6, 6)),
                           nn.Identity())
    assert "NEARLY CONSTANT" not in draw_picture(varied, 0, image, (0, 0), scale="image")[1]


def test_the_page_rule_and_the_captions_say_the_same():
    item = ModulePicture("attn", "cbam", "gate", Picture("spatial", torch.rand(2, 4, 4)), nn.Identity())
    image = torch.zeros(1, 4, 4, dtype=torch.uint8)
    layer_caption = draw_picture(item, 0, image, (0, 0), scale="layer")[1]
    image_caption = draw_picture(item, 0, image, (0, 0), scale="image")[1]
    assert "share one colour range" in scale_rule("layer") and "shared by this layer's maps" in layer_caption
    assert "its own minimum and maximum" in scale_rule("image") and "coloured on its own range" in image_caption
    assert "shared" not in image_caption and "own" not in scale_rule("layer")
    with pytest.raises(ValueError, match="scale"):
        scale_rule("global")


def test_show_page_of_a_classifier_with_danet_on_64_channels_at_8x8(tmp_path):
    from tests.viz.test_show import parse
    from visattn.backbones import create
    from visattn.data.loader import ImageData
    from visattn.viz.show import show_model

    torch.manual_seed(0)
    model = _randomised(create("resnet20", "danet", in_chans=1))  # layer3: 64 channels on an 8x8 grid
    images = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = ImageData(images, torch.arange(2), [str(i) for i in range(10)], (0.5,), (0.25,))
    result = show_model(model, data, tmp_path, indices=[0, 1], log=lambda *a: None)
    text = " ".join(parse(result.page).text)
    cam = [c for c in text.split("danet at layer3.2.attn")[1:] if c.lstrip().startswith("attention_map()[1]")]
    assert len(cam) == 2 and all("64x64 channel-by-channel matrix; (64, 64)" in c for c in cam)
    assert not any("query cell" in c.split("test image")[0] for c in cam)
