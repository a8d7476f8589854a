"""What a segmenter returns: logits resized bilinearly, the loss weights it was given, one prediction in both modes.

Only public seams (create_segmenter, list_heads, the outputs and ``loss_weights``), so that the tests hold
whichever file a head lives in.
"""

import pytest
import torch
from torch import nn

from visattn.segmentation import MODELS, create_segmenter, list_heads

HEADS = [h for h in list_heads() if h not in MODELS]


def _freeze_statistics(model: nn.Module) -> nn.Module:
    """Training mode, but with BN running statistics and no dropout: train and eval then compute the same thing."""
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d)):
            m.eval()
    return model


@pytest.mark.parametrize("name", ["out", "aux"])
def test_logits_are_resized_bilinearly(name):
    """Between two neighbouring feature-pixel centres the logits are linear in x (bilinear, ``align_corners=False``).

    At output stride 8 on a 64-pixel input, feature pixel k sits at input x = 8k + 3.5, so input pixels
    8k + 4 .. 8k + 11 lie between centres k and k + 1: their second differences along a row are zero for a
    bilinear resize; ``nearest`` gives 8-pixel steps, ``align_corners=True`` puts its kinks at other places,
    bicubic curves.
    """
    torch.manual_seed(0)
    model = create_segmenter("fcn", 3, backbone="tiny", in_chans=1)
    model = model.train() if name == "aux" else model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 64, 64))[name].double()
    assert logits.shape == (2, 3, 64, 64)
    for k in range(7):
        segment = logits[..., 8 * k + 4: 8 * k + 12]  # 8 input pixels between centres k and k + 1
        second = segment[..., 2:] - 2 * segment[..., 1:-1] + segment[..., :-2]
        assert second.abs().max() < 1e-4, k
        step = segment[..., 1:] - segment[..., :-1]
        assert step.abs().max() > 1e-4  # and the logits do change along the row (no constant blocks)
    # across a centre the slope changes (what makes it piecewise linear rather than one plane)
    rows = logits[..., 4:60]
    slopes = (rows[..., 1:] - rows[..., :-1])
    assert (slopes[..., 7:55:8] - slopes[..., 8:56:8]).abs().max() > 1e-4


def test_odd_sizes_come_back_at_the_input_size():
    model = create_segmenter("fcn", 4, backbone="tiny", in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 37, 50))["out"].shape == (1, 4, 37, 50)


@pytest.mark.parametrize("weight", [0.0, 0.1, 1.5])
def test_aux_weight_is_the_weight_given(weight):
    model = create_segmenter("fcn", 3, backbone="tiny", in_chans=1, aux_weight=weight)
    assert model.loss_weights == {"out": 1.0, "aux": weight}
    danet = create_segmenter("danet", 3, backbone="tiny", in_chans=1, aux_weight=weight)
    assert danet.loss_weights["aux"] == weight and danet.loss_weights["pam"] == 1.0
    assert "aux" not in create_segmenter("fcn", 3, backbone="tiny", in_chans=1, aux=False).loss_weights


@pytest.mark.parametrize("head", HEADS)
def test_eval_output_is_the_training_out(head):
    """Eval mode predicts with exactly the ``out`` the training loss sees (DANet: both branches summed)."""
    torch.manual_seed(0)
    model = create_segmenter(head, 3, backbone="tiny", in_chans=1, input_size=(24, 24))
    with torch.no_grad():  # every residual scale away from its zero init, so each branch shows in the output
        for p in model.parameters():
            if p.numel() == 1:
                p.fill_(0.7)
    x = torch.randn(2, 1, 24, 24)
    with torch.no_grad():
        evaluated = model.eval()(x)
        trained = _freeze_statistics(model)(x)
    assert set(evaluated) == {"out"}
    torch.testing.assert_close(evaluated["out"], trained["out"])

