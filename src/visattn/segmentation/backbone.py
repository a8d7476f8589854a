"""Dilated ResNets for dense prediction: ResNet-18/50/101 at output stride 8 or 16, and a tiny CPU variant.

Yu & Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016; Chen et al., DeepLab
(TPAMI 2017); the layout of mmsegmentation's ``ResNetV1c`` with ``dilations=(1, 1, 2, 4)``,
``strides=(1, 2, 1, 1)``, ``contract_dilation=True`` (the "-D8" of its config names).

The last stages keep their resolution: their stride-2 convs get stride 1 and every later 3x3 conv is dilated
by the stride it replaced (2 in stage 3 and 4 in stage 4 at output stride 8; 2 in stage 4 at 16). With
``contract_dilation`` the first block of a dilated stage uses half the stage's dilation (mmseg's choice; the
first block still sees the previous stage's grid spacing). ``deep_stem`` replaces the 7x7 stem conv by three
3x3 convs (in -> 32 stride 2, 32 -> 32, 32 -> 64, each BN + ReLU), as ResNetV1c.

Blocks are :mod:`visattn.backbones.blocks`' ``BasicBlock`` / ``Bottleneck`` (torchvision layout, stride on
the 3x3). A dilated basic block dilates its first 3x3 conv only, as mmseg's ``BasicBlock``.
"""

from __future__ import annotations

from torch import nn

from ..backbones.blocks import BasicBlock, Bottleneck, conv1x1, conv3x3

__all__ = ["DilatedResNet", "dilated_resnet", "DILATED_BACKBONES"]

#: name -> (block, blocks per stage, stage widths (before expansion), stem width)
DILATED_BACKBONES: dict[str, tuple[type[nn.Module], tuple[int, ...], tuple[int, ...], int]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), (64, 128, 256, 512), 64),
    # The CPU variant: one basic block per stage at 1/4 of ResNet-18's widths (~0.2M parameters).
    "tiny": (BasicBlock, (1, 1, 1, 1), (16, 32, 64, 128), 16),
}


def _basic(inplanes: int, planes: int, stride: int, downsample: nn.Module | None, dilation: int) -> BasicBlock:
    block = BasicBlock(inplanes, planes, stride, downsample)
    if dilation > 1:  # mmseg's BasicBlock dilates conv1 only
        block.conv1 = conv3x3(inplanes, planes, stride, dilation=dilation)
    return block


class DilatedResNet(nn.Module):
    r"""A ResNet whose last stages trade stride for dilation; returns the four stages' feature maps.

    Args:
        name: ``"resnet18"``, ``"resnet50"``, ``"resnet101"`` or ``"tiny"`` (the CPU variant).
        output_stride: 8 (stages 3 and 4 dilated by 2 and 4), 16 (stage 4 dilated by 2) or 32 (no dilation).
        in_chans: input channels.
        deep_stem: three 3x3 stem convs (mmseg's ResNetV1c) instead of torchvision's 7x7 conv.
        contract_dilation: the first block of a dilated stage uses half its dilation (mmseg's default).

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: four maps; stage 4 (and 3 at output stride 8) at :math:`\lceil H / os \rceil`, e.g.
          ``[(B, 256, H/4), (B, 512, H/8), (B, 1024, H/8), (B, 2048, H/8)]`` for ResNet-50-D8.

    Example:
        >>> import torch
        >>> [f.shape[-1] for f in DilatedResNet("tiny")(torch.randn(1, 3, 33, 33))]
        [9, 5, 5, 5]
    """

    def __init__(self, name: str = "resnet50", *, output_stride: int = 8, in_chans: int = 3, deep_stem: bool = True,
                 contract_dilation: bool = True):
        super().__init__()
        if name not in DILATED_BACKBONES:
            raise ValueError(f"DilatedResNet: name must be one of {sorted(DILATED_BACKBONES)}, got {name!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"DilatedResNet: output_stride must be 8, 16 or 32, got {output_stride!r}")
        block, depths, widths, stem = DILATED_BACKBONES[name]
        self.name, self.output_stride = name, output_stride
        if deep_stem:
            half = stem // 2
            self.stem = nn.Sequential(
                conv3x3(in_chans, half, 2), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                conv3x3(half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                conv3x3(half, stem), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem),
                                      nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        dilated = {8: 2, 16: 1, 32: 0}[output_stride]  # how many of the last stages trade stride for dilation
        expansion = block.expansion
        self.inplanes = stem
        self.out_channels: list[int] = []
        stages, dilation = [], 1
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            stride = 1 if i == 0 else 2
            if i >= 4 - dilated:
                dilation, stride = dilation * 2, 1
            first = dilation // 2 if contract_dilation and dilation > 1 else dilation
            stages.append(self._stage(block, width, depth, stride, dilation, first))
            self.out_channels.append(width * expansion)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, block, planes: int, depth: int, stride: int, dilation: int, first: int) -> nn.Sequential:
        out = planes * block.expansion
        down = None
        if stride != 1 or self.inplanes != out:
            down = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
        make = _basic if block is BasicBlock else (
            lambda i, p, s, d, dil: Bottleneck(i, p, s, d, dilation=dil))
        layers = [make(self.inplanes, planes, stride, down, first)]
        self.inplanes = out
        layers += [make(out, planes, 1, None, dilation) for _ in range(1, depth)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        feats = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            feats.append(x)
        return feats


def dilated_resnet(name: str = "resnet50", **kwargs) -> DilatedResNet:
    """Build :class:`DilatedResNet` ``name`` (see its arguments)."""
    return DilatedResNet(name, **kwargs)
