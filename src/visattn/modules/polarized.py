"""Polarized Self-Attention.

Liu, Xu, Xiao, Li, Chen. "Polarized Self-Attention: Towards High-quality Pixel-wise Regression", 2021.
https://arxiv.org/abs/2107.00782 -- official code: https://github.com/DeLightCMU/PSA
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import check_input, softmax32
from ..registry import register

__all__ = ["PolarizedSelfAttention", "PolarizedChannelAttention", "PolarizedSpatialAttention"]

_LAYOUTS = ("parallel", "sequential")


def _check_channels(cls_name: str, channels: int) -> int:
    if channels < 2:
        raise ValueError(f"{cls_name}: channels must be >= 2 (the internal width is C // 2), got {channels!r}")
    return channels // 2


class PolarizedChannelAttention(nn.Module):
    r"""The channel-only branch of polarized self-attention.

    .. math::
        A^{ch}(X) = F_{SG}\big[\mathrm{LN}\big(W_z\big(\sigma_1(W_v(X)) \times F_{SM}(\sigma_2(W_q(X)))\big)\big)\big]
        \in R^{C \times 1 \times 1}

    :math:`W_q` is a 1x1 conv to one channel whose :math:`HW` values are soft-maxed into attention over
    positions, :math:`W_v` a 1x1 conv to :math:`C/2` channels pooled by those attention weights, :math:`W_z`
    a 1x1 conv back to :math:`C`, LN the LayerNorm over the :math:`C` values, :math:`F_{SG}` the sigmoid.

    Args:
        channels: input channels :math:`C` (>= 2); the internal width is :math:`\lfloor C/2 \rfloor`.
        channel_norm: apply the paper's LayerNorm after :math:`W_z` (True) or not, as the official
            parallel code ``PSA_p`` (False).
        bias: biases in the 1x1 convs (official ``PSA_p``: none; ``PSA_s`` has them on its :math:`W_z`
            bottleneck only). A bias on :math:`W_q` cancels in the softmax.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`, the input scaled by :math:`A^{ch}`, of shape :math:`(B, C, 1, 1)`,
          which is the ``gate`` submodule's output and :meth:`attention_map`'s.

    Example:
        >>> ch = PolarizedChannelAttention(64)
        >>> ch.attention_map(torch.randn(2, 64, 5, 7)).shape
        torch.Size([2, 64, 1, 1])
    """

    def __init__(self, channels: int, *, channel_norm: bool = True, bias: bool = False):
        super().__init__()
        mid = _check_channels(type(self).__name__, channels)
        self.channels = channels
        self.wq = nn.Conv2d(channels, 1, 1, bias=bias)
        self.wv = nn.Conv2d(channels, mid, 1, bias=bias)
        self.wz = nn.Conv2d(mid, channels, 1, bias=bias)
        self.norm = nn.LayerNorm(channels) if channel_norm else nn.Identity()
        self.gate = nn.Sigmoid()

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""Channel weights :math:`A^{ch}`, shape :math:`(B, C, 1, 1)`."""
        check_input(self, x, self.channels)
        b = x.shape[0]
        q = softmax32(self.wq(x).flatten(2), dim=-1)  # [B, 1, HW], softmax over positions
        v = self.wv(x).flatten(2)  # [B, C/2, HW]
        z = torch.matmul(v, q.transpose(1, 2)).unsqueeze(-1)  # [B, C/2, 1, 1]
        z = self.norm(self.wz(z).reshape(b, self.channels))  # [B, C], LayerNorm over C
        return self.gate(z.reshape(b, self.channels, 1, 1))  # [B, C, 1, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


class PolarizedSpatialAttention(nn.Module):
    r"""The spatial-only branch of polarized self-attention.

    .. math::
        A^{sp}(X) = F_{SG}\big[\sigma_3\big(F_{SM}(\sigma_1(F_{GP}(W_q(X)))) \times \sigma_2(W_v(X))\big)\big]
        \in R^{1 \times H \times W}

    :math:`W_q, W_v` are 1x1 convs to :math:`C/2` channels, :math:`F_{GP}` global average pooling,
    :math:`F_{SM}` the softmax over the :math:`C/2` pooled query channels, :math:`F_{SG}` the sigmoid.

    Args:
        channels: input channels :math:`C` (>= 2); the internal width is :math:`\lfloor C/2 \rfloor`.
        bias: biases in the 1x1 convs (official ``PSA_p`` and ``PSA_s``: none in this branch).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`, the input scaled by :math:`A^{sp}`, of shape :math:`(B, 1, H, W)`,
          which is the ``gate`` submodule's output and :meth:`attention_map`'s.

    Example:
        >>> sp = PolarizedSpatialAttention(64)
        >>> sp.attention_map(torch.randn(2, 64, 5, 7)).shape
        torch.Size([2, 1, 5, 7])
    """

    def __init__(self, channels: int, *, bias: bool = False):
        super().__init__()
        mid = _check_channels(type(self).__name__, channels)
        self.channels = channels
        self.wq = nn.Conv2d(channels, mid, 1, bias=bias)
        self.wv = nn.Conv2d(channels, mid, 1, bias=bias)
        self.gate = nn.Sigmoid()

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""Spatial weights :math:`A^{sp}`, shape :math:`(B, 1, H, W)`."""
        check_input(self, x, self.channels)
        b, _, h, w = x.shape
        q = softmax32(self.wq(x).mean((2, 3)), dim=-1).unsqueeze(1)  # [B, 1, C/2], softmax over channels
        v = self.wv(x).flatten(2)  # [B, C/2, HW]
        return self.gate(torch.matmul(q, v).reshape(b, 1, h, w))  # [B, 1, HW] -> [B, 1, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


