"""Placement is data: each module's ``ModuleInfo.placement`` decides where attach puts it, in every family.

A toy module registered for the test (and removed after) is placed by its placement alone, with no edit of
attach; BAM and residual attention (placement ``stage_end``) land at the stage ends of every family.
"""

import inspect

import pytest
import torch
from torch import nn

import visattn
from visattn import registry
from visattn.backbones import BasicBlock, attach, create

tvm = pytest.importorskip("torchvision.models")
timm = pytest.importorskip("timm")


def toy_meta(role="plugin", **extra):
    return dict(title="toy", paper="toy", authors="a", venue="v", year=2024, arxiv=None, code=None, family="toy",
                domain="channel", weights="conv", applied="scale", role=role, complexity="O(HW)", **extra)


class Toy(nn.Module):
    """x * sigmoid(w): a plug-in with one parameter per channel."""

    def __init__(self, channels, *, scale=1.0):
        super().__init__()
        self.channels = channels
        self.w = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * torch.sigmoid(self.w).view(1, -1, 1, 1)


class ToyConv(nn.Module):
    """A 3x3 conv stand-in (conv role): out_channels and stride as the replaced conv."""

    def __init__(self, channels, *, out_channels, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, 3, stride, 1, bias=False)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture
def toy_registry():
    """Register toy classes under fresh keys; remove them (and only them) afterwards."""
    added = []

    def add(key, base, **meta):
        class Fresh(base):  # a class of its own for each key (register gives it device= / dtype=)
            def __init__(self, channels, **kwargs):
                super().__init__(channels, **kwargs)

        Fresh.__init__.__signature__ = inspect.signature(base.__init__)
        Fresh.__name__ = f"{base.__name__}_{key}"
        registry.register(key, **meta)(Fresh)
        added.append(key)
        return key

    yield add
    for key in added:
        registry._REGISTRY.remove(key)
    assert not set(added) & set(visattn.list_modules())


def holders(model, key):
    cls = visattn.info(key).cls
    return [n for n, m in model.named_modules() if type(m) is cls]


