"""Segmentation networks: shapes at odd sizes, attention that matters, parameter counts against mmseg's configs."""

import pytest
import torch
from torch import nn

from visattn.segmentation import HEADS, DilatedResNet, create_head, create_segmenter, list_heads

ATTENTION_HEADS = [h for h in HEADS if h != "fcn"]


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("head", list_heads())
def test_shapes_odd_non_square(head):
    m = create_segmenter(head, 5, backbone="tiny", in_chans=1, input_size=(37, 50))
    x = torch.randn(2, 1, 37, 50)
    out = m.train()(x)
    assert set(out) == set(m.loss_weights)
    assert all(v.shape == (2, 5, 37, 50) for v in out.values())
    m.eval()
    assert list(m(x)) == ["out"]
    assert m(x)["out"].shape == (2, 5, 37, 50)


def test_unet_sizes_and_classes():
    for size, depth in [((29, 40), 3), ((13, 64), 2), ((64, 64), 4)]:
        for name in ("unet", "attention_unet"):
            m = create_segmenter(name, 7, in_chans=2, base_width=4, depth=depth).eval()
            assert m(torch.randn(1, 2, *size))["out"].shape == (1, 7, *size)
    with pytest.raises(ValueError, match="at least 12 x 12"):
        create_segmenter("attention_unet", 3, base_width=4, depth=3)(torch.randn(1, 3, 11, 40))


@pytest.mark.parametrize("name,os_,expected", [("resnet18", 8, (2, 4)), ("resnet50", 16, (1, 2)),
                                               ("tiny", 8, (2, 2))])
def test_dilated_backbone_strides_and_dilations(name, os_, expected):
    bb = DilatedResNet(name, output_stride=os_).eval()
    feats = bb(torch.randn(1, 3, 45, 61))
    h, w = 45, 61
    for _ in range({8: 3, 16: 4}[os_]):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    assert feats[3].shape[-2:] == (h, w)
    assert [f.shape[1] for f in feats] == bb.out_channels
    # mmseg's contract_dilation: the first block of a dilated stage uses half the stage's dilation
    last = bb.layer4[-1].conv1 if name != "resnet50" else bb.layer4[-1].conv2
    first = bb.layer4[0].conv1 if name != "resnet50" else bb.layer4[0].conv2
    assert (first.dilation[0], last.dilation[0]) == expected  # tiny: one block per stage
    assert all(m.stride == (1, 1) for m in bb.layer4.modules() if isinstance(m, nn.Conv2d))


def _set_attr(root: nn.Module, dotted: str, value: nn.Module) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        root = getattr(root, p)
    setattr(root, last, value)


@pytest.mark.parametrize("head", ATTENTION_HEADS)
def test_removing_the_attention_changes_the_output(head):
    torch.manual_seed(0)
    m = create_segmenter(head, 4, backbone="tiny", in_chans=1, input_size=(24, 31), aux=False)
    with torch.no_grad():  # zero-initialised gates (gamma, alpha, BN scales) must be live for the test to mean it
        for p in m.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.5)
    m.eval()
    x = torch.randn(2, 1, 24, 31)
    with torch.no_grad():
        full = m(x)["out"]
        names = m.decode_head.attention_names
        assert names
        for name in names:
            _set_attr(m.decode_head, name, nn.Identity())
        ablated = m(x)["out"]
    assert (full - ablated).abs().max() > 1e-3, head


def test_attention_unet_gates_matter():
    torch.manual_seed(0)
    m = create_segmenter("attention_unet", 3, in_chans=1, base_width=4, depth=2).eval()
    x = torch.randn(1, 1, 20, 23)
    with torch.no_grad():
        full = m(x)["out"]
        m.gates = nn.ModuleList(_Pass() for _ in m.gates)
        assert (full - m(x)["out"]).abs().max() > 1e-4


class _Pass(nn.Module):
    def forward(self, x, g):
        return x


def test_danet_trains_with_both_branch_outputs():
    m = create_segmenter("danet", 3, backbone="tiny", in_chans=1)
    assert m.loss_weights == {"out": 1.0, "aux": 0.4, "pam": 1.0, "cam": 1.0}
    out = m.train()(torch.randn(2, 1, 24, 24))
    assert not torch.allclose(out["pam"], out["cam"])


def test_danet_without_its_branch_losses_trains_on_the_summed_output_alone():
    torch.manual_seed(0)
    full = create_segmenter("danet", 3, backbone="tiny", in_chans=1)
    torch.manual_seed(0)
    bare = create_segmenter("danet", 3, backbone="tiny", in_chans=1, branch_loss_weight=0)
    assert bare.loss_weights == {"out": 1.0, "aux": 0.4}
    assert bare.decode_head.pam_cls_seg is None and bare.decode_head.cam_cls_seg is None
    x = torch.randn(2, 1, 24, 24)
    assert set(bare.train()(x)) == {"out", "aux"}
    # the same network otherwise: the shared weights load, and eval outputs agree
    bare.load_state_dict(full.state_dict(), strict=False)
    torch.testing.assert_close(bare.eval()(x)["out"], full.eval()(x)["out"])
    half = create_segmenter("danet", 3, backbone="tiny", in_chans=1, branch_loss_weight=0.5)
    assert half.loss_weights == {"out": 1.0, "aux": 0.4, "pam": 0.5, "cam": 0.5}
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="branch_loss_weight must be a number >= 0"):
            create_segmenter("danet", 3, backbone="tiny", branch_loss_weight=bad)


