"""Sliding-window evaluation (mmseg's slide_inference), owned by the Segmenter."""

import pytest
import torch

from visattn.segmentation import Segmenter, create_segmenter


def _model(**kwargs):
    torch.manual_seed(0)
    return Segmenter("fcn", 3, backbone="tiny", in_chans=1, aux=False, **kwargs).eval()


def _starts(size: int, crop: int, stride: int) -> list[int]:
    """Window starts along one side, written out: every stride, then one window flush with the far edge."""
    if size <= crop:
        return [0]
    starts = list(range(0, size - crop + 1, stride))
    if starts[-1] + crop < size:
        starts.append(size - crop)
    return starts


def _hand_slide(model, x, crop, stride):
    b, _, h, w = x.shape
    total = torch.zeros(b, 3, h, w)
    seen = torch.zeros(h, w)
    for top in _starts(h, crop[0], stride[0]):
        for left in _starts(w, crop[1], stride[1]):
            window = x[:, :, top:top + crop[0], left:left + crop[1]]
            model.set_eval_mode("whole")
            total[:, :, top:top + crop[0], left:left + crop[1]] += model(window)["out"]
            seen[top:top + crop[0], left:left + crop[1]] += 1
    assert bool((seen > 0).all())
    return total / seen


@torch.no_grad()
@pytest.mark.parametrize("size, crop, stride", [((37, 50), (24, 24), (16, 16)), ((40, 33), (32, 20), (10, 9)),
                                                ((29, 61), (29, 30), (20, 20))])
def test_slide_equals_a_hand_loop_over_the_windows(size, crop, stride):
    model = _model(eval_mode="slide", crop_size=crop, stride=stride)
    x = torch.randn(2, 1, *size, generator=torch.Generator().manual_seed(1))
    got = model(x)["out"]
    assert got.shape == (2, 3, *size)
    assert torch.allclose(got, _hand_slide(model, x, crop, stride), atol=1e-5)


@torch.no_grad()
def test_slide_is_whole_inference_when_one_window_covers_the_image():
    x = torch.randn(1, 1, 30, 41, generator=torch.Generator().manual_seed(2))
    whole = _model()(x)["out"]
    for crop in ((30, 41), (64, 64)):  # exactly the image, and larger (the window is clipped to the image)
        assert torch.equal(_model(eval_mode="slide", crop_size=crop)(x)["out"], whole)
    assert not torch.allclose(_model(eval_mode="slide", crop_size=16, stride=8)(x)["out"], whole, atol=1e-4)


def test_slide_defaults_and_errors():
    model = _model(eval_mode="slide", crop_size=48)
    assert model.crop_size == (48, 48) and model.stride == (32, 32)  # two thirds, as mmseg's 512 / 341
    with pytest.raises(ValueError, match="needs crop_size"):
        _model(eval_mode="slide")
    with pytest.raises(ValueError, match="eval_mode must be one of"):
        _model(eval_mode="sliding")
    with pytest.raises(ValueError, match="stride must be a positive int"):
        _model(eval_mode="slide", crop_size=16, stride=0)
    with pytest.raises(ValueError, match="U-Net predicts whole images"):
        create_segmenter("unet", 3, backbone="tiny", eval_mode="slide", crop_size=16)


def test_training_mode_ignores_the_eval_mode():
    model = _model(eval_mode="slide", crop_size=16).train()
    out = model(torch.randn(2, 1, 33, 35))
    assert set(out) == {"out"} and out["out"].shape == (2, 3, 33, 35)
