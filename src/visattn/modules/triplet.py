"""Triplet Attention.

Misra, Nalamada, Arasanipalai, Hou. "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021.
https://arxiv.org/abs/2010.03045 -- official code: https://github.com/landskape-ai/triplet-attention
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..layers import check_input
from ..registry import register

__all__ = ["TripletAttention", "ZPoolGate"]


class ZPoolGate(nn.Module):
    r"""One branch of triplet attention: Z-pool, k x k conv + BN, sigmoid, on a 2-D plane of the input.

    The branch collapses one of the three dimensions (C, H, W) of its input with the Z-pool
    :math:`[\max; \mathrm{mean}]` (max first, as the official ``ZPool``) and convolves the remaining plane:

    .. math::
        s = \sigma(\mathrm{BN}(\mathrm{Conv}_{k \times k}(\mathrm{ZPool}(\hat x))))

    where :math:`\hat x` is the input rotated so that the pooled dimension is dimension 1. The rotation is
    not materialised: the pooled tensor is laid out as the rotated input would give it, and the weights
    :math:`s` are returned already rotated back, so that ``x * s`` broadcasts.

    Args:
        pool_dim: the dimension of a ``(B, C, H, W)`` input the Z-pool collapses: 1 (C; the plain
            spatial branch, conv over (H, W)), 2 (H; conv over (C, W)) or 3 (W; conv over (H, C)).
        kernel_size: :math:`k` (paper and official code: 7), odd.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: the weights :math:`s`, :math:`(B, 1, H, W)`, :math:`(B, C, 1, W)` or :math:`(B, C, H, 1)`
          for ``pool_dim`` 1, 2, 3.

    Example:
        >>> branch = ZPoolGate(2)
        >>> branch(torch.randn(2, 16, 5, 6)).shape
        torch.Size([2, 16, 1, 6])
    """

    def __init__(self, pool_dim: int, *, kernel_size: int = 7):
        super().__init__()
        if pool_dim not in (1, 2, 3):
            raise ValueError(f"ZPoolGate: pool_dim must be 1, 2 or 3, got {pool_dim!r}")
        self.pool_dim = pool_dim
        # Named as the official BasicConv (conv, bn) so official state dicts load; momentum 0.01 as there.
        self.conv = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False),
            bn=nn.BatchNorm2d(1, eps=1e-5, momentum=0.01),
        ))
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.pool_dim
        z = torch.stack((x.amax(dim=d), x.mean(dim=d)), dim=1)  # [B, 2, *the two kept dims in order*]
        if d == 3:
            # The official branch permutes x to (B, W, H, C): the conv plane is (H, C), not (C, H).
            z = z.transpose(2, 3)  # [B, 2, H, C]
        s = self.gate(self.conv(z))
        if d == 1:
            return s  # [B, 1, H, W]
        if d == 2:
            return s.transpose(1, 2)  # [B, 1, C, W] -> [B, C, 1, W]
        return s.permute(0, 3, 2, 1)  # [B, 1, H, C] -> [B, C, H, 1]


@register(
    "triplet",
    title="Triplet Attention",
    paper="Rotate to Attend: Convolutional Triplet Attention Module",
    authors="Misra et al.",
    venue="WACV",
    year=2021,
    arxiv="2010.03045",
    code="https://github.com/landskape-ai/triplet-attention",
    family="triplet",
    domain="channel+spatial",
    weights="conv",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Paper and official code agree: Z-pool [max; mean] (max first), 7x7 conv without bias, BatchNorm, "
        "sigmoid, average of the three branches (1/2 of two with no_spatial). visattn follows the official "
        "code where the paper is silent: BN momentum 0.01 (BasicConv), the (H, C) orientation of the W-pooled "
        "branch (it permutes x to (B, W, H, C)), and the submodule names cw / hc / hw with conv.conv / conv.bn, "
        "so official state dicts load. The rotations are not materialised: the weights are broadcast instead, "
        "which is the same function."
    ),
)
class TripletAttention(nn.Module):
    r"""Triplet attention: three Z-pool + conv gates, one per pair of the dimensions (C, H, W), averaged.

    .. math::
        y = \tfrac{1}{3}\left(x\, s_{hw} + P_1^{-1}(P_1(x)\, s_{cw}) + P_2^{-1}(P_2(x)\, s_{hc})\right)
          = x \cdot \tfrac{1}{3}(s_{hw} + s_{cw} + s_{hc})

    where :math:`P_1` rotates x to :math:`(B, H, C, W)` (H in the channel role; its gate convolves the
    (C, W) plane), :math:`P_2` rotates x to :math:`(B, W, H, C)` (W in the channel role; (H, C) plane),
    and each :math:`s = \sigma(\mathrm{BN}(\mathrm{Conv}_{k\times k}([\max; \mathrm{mean}])))` pools
    over the dimension in the channel role (see :class:`ZPoolGate`).

    Args:
        channels: input channels :math:`C` (only checked; the module's size does not depend on it).
        kernel_size: :math:`k` of the three convs (paper default 7), odd, padding :math:`(k - 1) / 2`.
        no_spatial: drop the plain spatial (H, W) branch and average the two cross-dimension branches
            (official option; the paper's ablation "without spatial attention").

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The branches ``cw`` (H pooled), ``hc`` (W pooled) and ``hw`` (C pooled) each have a ``gate``
    submodule (sigmoid) whose output is that branch's weights; :meth:`attention_map` returns their
    average, the weights x is multiplied by.

    Example:
        >>> ta = TripletAttention(64)
        >>> sum(p.numel() for p in ta.parameters())  # 3 x (2 * 7 * 7 conv + 2 BN)
        300
        >>> ta(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
    """

    def __init__(self, channels: int, *, kernel_size: int = 7, no_spatial: bool = False):
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"TripletAttention: kernel_size must be a positive odd int, got {kernel_size!r}")
        self.channels = channels
        self.no_spatial = no_spatial
        self.cw = ZPoolGate(2, kernel_size=kernel_size)
        self.hc = ZPoolGate(3, kernel_size=kernel_size)
        self.hw = None if no_spatial else ZPoolGate(1, kernel_size=kernel_size)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The averaged branch weights, shape :math:`(B, C, H, W)`, by which the module scales x."""
        check_input(self, x, self.channels)
        s = self.cw(x) + self.hc(x)  # [B, C, 1, W] + [B, C, H, 1] -> [B, C, H, W]
        if self.hw is None:
            return s * 0.5
        return (s + self.hw(x)) * (1.0 / 3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)