@register(
    "polarized",
    title="Polarized Self-Attention",
    paper="Polarized Self-Attention: Towards High-quality Pixel-wise Regression",
    authors="Liu et al.",
    venue="arXiv",
    year=2021,
    arxiv="2107.00782",
    code="https://github.com/DeLightCMU/PSA",
    family="polarized",
    domain="channel+spatial",
    weights="matmul",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Follows the paper. The official code (DeLightCMU/PSA, semantic-segmentation/network/PSA.py; its "
        "spatial_pool is the channel-only branch, channel_pool the spatial-only one) differs: its parallel PSA_p has "
        "no LayerNorm after W_z (conv_up; channel_norm=False reproduces that), its sequential PSA_s replaces W_z by "
        "a bottleneck C/2 -> C/8 -> LayerNorm -> ReLU -> C, and in the spatial branch both apply the softmax over "
        "the HW positions (PSA_p after the product, PSA_s to W_v(X)) instead of over the C/2 channels of the pooled "
        "query as the paper does; visattn does not reproduce these. Biases: every official W_q and W_v conv (both "
        "branches, PSA_p and PSA_s) is bias=False, as is PSA_p's W_z; PSA_s's two W_z convs keep PyTorch's default "
        "bias=True. visattn has no biases by default (bias=True adds them to all its 1x1 convs; the paper does not "
        "say)."
    ),
)
class PolarizedSelfAttention(nn.Module):
    r"""Polarized self-attention: a channel-only and a spatial-only branch, in parallel or in sequence.

    Each branch keeps full resolution along one axis and collapses the other, with a softmax over the
    collapsed axis and a sigmoid on the kept one (see :class:`PolarizedChannelAttention` and
    :class:`PolarizedSpatialAttention`). The two layouts:

    .. math::
        \mathrm{PSA}_p(X) = A^{ch}(X) \odot^{ch} X + A^{sp}(X) \odot^{sp} X,\qquad
        \mathrm{PSA}_s(X) = A^{sp}(Z^{ch}) \odot^{sp} Z^{ch},\quad Z^{ch} = A^{ch}(X) \odot^{ch} X

    Args:
        channels: input channels :math:`C` (>= 2); the internal width of both branches is
            :math:`\lfloor C/2 \rfloor`.
        layout: ``"parallel"`` (:math:`\mathrm{PSA}_p`, default) or ``"sequential"`` (:math:`\mathrm{PSA}_s`).
        channel_norm: the LayerNorm after :math:`W_z` in the channel branch (paper: True; the official
            ``PSA_p`` omits it: False).
        bias: biases in all the 1x1 convs (official: none, except the two convs of ``PSA_s``'s :math:`W_z`
            bottleneck).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The branches are the submodules ``channel`` and ``spatial``; each has a ``gate`` (sigmoid) whose output
    is its weights. :meth:`attention_map` returns both.

    Example:
        >>> psa = PolarizedSelfAttention(64)
        >>> sum(p.numel() for p in psa.parameters())  # (64 + 2 * 64 * 32 + 2 * 64) + 2 * 64 * 32
        8384
        >>> psa(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
        >>> PolarizedSelfAttention(64, layout="sequential")(torch.randn(1, 64, 5, 5)).shape
        torch.Size([1, 64, 5, 5])
    """

    def __init__(self, channels: int, *, layout: str = "parallel", channel_norm: bool = True, bias: bool = False):
        super().__init__()
        if layout not in _LAYOUTS:
            raise ValueError(f"PolarizedSelfAttention: layout must be one of {_LAYOUTS}, got {layout!r}")
        _check_channels(type(self).__name__, channels)
        self.channels = channels
        self.layout = layout
        self.channel = PolarizedChannelAttention(channels, channel_norm=channel_norm, bias=bias)
        self.spatial = PolarizedSpatialAttention(channels, bias=bias)

    def attention_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The weights :math:`(A^{ch}, A^{sp})`, shapes :math:`(B, C, 1, 1)` and :math:`(B, 1, H, W)`.

        In the sequential layout :math:`A^{sp}` is computed on :math:`Z^{ch} = A^{ch} \odot X`, so that the
        output is ``x * a_ch * a_sp``; in the parallel layout it is ``x * a_ch + x * a_sp``.
        """
        check_input(self, x, self.channels)
        a_ch = self.channel.attention_map(x)
        a_sp = self.spatial.attention_map(x * a_ch if self.layout == "sequential" else x)
        return a_ch, a_sp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        if self.layout == "sequential":
            z = x * self.channel.attention_map(x)
            return z * self.spatial.attention_map(z)
        return x * self.channel.attention_map(x) + x * self.spatial.attention_map(x)
