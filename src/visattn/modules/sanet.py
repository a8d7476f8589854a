"""Squeeze-and-Attention module (SANet).

Zhong, Lin, Bidart, Hu, Ben Daya, Li, Zheng, Li, Wong. "Squeeze-and-Attention Networks for Semantic
Segmentation", CVPR 2020. https://arxiv.org/abs/1909.03402 -- no official code was released with the paper.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import CeilAvgPool2d, LayerType, check_input, check_size, create_act, create_norm
from ..registry import register

__all__ = ["SqueezeAttention"]

_UPSAMPLE = ("nearest", "bilinear")


def _conv3x3(in_channels: int, out_channels: int, *, stride: int, norm_layer: LayerType,
             act_layer: LayerType) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        bn=create_norm(norm_layer, out_channels),
        act=create_act(act_layer),
    ))


@register(
    "sanet",
    title="Squeeze-and-Attention module (SA)",
    paper="Squeeze-and-Attention Networks for Semantic Segmentation",
    authors="Zhong et al.",
    venue="CVPR",
    year=2020,
    arxiv="1909.03402",
    code=None,
    family="squeeze-attention",
    domain="channel+spatial",
    weights="conv",
    applied="scale",
    role="conv",
    placement="replaces_conv3x3_norm",
    complexity="O(HW)",
    note=(
        "No official code: visattn follows the paper's equations, X_res = F(X_in) (the main conv), "
        "X_attn = Up(sigmoid(F_attn(APool(X_in)))), X_out = X_attn * X_res + X_attn, and fills in what the paper "
        "leaves open: the main conv is conv3x3 + BN + ReLU (stride here), F_attn is conv3x3 + BN + ReLU then "
        "conv3x3 + BN (no ReLU before the sigmoid, which would clamp it to >= 0.5), APool is a 2x2 average pool "
        "with stride 2 whose partial windows at odd sizes are averaged too (ceil mode), and Up is a nearest "
        "resize to the main conv's output size (bilinear as an option). H, W >= 3 so that the pooled map is at "
        "least 2 x 2 (its BN in training at batch 1, and torch.export)."
    ),
)
class SqueezeAttention(nn.Module):
    r"""Squeeze-and-Attention module: a conv whose output is re-weighted by attention from a pooled input.

    .. math::
        X_{res} = \mathcal{F}(X_{in}),\quad
        X_{attn} = \mathrm{Up}(\sigma(\mathcal{F}_{attn}(\mathrm{APool}(X_{in})))),\quad
        X_{out} = X_{attn} \odot X_{res} + X_{attn}

    :math:`\mathcal{F}` is the main conv (3x3 + BN + ReLU, with the stride), :math:`\mathcal{F}_{attn}` the
    attention convolutional channel (3x3 + BN + ReLU, 3x3 + BN), APool an average pool, :math:`\sigma`
    sigmoid and Up a resize to :math:`X_{res}`'s size. The attention is per channel and position: it
    "squeezes" the spatial size, not the channels.

    Args:
        channels: input channels :math:`C`.
        out_channels: output channels :math:`C'` (default: ``channels``).
        stride: stride of the main conv.
        pool_size: kernel and stride of APool (paper: 2); partial windows at the bottom / right edge are
            averaged over their in-bounds elements.
        norm_layer: norm after each conv (``"batch"``).
        act_layer: activation of the main conv and of the first attention conv (``"relu"``).
        gate_layer: :math:`\sigma` (``"sigmoid"``).
        upsample_mode: ``"nearest"`` or ``"bilinear"`` (align_corners=False) for Up.

    Shape:
        - Input: :math:`(B, C, H, W)` with :math:`H, W \ge` ``min_size`` (``pool_size + 1``: the pooled map is
          at least 2 x 2)
        - Output: :math:`(B, C', \lceil H / stride \rceil, \lceil W / stride \rceil)`

    The ``gate`` submodule outputs the attention before Up, at the pooled size; :meth:`attention_map`
    returns :math:`X_{attn}` of shape :math:`(B, C', \lceil H / stride \rceil, \lceil W / stride \rceil)`.

    Example:
        >>> sa = SqueezeAttention(64)
        >>> sum(p.numel() for p in sa.parameters())  # 3 * (64 * 64 * 9 + 2 * 64)
        110976
        >>> sa(torch.randn(2, 64, 7, 13)).shape
        torch.Size([2, 64, 7, 13])
        >>> SqueezeAttention(64, out_channels=32, stride=2)(torch.randn(1, 64, 7, 13)).shape
        torch.Size([1, 32, 4, 7])
    """

    def __init__(self, channels: int, *, out_channels: int | None = None, stride: int = 1, pool_size: int = 2,
                 norm_layer: LayerType = "batch", act_layer: LayerType = "relu", gate_layer: LayerType = "sigmoid",
                 upsample_mode: str = "nearest"):
        super().__init__()
        out_channels = channels if out_channels is None else int(out_channels)
        name = type(self).__name__
        if upsample_mode not in _UPSAMPLE:
            raise ValueError(f"{name}: upsample_mode must be one of {_UPSAMPLE}, got {upsample_mode!r}")
        if stride < 1 or pool_size < 1:
            raise ValueError(f"{name}: stride and pool_size must be >= 1, got {stride!r}, {pool_size!r}")
        self.channels = channels
        self.out_channels = out_channels
        self.upsample_mode = upsample_mode
        # The pooled map ceil(H / p) must be at least 2 x 2: its BN needs more than one value per channel in
        # training at batch 1, and torch.export specialises an intermediate size that may be 1.
        self.min_size = pool_size + 1 if pool_size > 1 else 1
        self.conv = _conv3x3(channels, out_channels, stride=stride, norm_layer=norm_layer, act_layer=act_layer)
        self.pool = CeilAvgPool2d(pool_size)
        self.attn = nn.Sequential(
            _conv3x3(channels, out_channels, stride=1, norm_layer=norm_layer, act_layer=act_layer),
            _conv3x3(out_channels, out_channels, stride=1, norm_layer=norm_layer, act_layer=None),
        )
        self.gate = create_act(gate_layer)

    def _check(self, x: torch.Tensor) -> None:
        check_input(self, x, self.channels)
        check_size(self, x, self.min_size, f"the pooled map ceil(H / {self.pool.kernel_size}) must be >= 2")

    def _attention(self, x: torch.Tensor, size) -> torch.Tensor:
        a = self.gate(self.attn(self.pool(x)))  # [B, C', ceil(H / p), ceil(W / p)]
        if self.upsample_mode == "bilinear":
            return F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(a, size=size, mode="nearest")  # [B, C', H', W']

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`X_{attn}`, resized to the main conv's output: shape :math:`(B, C', H', W')`."""
        self._check(x)
        sh, sw = self.conv.conv.stride
        return self._attention(x, ((x.shape[-2] - 1) // sh + 1, (x.shape[-1] - 1) // sw + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        res = self.conv(x)  # X_res: [B, C', H', W']
        attn = self._attention(x, res.shape[-2:])
        return attn * res + attn
