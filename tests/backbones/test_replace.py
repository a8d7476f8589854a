"""replace=True keeps the network's own widths and checkpoints; a network with SE still takes modules elsewhere."""

import copy
import pickle

import pytest
import torch

import visattn
from visattn.backbones import attach

tvm = pytest.importorskip("torchvision.models")
timm = pytest.importorskip("timm")

SE = visattn.info("se").cls


def se_widths(model, cls_name):
    """``{name: (in, reduced)}`` of every module of class ``cls_name``, read from its first conv."""
    out = {}
    for name, m in model.named_modules():
        if type(m).__name__ == cls_name:
            conv = next(c for c in m.modules() if isinstance(c, torch.nn.Conv2d))
            out[name] = (conv.in_channels, conv.out_channels)
    return out


def test_torchvision_mobilenet_v3_keeps_its_se_widths_and_loads_strictly():
    m = tvm.mobilenet_v3_small(weights=None).eval()
    own = se_widths(m, "SqueezeExcitation")
    original = copy.deepcopy(m.state_dict())
    attach(m, "se", replace=True)
    assert se_widths(m, "SqueezeExcite") == own and own["features.1.block.1"] == (16, 8)
    assert m.load_state_dict(original, strict=True).missing_keys == []
    torch.testing.assert_close(m.features[1].block[1].fc1.weight, original["features.1.block.1.fc1.weight"])
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_timm_efficientnet_widths_match_se_layer_and_its_checkpoint_loads():
    torch.manual_seed(0)
    m = timm.create_model("efficientnet_b0", pretrained=False).eval()
    original = copy.deepcopy(m.state_dict())
    attach(m, "se", replace=True)
    via_se_layer = timm.create_model("efficientnet_b0", pretrained=False, se_layer=visattn.layer("se"))
    assert se_widths(m, "SqueezeExcite") == se_widths(via_se_layer, "SqueezeExcite")
    assert (m.blocks[1][0].se.fc1.in_channels, m.blocks[1][0].se.fc1.out_channels) == (96, 4)
    # timm's conv_reduce / conv_expand load into visattn's fc1 / fc2, strictly and with their values
    m.load_state_dict(original, strict=True)
    for ours, theirs in (("fc1", "conv_reduce"), ("fc2", "conv_expand")):
        for t in ("weight", "bias"):
            torch.testing.assert_close(m.state_dict()[f"blocks.1.0.se.{ours}.{t}"],
                                       original[f"blocks.1.0.se.{theirs}.{t}"])
    # still so after a copy and a pickle round trip; and the model's own state_dict loads back as well
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        clone.load_state_dict(original, strict=True)
        clone.load_state_dict(m.state_dict(), strict=True)
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_the_callers_width_wins_and_then_the_old_checkpoint_does_not_fit():
    m = timm.create_model("efficientnet_b0", pretrained=False)
    original = copy.deepcopy(m.state_dict())
    attach(m, "se", replace=True, reduction=8)
    assert m.blocks[1][0].se.fc1.out_channels == 96 // 8
    with pytest.raises(RuntimeError, match="size mismatch"):
        m.load_state_dict(original, strict=True)
    c = attach(timm.create_model("efficientnet_b0", pretrained=False), "cbam", replace=True, rd_channels=2)
    assert c.blocks[1][0].se.channel_gate.mlp[1].out_features == 2


def test_other_modules_take_the_reduced_width_too():
    m = attach(tvm.mobilenet_v3_small(weights=None), "cbam", replace=True)
    assert m.features[1].block[1].channel_gate.mlp[1].out_features == 8  # torchvision's 16 -> 8


def test_timm_seresnet_keeps_timms_rounded_widths_and_loads():
    m = timm.create_model("seresnet18", pretrained=False)
    original = copy.deepcopy(m.state_dict())
    attach(m, "se", replace=True)
    assert type(m.layer1[0].se) is SE and m.layer1[0].se.fc1.out_channels == 8  # timm: 64 / 16 rounded up to 8
    m.load_state_dict(original, strict=True)


def test_a_module_put_there_by_visattn_passes_no_width_on():
    m = attach(tvm.resnet18(weights=None), "se", reduction=2)
    attach(m, "cbam", replace=True)
    assert m.layer1[0].attn.channel_gate.mlp[1].out_features == 64 // 16  # cbam's own default


# ------------------------------------------------------------------ networks with SE take modules elsewhere

def test_efficientnet_with_its_se_takes_a_context_module_after_its_last_stage():
    m = timm.create_model("efficientnet_b0", pretrained=False).eval()
    own = se_widths(m, "SqueezeExcite")
    attach(m, "nonlocal")
    found = [n for n, b in m.named_modules() if type(b).__name__ == "NonLocalBlock"]
    assert found == ["blocks.6.attn"] and m.blocks[6].attn.g.in_channels == 320
    assert se_widths(m, "SqueezeExcite") == own  # its own SE untouched
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match=r"16 place\(s\) already hold"):  # the SE places do conflict
        attach(m, "eca")


@pytest.mark.parametrize("build", [lambda: timm.create_model("regnety_002", pretrained=False),
                                   lambda: tvm.mobilenet_v3_small(weights=None)])
def test_networks_with_se_take_stage_end_modules(build):
    m = attach(build().eval(), "bam")
    assert sum(type(b).__name__ == "BAM" for b in m.modules()) == 3
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_timm_seresnet_takes_post_and_context_modules_beside_its_se():
    m = attach(timm.create_model("seresnet18", pretrained=False), "nonlocal")
    assert type(m.layer2[1].attn).__name__ == "NonLocalBlock" and type(m.layer2[1].se).__name__ == "SEModule"
    m = attach(timm.create_model("seresnet18", pretrained=False), "cbam", "post")
    assert type(m.layer1[0].attn).__name__ == "CBAM"
    assert m.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match="already has an attention module at `attn`; pass replace=True"):
        attach(m, "eca", "post")
    attach(m, "eca", "post", replace=True)
    assert type(m.layer1[0].attn).__name__ == "EfficientChannelAttention"
    assert sum(len(b._forward_hooks) for b in m.modules()) == 8  # swapped, not hooked twice
