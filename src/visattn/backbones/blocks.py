"""Residual blocks with an attention slot, laid out exactly as torchvision's.

``BasicBlock`` and ``Bottleneck`` have torchvision's module names (``conv1, bn1, conv2, bn2, (conv3, bn3),
relu, downsample``) so that torchvision weights load into them, plus one slot, ``attn``, for an attention
module and ``position``, where in the unit it acts. ``attn`` is ``None`` (not a submodule, no state_dict
keys) until a module is put there.

The positions are those of the SE paper's integration study (Hu et al., TPAMI version of
arXiv:1709.01507, Sec. 6.5 and Fig. 5):

- ``"standard"``: on the residual branch, after its last BN and before the sum with the identity.
- ``"pre"``: before the residual unit, on its input, so that both the residual branch and the identity
  branch see the re-weighted input ("SE-PRE: the SE block is moved before the residual unit").
- ``"post"``: after the sum with the identity branch *and after the final ReLU*, on the unit's output
  ("SE-POST: after the summation with the identity branch (after ReLU)"). Non-local blocks, BAM and the
  last-stage context modules use this position on the block they follow.
- ``"identity"``: on the identity (shortcut) branch, in parallel with the residual branch, after the
  projection / padding shortcut when the block has one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["POSITIONS", "BasicBlock", "Bottleneck", "ZeroPadShortcut", "adopt_block", "conv1x1", "conv3x3"]

#: Where a plug-in module can sit in a residual unit (SE paper, Fig. 5).
POSITIONS = ("standard", "pre", "post", "identity")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding, no bias (torchvision's)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (torchvision's)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    r"""Parameter-free shortcut of He et al.'s CIFAR ResNets ("option A").

    Sub-samples by ``stride`` (taking every ``stride``-th position, which matches the output grid of a
    3x3 / stride-2 / padding-1 convolution for odd sizes too) and pads the new channels with zeros.

    Args:
        in_channels: channels of the block input.
        out_channels: channels of the block output (``>= in_channels``).
        stride: spatial stride of the block.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: :math:`(B, C_{out}, \lceil H / s \rceil, \lceil W / s \rceil)`

    Example:
        >>> ZeroPadShortcut(16, 32, 2)(torch.ones(1, 16, 7, 7)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"ZeroPadShortcut: out_channels ({out_channels}) must be >= in_channels ({in_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # new channels appended as zeros: [B, C_out, H', W']
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))


class _AttentionSlot(nn.Module):
    """Shared part of the two blocks: the ``attn`` slot and its ``position``."""

    attn: nn.Module | None
    position: str

    def _init_slot(self) -> None:
        self.attn = None
        self.position = "standard"

    def set_attention(self, module: nn.Module, position: str = "standard") -> None:
        """Put ``module`` in this block's slot at ``position`` (one of :data:`POSITIONS`)."""
        if position not in POSITIONS:
            raise ValueError(f"{type(self).__name__}: position must be one of {POSITIONS}, got {position!r}")
        if self.attn is not None:
            raise ValueError(f"{type(self).__name__}: the attention slot already holds {type(self.attn).__name__}")
        self.attn = module
        self.position = position

    def extra_repr(self) -> str:
        return f"position={self.position!r}" if self.attn is not None else ""

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x) if self.attn is not None and self.position == "pre" else x

    def _merge(self, out: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """Standard / identity slots, the sum, the final ReLU and the post slot."""
        if self.attn is not None:
            if self.position == "standard":
                out = self.attn(out)
            elif self.position == "identity":
                identity = self.attn(identity)
        out = self.relu(out + identity)
        if self.attn is not None and self.position == "post":
            out = self.attn(out)
        return out


class BasicBlock(_AttentionSlot):
    r"""ResNet basic block (two 3x3 convs), torchvision's layout, with an attention slot.

    A conv-role module (e.g. SK) replaces ``conv1``, the 3x3 conv that carries the stride (as timm's
    ``SelectiveKernelBasic``); ``bn1`` becomes ``nn.Identity`` when that module normalises its own output.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of ``conv1`` (and of the shortcut).
        downsample: shortcut module (projection or zero padding), or ``None`` for the identity.
        groups: must be 1 (as torchvision).
        base_width: must be 64 (as torchvision).
        dilation: must be 1 (as torchvision).
        norm_layer: norm class, ``nn.BatchNorm2d`` by default.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: :math:`(B, planes, \lceil H / s \rceil, \lceil W / s \rceil)`

    Example:
        >>> BasicBlock(64, 64)(torch.randn(1, 64, 8, 8)).shape
        torch.Size([1, 64, 8, 8])
    """

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, norm_layer: type[nn.Module] | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock: only groups=1 and base_width=64 are supported (as torchvision)")
        if dilation > 1:
            raise ValueError("BasicBlock: dilation > 1 is not supported (as torchvision)")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        self._init_slot()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pre(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self._merge(out, identity)


class Bottleneck(_AttentionSlot):
    r"""ResNet bottleneck block (1x1, 3x3, 1x1), torchvision's layout (stride on the 3x3), with an attention slot.

    A conv-role module (e.g. SK) replaces ``conv2``, the 3x3 conv with the stride (as in SKNet and
    timm's ``SelectiveKernelBottleneck``); ``bn2`` becomes ``nn.Identity`` when that module normalises
    its own output.

    Args:
        inplanes: input channels.
        planes: bottleneck width before expansion; the output has ``4 * planes`` channels.
        stride: stride of ``conv2`` (and of the shortcut).
        downsample: shortcut module, or ``None`` for the identity.
        groups: groups of the 3x3 conv (ResNeXt cardinality).
        base_width: width per group (64 for ResNet, 4 for ResNeXt-32x4d).
        dilation: dilation of the 3x3 conv.
        norm_layer: norm class, ``nn.BatchNorm2d`` by default.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: :math:`(B, 4 \cdot planes, \lceil H / s \rceil, \lceil W / s \rceil)`

    Example:
        >>> Bottleneck(256, 64)(torch.randn(1, 256, 8, 8)).shape
        torch.Size([1, 256, 8, 8])
    """

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, norm_layer: type[nn.Module] | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self._init_slot()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pre(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self._merge(out, identity)


def adopt_block(cls: type[BasicBlock] | type[Bottleneck], block: nn.Module) -> BasicBlock | Bottleneck:
    """A ``cls`` block made of ``block``'s own submodules (same objects, same state_dict keys).

    Used to give a torchvision ``BasicBlock`` / ``Bottleneck`` visattn's attention slot: the new block computes
    what the old one did until a module is put in its slot.
    """
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    names = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3") if cls is Bottleneck else ("conv1", "bn1", "conv2", "bn2")
    for name in names:
        setattr(new, name, getattr(block, name))
    new.relu = block.relu
    new.downsample = block.downsample
    new.stride = block.stride
    new.training = block.training
    new._init_slot()
    return new
