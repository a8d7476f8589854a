"""Parameter counts after attach() against timm's published attention networks (built on the meta device).

Equal counts where timm's network is the same architecture; where they differ by design the two counts are
pinned together with the arithmetic of the difference.
"""

import pytest
import torch

import visattn
from visattn.backbones import attach

timm = pytest.importorskip("timm")


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def meta(name, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, **kwargs)


def se_params(c, r):
    """SE with bias: c -> r -> c 1x1 convs."""
    return c * r + r + r * c + c


@pytest.mark.parametrize(("reference", "base", "key", "options", "count"), [
    # SE-ResNeXt-26d 32x4d = its ResNeXt-26d body + SE (C/16 is a multiple of 8 at every width, so timm's
    # rounding to 8 changes nothing)
    ("seresnext26d_32x4d", ("seresnext26d_32x4d", {"block_args": {}}), "se", {}, 16_809_512),
    ("ecaresnet26t", ("resnet26t", {}), "eca", {}, 16_011_916),  # ECA's adaptive kernel, same formula
    ("ecaresnet50d", ("resnet50d", {}), "eca", {}, 25_576_350),
    ("skresnext50_32x4d", ("resnext50_32x4d", {}), "sk", {}, 27_479_784),  # SKNet-50: G = 32, d = max(C/16, 32)
    # ByobNet: timm's eca_resnext26ts keeps ECA in the mid-width `attn` slot, which replace=True swaps in place
    ("eca_resnext26ts", ("eca_resnext26ts", {}), "eca", {"replace": True}, 10_297_988),
])
def test_equal_to_timm(reference, base, key, options, count):
    name, kwargs = base
    model = attach(meta(name, **kwargs), key, **options)
    assert n_params(model) == n_params(meta(reference)) == count


def test_seresnet18_differs_by_timms_rounding():
    """timm rounds SE's width up to a multiple of 8: layer1's 64 / 16 = 4 becomes 8 (2 blocks)."""
    ours, theirs = n_params(attach(meta("resnet18"), "se")), n_params(meta("seresnet18"))
    assert (ours, theirs) == (11_778_592, 11_779_624)
    assert theirs - ours == 2 * (se_params(64, 8) - se_params(64, 4)) == 1032
    assert n_params(attach(meta("resnet18"), "se", rd_channels=8, stages=[1])) - n_params(meta("resnet18")) == (
        2 * se_params(64, 8))


def test_seresnext26ts_differs_by_place_and_rounding():
    """visattn puts SE after the last 1x1 conv (SE paper, out width); timm's seresnext26ts after the 3x3 (mid
    width). Swapping timm's own SE in place (replace=True) keeps its widths (timm's rounding to 8 included), so
    the counts are equal; with reduction=16 they differ by that rounding in stage 1."""
    base = n_params(meta("resnext26ts"))
    ours = n_params(attach(meta("resnext26ts"), "se"))
    outs = [256] * 2 + [512] * 2 + [1024] * 2 + [2048] * 2
    assert ours - base == sum(se_params(c, c // 16) for c in outs)
    assert (ours, n_params(meta("seresnext26ts"))) == (11_698_752, 10_388_064)
    assert n_params(attach(meta("seresnext26ts"), "se", replace=True)) == 10_388_064
    swapped = n_params(attach(meta("seresnext26ts"), "se", replace=True, reduction=16))
    assert swapped == 10_387_032
    assert n_params(meta("seresnext26ts")) - swapped == 2 * (se_params(64, 8) - se_params(64, 4))


def test_skresnet18_differs_by_design():
    """visattn's SK follows SKNet-50 (G = 32 grouped branches on the full input); timm's skresnet18 splits the
    input across two ungrouped branches with d = make_divisible(C / 8, 16). Both counts pinned."""
    assert n_params(attach(meta("resnet18"), "sk")) == 7_454_504
    assert n_params(meta("skresnet18")) == 11_958_056


def test_efficientnet_b0_se_swapped():
    """EfficientNet-B0's SE squeezes to a quarter of the block *input* (timm: rd = round(in * 0.25)): with
    expansion 6 that is mid / 24, so reduction=24 matches every block but the first (expansion 1: 32 / 4 = 8
    there, 32 // 24 = 1 here). visattn.layer("se") as timm's se_layer matches all (tests/test_factory_kwargs.py)."""
    theirs = n_params(meta("efficientnet_b0"))
    ours = n_params(attach(meta("efficientnet_b0"), "se", replace=True, reduction=24, act_layer="silu"))
    assert theirs == 5_288_548
    assert theirs - ours == se_params(32, 8) - se_params(32, 1) == 455
    first = meta("efficientnet_b0")
    attach(first, "se", replace=True, reduction=24)
    assert type(first.blocks[6][0].se) is visattn.info("se").cls
