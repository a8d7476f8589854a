"""Where an attention module goes in each CNN family: one small description per family, read by ``attach()``.

A :class:`Family` is data: how to recognise its blocks (class names, matched without importing timm or
torchvision), where the attention place of one block is and how many channels it sees there, and how its stages
end. Supporting a new family means adding one description to :data:`FAMILIES`; the generic engine in
:mod:`visattn.backbones.places` reads them (ResNets have their own richer rules in
:mod:`visattn.backbones.resnet_places`, with SE positions, stages and conv replacement).

A block's place (a :data:`Spot`) is one of three kinds:

- ``"slot"``: the module takes the place of a submodule that is an empty slot (``nn.Identity``) or holds an
  attention module already (an SE, swapped only with ``replace=True``): timm's ``se`` / ``attn`` attributes,
  torchvision's ``SqueezeExcitation`` inside a block. The state_dict keys are the slot's (``blocks.1.0.se.*``).
- ``"after"``: the module runs on the output of a submodule and is stored in it as ``attn`` (``conv.1.attn.*``);
  in a plain ``nn.Sequential`` it is simply its last element, elsewhere a forward hook applies it. Keys of the
  original weights do not change, so pretrained checkpoints still load.
- ``"before"``: the module runs on the input of a submodule (stored in it as ``attn``, applied by a forward
  pre-hook).

How stages end (``Family.stage_ends``), for the placements between blocks (stage_end, every_stage_end, ...):

- ``"downsampling"``: a stage ends at a block whose successor's output is spatially smaller (read by one dry
  run); modules go after that block.
- ``"places"``: the family's places already lie between stages (DenseNet's transitions, a VGG stack's stage ends
  before each max-pool): each place ends a stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["FAMILIES", "STAGE_ENDS", "Family", "Spot", "out_channels"]

#: ``(path inside the block, kind, channels)``; path ``""`` is the block itself.
Spot = tuple[str, str, "int | None"]

#: how a family's stages end (see the module docstring).
STAGE_ENDS = ("downsampling", "places")


@dataclass(frozen=True)
class Family:
    """How to find a family's blocks and the place of an attention module in one block.

    Attributes:
        name: the family, as the README table names it.
        example: a model of the family that the tests build.
        where: where the module goes, in words (and why: the paper or the family's own SE).
        match: ``module -> bool``, whether a module is one of the family's blocks.
        locate: ``block -> [(path inside the block, kind, channels), ...]``.
        stage_ends: one of :data:`STAGE_ENDS`: ``"downsampling"`` (a stage ends where the next block shrinks the
            feature map) or ``"places"`` (every place lies between two stages).
    """

    name: str
    example: str
    where: str
    match: Callable[[nn.Module], bool]
    locate: Callable[[nn.Module], list[Spot]]
    stage_ends: str = "downsampling"


def _classes(*qualified: str) -> Callable[[nn.Module], bool]:
    """Match modules by ``module.qualname`` of their class (so timm / torchvision need not be imported)."""
    names = frozenset(qualified)
    return lambda m: f"{type(m).__module__}.{type(m).__qualname__}" in names


def out_channels(module: nn.Module | None) -> int | None:
    """Channels a module produces, read from ``out_channels`` / ``num_features`` of it or its last layer."""
    if module is None:
        return None
    for m in [module, *reversed(list(module.modules()))]:
        for attr in ("out_channels", "num_features"):
            value = getattr(m, attr, None)
            if isinstance(value, int):
                return value
    return None


def _first(block: nn.Module, *names: str) -> nn.Module | None:
    return next((getattr(block, n) for n in names if isinstance(getattr(block, n, None), nn.Module)), None)


def _is_depthwise(m: nn.Module) -> bool:
    conv = next((c for c in m.modules() if isinstance(c, nn.Conv2d)), None)
    return conv is not None and conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _is_torchvision_se(m: nn.Module) -> bool:
    return type(m).__name__ == "SqueezeExcitation" and type(m).__module__.startswith("torchvision")


# --------------------------------------------------------------------------------------------- the families


def _timm_se_slot(block: nn.Module) -> list[Spot]:
    """Blocks of timm EfficientNet / MobileNet / RegNet: the ``se`` attribute, after the depthwise / 3x3 stage."""
    return [("se", "slot", out_channels(_first(block, "conv_dw", "conv_exp", "conv2")))]


def _torchvision_inverted_residual(block: nn.Module) -> list[Spot]:
    """Torchvision inverted residuals: their SqueezeExcitation, else after the depthwise stage."""
    seq_name = "conv" if isinstance(getattr(block, "conv", None), nn.Sequential) else "block"
    seq = getattr(block, seq_name)
    names = list(seq._modules)
    for name in names:
        if _is_torchvision_se(seq._modules[name]):
            dw = seq._modules[names[names.index(name) - 1]]
            return [(f"{seq_name}.{name}", "slot", out_channels(dw))]
    for name in names:
        if _is_depthwise(seq._modules[name]) and isinstance(seq._modules[name], nn.Sequential):
            return [(f"{seq_name}.{name}", "after", out_channels(seq._modules[name]))]
    return []


def _torchvision_regnet(block: nn.Module) -> list[Spot]:
    """RegNet blocks of torchvision: its ``f.se`` (RegNetY), else after the group conv ``f.b`` (RegNetX)."""
    f = block.f
    if "se" in f._modules:
        return [("f.se", "slot", out_channels(f.b))]
    return [("f.b", "after", out_channels(f.b))]


def _byob(block: nn.Module) -> list[Spot]:
    """ByobNet blocks of timm: ``attn_last`` (the SE paper's place), or a filled ``attn``."""
    if not isinstance(getattr(block, "attn", nn.Identity()), nn.Identity):
        return [("attn", "slot", out_channels(_first(block, "conv2_kxk", "conv1_kxk")))]
    if hasattr(block, "attn_last"):
        return [("attn_last", "slot", out_channels(_first(block, "conv3_1x1", "conv2_1x1", "conv2_kxk")))]
    return [("attn", "slot", out_channels(_first(block, "conv", "conv_kxk", "conv_scale")))]


def _plain_stack(seq: nn.Module) -> list[Spot]:
    """VGG-style ``nn.Sequential``: after the last layer of each stage, i.e. just before each max-pool."""
    spots: list[Spot] = []
    children = list(seq._modules.items())
    conv = None
    for i, (_name, child) in enumerate(children):
        if isinstance(child, nn.Conv2d):
            conv = child
        elif isinstance(child, nn.MaxPool2d) and conv is not None and i > 0:
            spots.append((children[i - 1][0], "after", conv.out_channels))
            conv = None
    return spots


def _is_plain_stack(m: nn.Module) -> bool:
    """An ``nn.Sequential`` of convs and at least two max-pools (one pool is a stem, not a stack of stages)."""
    return type(m) is nn.Sequential and len(_plain_stack(m)) >= 2


#: The families :func:`~visattn.backbones.attach.attach` knows besides ResNets, in the order they are tried.
FAMILIES: tuple[Family, ...] = (
    Family(
        "RegNet X / Y", "timm regnetx_002, regnety_002; torchvision regnet_y_400mf",
        "after the 3x3 group conv of each bottleneck, in the SE slot of RegNetY (RegNet paper, Sec. 5: "
        "SE after the 3x3 conv); RegNetY's SE is swapped with replace=True",
        _classes("timm.models.regnet.Bottleneck", "timm.models.regnet.PreBottleneck"),
        _timm_se_slot,
    ),
    Family(
        "RegNet X / Y (torchvision)", "torchvision regnet_y_400mf", "as above: f.se, or after f.b",
        _classes("torchvision.models.regnet.ResBottleneckBlock"), _torchvision_regnet,
    ),
    Family(
        "EfficientNet / MobileNetV2 / V3", "timm efficientnet_b0, mobilenetv2_100",
        "after the depthwise conv of each inverted-residual block, where SE sits (MobileNetV3 / EfficientNet); "
        "a block's own SE is swapped with replace=True",
        _classes(*(f"timm.models._efficientnet_blocks.{c}" for c in
                   ("DepthwiseSeparableConv", "InvertedResidual", "CondConvResidual", "EdgeResidual"))),
        _timm_se_slot,
    ),
    Family(
        "EfficientNet / MobileNetV2 / V3 (torchvision)", "torchvision mobilenet_v3_small, mobilenet_v2",
        "as above: in place of the block's SqueezeExcitation (replace=True), else after the depthwise stage",
        _classes("torchvision.models.mobilenetv2.InvertedResidual", "torchvision.models.mobilenetv3.InvertedResidual",
                 "torchvision.models.efficientnet.MBConv"),
        _torchvision_inverted_residual,
    ),
    Family(
        "ConvNeXt", "timm convnext_atto; torchvision convnext_tiny",
        "after the block's MLP (and its layer scale), before drop-path and the residual add",
        _classes("timm.models.convnext.ConvNeXtBlock"),
        lambda b: [("drop_path", "before", out_channels(b.conv_dw))],
    ),
    Family(
        "ConvNeXt (torchvision)", "torchvision convnext_tiny", "as above: before stochastic_depth",
        _classes("torchvision.models.convnext.CNBlock"),
        lambda b: [("stochastic_depth", "before", out_channels(b.block[0]))],
    ),
    Family(
        "ByobNet (ResNet-26ts style)", "timm resnext26ts",
        "in each block's attn_last slot: after the last conv + norm, before the sum (the SE paper's place; "
        "timm's seresnext26ts puts its SE in the mid-width attn slot instead, which replace=True swaps)",
        _classes(*(f"timm.models.byobnet.{c}" for c in
                   ("BasicBlock", "BottleneckBlock", "DarkBlock", "EdgeBlock", "RepVggBlock", "MobileOneBlock"))),
        _byob,
    ),
    Family(
        "DenseNet", "torchvision densenet121",
        "after each transition layer, i.e. between dense blocks (a dense block concatenates its children, so "
        "nothing can be appended inside it)",
        _classes("torchvision.models.densenet._Transition"),
        lambda b: [("", "after", out_channels(b.conv))], stage_ends="places",
    ),
    Family(
        "VGG-style plain stack", "torchvision vgg11 (its features), any nn.Sequential of convs and max-pools",
        "after each stage: after the stage's last layer, before its max-pool",
        _is_plain_stack, _plain_stack, stage_ends="places",
    ),
)