@pytest.mark.parametrize(("placement", "resnet18_blocks"), [
    ("every_block", {f"layer{s}.{i}" for s in range(1, 5) for i in range(2)}),
    ("stage_end", {"layer1.1", "layer2.1", "layer3.1"}),
    ("every_stage_end", {"layer1.1", "layer2.1", "layer3.1", "layer4.1"}),
    ("after_last_stage", {"layer4.1"}),
    ("every_other_block", {"layer2.1", "layer3.1"}),
])
def test_a_new_module_is_placed_by_its_placement_alone(toy_registry, placement, resnet18_blocks):
    key = toy_registry(f"zz_toy_{placement}", Toy, **toy_meta(placement=placement))
    assert visattn.info(key).placement == placement
    m = attach(tvm.resnet18(weights=None), key)
    got = {n for n, b in m.named_modules() if isinstance(b, BasicBlock) and b.attn is not None}
    assert got == resnet18_blocks
    positions = {b.position for b in m.modules() if isinstance(b, BasicBlock) and b.attn is not None}
    assert positions == ({"standard"} if placement == "every_block" else {"post"})
    # a family network: the block places for every_block, the outputs of stage-ending blocks otherwise
    c = attach(timm.create_model("convnext_atto", pretrained=False), key)
    expected = {"every_block": [f"stages.{s}.blocks.{i}.drop_path.attn" for s, n in enumerate([2, 2, 6, 2])
                                for i in range(n)],
                "stage_end": ["stages.0.blocks.attn", "stages.1.blocks.attn", "stages.2.blocks.attn"],
                "every_stage_end": [f"stages.{s}.blocks.attn" for s in range(4)],
                "after_last_stage": ["stages.3.blocks.attn"],
                "every_other_block": ["stages.3.blocks.attn"]}[placement]
    assert holders(c, key) == expected
    assert c(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("placement", ["replaces_conv3x3", "replaces_conv3x3_norm"])
def test_a_new_conv_module_replaces_the_conv_and_its_norm_only_when_it_says_so(toy_registry, placement):
    key = toy_registry(f"zz_toy_{placement}", ToyConv, **toy_meta(role="conv", placement=placement))
    m = create("resnet20", key)
    assert type(m.layer2[0].conv1).__name__.startswith("ToyConv") and m.layer2[0].conv1.conv.stride == (2, 2)
    assert isinstance(m.layer2[0].bn1, nn.Identity) == (placement == "replaces_conv3x3_norm")
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_placement_defaults_to_the_role_and_must_suit_it(toy_registry):
    key = toy_registry("zz_toy_default", Toy, **toy_meta(role="context"))
    assert visattn.info(key).placement == "after_last_stage"
    with pytest.raises(ValueError, match=r"'zz_toy_bad' has placement='input'; a plugin module takes one of"):
        toy_registry("zz_toy_bad", Toy, **toy_meta(placement="input"))
    with pytest.raises(ValueError, match="placement='everywhere'"):
        toy_registry("zz_toy_bad2", Toy, **toy_meta(placement="everywhere"))
    assert "zz_toy_bad" not in visattn.list_modules()


def test_every_registered_module_states_a_placement_that_suits_its_role():
    for key in visattn.list_modules():
        meta = visattn.info(key)
        assert meta.role in registry.PLACEMENTS[meta.placement], key
    assert {visattn.info(k).placement for k in ("bam", "residual_attention")} == {"stage_end"}
    assert visattn.info("nonlocal").placement == "every_other_block"
    assert {visattn.info(k).placement for k in ("rga_s", "rga_c")} == {"every_stage_end"}
    assert {visattn.info(k).placement for k in ("sk", "scconv", "sanet")} == {"replaces_conv3x3_norm"}


# ------------------------------------------------------------------ BAM at the stage ends of every family

def meta_model(build):
    with torch.device("meta"):  # the dry run that finds the stage ends runs on meta tensors too
        return build()


#: family -> (builder, the blocks after which BAM goes: the last block before each down-sampling)
STAGE_ENDS = {
    "torchvision resnet18": (lambda: tvm.resnet18(), ["layer1.1.attn", "layer2.1.attn", "layer3.1.attn"]),
    "torchvision convnext_tiny": (lambda: tvm.convnext_tiny(), ["features.1.attn", "features.3.attn",
                                                                "features.5.attn"]),
    "timm convnext_atto": (lambda: timm.create_model("convnext_atto"), ["stages.0.blocks.attn",
                                                                        "stages.1.blocks.attn",
                                                                        "stages.2.blocks.attn"]),
    "timm resnext26ts": (lambda: timm.create_model("resnext26ts"), ["stages.0.attn", "stages.1.attn",
                                                                     "stages.2.attn"]),
    # stride-2 stages begin at blocks.1, .2, .3 and .5 (blocks.4 keeps the size, only the width changes)
    "timm efficientnet_b0": (lambda: timm.create_model("efficientnet_b0"), ["blocks.0.attn", "blocks.1.attn",
                                                                            "blocks.2.attn", "blocks.4.attn"]),
    # a flat Sequential: stride-2 blocks are features.2, .4 and .9
    "torchvision mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(), ["features.1.attn", "features.3.attn",
                                                                          "features.8.attn"]),
    # RegNetX-200MF: stages of 1, 1, 4, 7 blocks, each starting with a stride-2 block
    "timm regnetx_002": (lambda: timm.create_model("regnetx_002"), ["s1.b1.attn", "s2.b1.attn", "s3.b4.attn"]),
    "torchvision densenet121": (lambda: tvm.densenet121(), [f"features.transition{i}.attn" for i in (1, 2, 3)]),
}


@pytest.mark.parametrize("name", list(STAGE_ENDS))
@pytest.mark.parametrize("key", ["bam", "residual_attention"])
def test_stage_end_modules_go_at_the_stage_ends_of_every_family(name, key):
    build, expected = STAGE_ENDS[name]
    model = attach(meta_model(build), key)
    assert holders(model, key) == expected
    # 128 px: DenseNet's last transition gives 4 x 4, enough for residual attention's soft mask
    assert model(torch.zeros(1, 3, 128, 128, device="meta")).shape == (1, 1000)
