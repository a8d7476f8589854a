"""Large Kernel Attention (LKA) and VAN's attention block.

Guo, Lu, Liu, Cheng, Hu. "Visual Attention Network", Computational Visual Media 2023 (arXiv February 2022).
https://arxiv.org/abs/2202.09741 -- official code: https://github.com/Visual-Attention-Network/VAN-Classification
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerType, check_input, create_act
from ..registry import register

__all__ = ["LargeKernelAttention", "VanAttention"]

_CODE = "https://github.com/Visual-Attention-Network/VAN-Classification"


@register(
    "lka",
    title="Large Kernel Attention (LKA)",
    paper="Visual Attention Network",
    authors="Guo et al.",
    venue="Computational Visual Media",
    year=2023,
    arxiv="2202.09741",
    code=_CODE,
    family="large-kernel",
    domain="channel+spatial",
    weights="conv",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Paper (eq. 1-2) and official AttentionModule agree: a K x K conv (K = 21, d = 3) decomposed into a "
        "(2d-1) x (2d-1) depthwise conv (5x5, pad 2), a ceil(K/d) x ceil(K/d) depthwise conv with dilation d "
        "(7x7, dilation 3, pad 9) and a 1x1 conv, all with biases; the map is applied as is, with no sigmoid: "
        "y = x * attn. Submodule names (conv0, conv_spatial, conv1) match the official state dict."
    ),
)
class LargeKernelAttention(nn.Module):
    r"""Large Kernel Attention: an attention map from a decomposed large-kernel convolution.

    .. math::
        \mathrm{Attention} = \mathrm{Conv}_{1\times1}(\mathrm{DW\text{-}D\text{-}Conv}(\mathrm{DW\text{-}Conv}(F))),
        \quad \mathrm{Output} = \mathrm{Attention} \otimes F

    A :math:`K \times K` convolution is decomposed into a :math:`(2d-1) \times (2d-1)` depthwise convolution,
    a :math:`\lceil K/d \rceil \times \lceil K/d \rceil` depthwise convolution with dilation :math:`d`, and a
    pointwise convolution (paper Sec. 3.2). The attention is not squashed by a sigmoid (paper and official
    code); :math:`\otimes` is the element-wise product.

    Args:
        channels: input channels :math:`C`.
        kernel_size: the receptive field :math:`K` of the decomposed convolution (paper: 21).
        dilation: the dilation :math:`d` (paper: 3). ``ceil(K / d)`` must be odd so that the output keeps
            :math:`H \times W`.
        bias: biases in the three convolutions (official: yes).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    :meth:`attention_map` returns the attention, shape :math:`(B, C, H, W)`; it is also the output of the
    ``gate`` submodule (an identity: LKA applies the convolution output directly).

    Example:
        >>> lka = LargeKernelAttention(64)
        >>> lka.conv0.kernel_size, lka.conv_spatial.kernel_size, lka.conv_spatial.dilation
        ((5, 5), (7, 7), (3, 3))
        >>> sum(p.numel() for p in lka.parameters())
        9024
        >>> lka(torch.randn(2, 64, 7, 11)).shape
        torch.Size([2, 64, 7, 11])
    """

    def __init__(self, channels: int, *, kernel_size: int = 21, dilation: int = 3, bias: bool = True):
        super().__init__()
        if dilation < 1 or kernel_size < 1:
            raise ValueError(f"LargeKernelAttention: kernel_size and dilation must be positive, got "
                             f"kernel_size={kernel_size}, dilation={dilation}")
        local = 2 * dilation - 1
        dilated = -(-kernel_size // dilation)
        if dilated % 2 == 0:
            raise ValueError(
                f"LargeKernelAttention: kernel_size={kernel_size}, dilation={dilation} gives an even dilated kernel "
                f"ceil(K / d) = {dilated}; choose K, d with ceil(K / d) odd (paper: K = 21, d = 3)"
            )
        self.channels = channels
        self.conv0 = nn.Conv2d(channels, channels, local, padding=local // 2, groups=channels, bias=bias)
        self.conv_spatial = nn.Conv2d(channels, channels, dilated, padding=dilation * (dilated - 1) // 2,
                                      groups=channels, dilation=dilation, bias=bias)
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=bias)
        self.gate = nn.Identity()

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map (the 1x1 conv's output), shape :math:`(B, C, H, W)`."""
        check_input(self, x, self.channels)
        return self.gate(self.conv1(self.conv_spatial(self.conv0(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


@register(
    "van",
    title="VAN attention block (LKA with projections)",
    paper="Visual Attention Network",
    authors="Guo et al.",
    venue="Computational Visual Media",
    year=2023,
    arxiv="2202.09741",
    code=_CODE,
    family="large-kernel",
    domain="channel+spatial",
    weights="conv",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Follows the official SpatialAttention (paper Fig. 3's attention layer): conv1x1, GELU, LKA, conv1x1, "
        "plus the input (shortcut). The shortcut is part of the official attention layer; VAN's Block adds a "
        "second, outer residual around BN and layer scale, which is not part of this module. Submodule names "
        "(proj_1, activation, spatial_gating_unit, proj_2) match the official state dict."
    ),
)
class VanAttention(nn.Module):
    r"""VAN's attention layer: LKA between two pointwise projections, with a shortcut.

    .. math::
        y = x + W_2\,\mathrm{LKA}(\phi(W_1 x))

    where :math:`W_1, W_2` are 1x1 convolutions (``proj_1``, ``proj_2``), :math:`\phi` is GELU and
    :math:`\mathrm{LKA}` is :class:`LargeKernelAttention` (``spatial_gating_unit``).

    Args:
        channels: input channels :math:`C` (VAN's ``d_model``).
        kernel_size: :math:`K` of the LKA (paper: 21).
        dilation: :math:`d` of the LKA (paper: 3).
        act_layer: :math:`\phi` (GELU).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    :meth:`attention_map` returns the LKA's attention on :math:`\phi(W_1 x)`, shape :math:`(B, C, H, W)`
    (the output of ``spatial_gating_unit.gate``).

    Example:
        >>> van = VanAttention(64)
        >>> sum(p.numel() for p in van.parameters())
        17344
        >>> van(torch.randn(2, 64, 7, 11)).shape
        torch.Size([2, 64, 7, 11])
    """

    def __init__(self, channels: int, *, kernel_size: int = 21, dilation: int = 3, act_layer: LayerType = "gelu"):
        super().__init__()
        self.channels = channels
        self.proj_1 = nn.Conv2d(channels, channels, 1)
        self.activation = create_act(act_layer)
        self.spatial_gating_unit = LargeKernelAttention(channels, kernel_size=kernel_size, dilation=dilation)
        self.proj_2 = nn.Conv2d(channels, channels, 1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""The LKA attention on :math:`\phi(W_1 x)`, shape :math:`(B, C, H, W)`."""
        check_input(self, x, self.channels)
        return self.spatial_gating_unit.attention_map(self.activation(self.proj_1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))