def test_bad_names():
    with pytest.raises(ValueError, match="unknown segmentation head 'ccc'"):
        create_segmenter("ccc", 3)
    with pytest.raises(ValueError, match="unknown segmentation backbone"):
        create_segmenter("cc", 3, backbone="resnet20")
    with pytest.raises(ValueError, match="psa head is bound to a feature size"):
        create_segmenter("psa", 3, backbone="tiny")


# ------------------------------------------------------------------ parameter counts (ResNet-50-D8, 19 classes)

def _conv_module(cin: int, cout: int, k: int) -> int:
    """mmcv ConvModule with BN: conv without bias + BN scale and shift."""
    return k * k * cin * cout + 2 * cout


def _conv_bias(cin: int, cout: int) -> int:
    """mmcv ConvModule without norm: 1x1 conv with bias."""
    return cin * cout + cout


CLS = 512 * 19 + 19
FCN = _conv_module(2048, 512, 3) + _conv_module(512, 512, 3) + _conv_module(2048 + 512, 512, 3) + CLS

#: mmsegmentation's R50-D8 head configs, counted from their layers (independent of visattn's code).
MMSEG_HEADS = {
    "fcn": FCN,
    # NonLocal2d(512, reduction=2): g, theta, phi with bias, conv_out without bias + BN
    "nonlocal": FCN + 3 * _conv_bias(512, 256) + 256 * 512 + 2 * 512,
    # CrissCrossAttention(512): q, k at C/8, v at C, gamma
    "cc": FCN + 2 * _conv_bias(512, 64) + _conv_bias(512, 512) + 1,
    # DAHead: two in-convs, PAM (q, k at 64, v at 512, gamma), CAM (gamma), two out-convs, three classifiers
    "danet": 2 * _conv_module(2048, 512, 3) + 2 * _conv_bias(512, 64) + _conv_bias(512, 512) + 2
    + 2 * _conv_module(512, 512, 3) + 3 * CLS,
    # EMAHead(channels=256, ema_channels=512): in-conv, EMA mid conv (bias), out conv + BN, bottleneck, concat
    "ema": _conv_module(2048, 512, 3) + _conv_bias(512, 512) + _conv_module(512, 512, 1)
    + _conv_module(512, 256, 3) + _conv_module(2048 + 256, 256, 3) + 256 * 19 + 19,
}
#: Where visattn's head differs from mmseg's layer count, and by how much (see each head's docstring).
DIFFERENCE = {"nonlocal": 512}  # visattn's W_z has a bias before its BN; mmcv's conv_out has none

#: visattn's counts (decode head only), pinned. psa at a 512 x 1024 input (64 x 128 features).
PINNED = {
    "fcn": 23_605_779, "nonlocal": 24_132_371, "cc": 23_934_100, "danet": 23_954_619, "oc": 10_368_531,
    "asp_oc": 20_298_643, "psa": 55_729_683, "ema": 16_458_003, "mhsa": 24_656_403, "transformer": 26_758_163,
    "sanet": 28_326_419, "strip": 13_259_027,
}


@pytest.mark.parametrize("head", list(HEADS))
def test_head_parameters_resnet50_d8(head):
    m = create_head(head, 2048, 512, 19, feature_size=(64, 128))
    assert _count(m) == PINNED[head]
    if head in MMSEG_HEADS:
        assert _count(m) == MMSEG_HEADS[head] + DIFFERENCE.get(head, 0)


def test_backbone_and_aux_parameters():
    # ResNetV1c-50: torchvision ResNet-50 without fc (25,557,032 - 2,049,000), 7x7 stem -> three 3x3 convs
    torchvision_body = 25_557_032 - 2048 * 1000 - 1000
    stem_v1c = _conv_module(3, 32, 3) + _conv_module(32, 32, 3) + _conv_module(32, 64, 3)
    assert _count(DilatedResNet("resnet50")) == torchvision_body - 7 * 7 * 3 * 64 - 2 * 64 + stem_v1c
    # ResNetV1c-101 the same way from torchvision's ResNet-101 (44,549,160 with its fc)
    assert _count(DilatedResNet("resnet101")) == 44_549_160 - 2048 * 1000 - 1000 - 7 * 7 * 3 * 64 - 2 * 64 + stem_v1c
    m = create_segmenter("fcn", 19, backbone="resnet18")  # build check for the small ImageNet backbone
    aux = create_segmenter("fcn", 19, backbone="tiny").aux_head
    assert _count(aux) == _conv_module(64, 32, 3) + 32 * 19 + 19
    # mmseg's auxiliary FCNHead(in 1024, channels 256, num_convs=1, concat_input=False)
    from visattn.segmentation.heads import FCNHead
    assert _count(FCNHead(1024, 256, 19, num_convs=1, concat_input=False)) == _conv_module(1024, 256, 3) + 256 * 19 + 19
    assert m.loss_weights["aux"] == 0.4
