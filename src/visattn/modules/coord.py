"""Coordinate Attention.

Hou, Zhou, Feng. "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021.
https://arxiv.org/abs/2103.02907 -- official code: https://github.com/Andrew-Qibin/CoordAttention
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerType, check_input, create_act, create_norm, init_gate_bias
from ..registry import register

__all__ = ["CoordAttention"]


@register(
    "coord",
    title="Coordinate Attention",
    paper="Coordinate Attention for Efficient Mobile Network Design",
    authors="Hou et al.",
    venue="CVPR",
    year=2021,
    arxiv="2103.02907",
    code="https://github.com/Andrew-Qibin/CoordAttention",
    family="coord",
    domain="channel+spatial",
    weights="pool+mlp",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Paper and official code agree; visattn follows the official CoordAtt where the paper leaves details "
        "open: mip = max(8, C // 32) with no rounding, biases in all three 1x1 convs, BatchNorm, "
        "h_swish = x * relu6(x + 3) / 6 as the non-linearity delta, y = x * a_h * a_w with no residual. "
        "timm's CoordAttn equals it with rd_channels=mip, bias=True, act_layer=nn.Hardswish (its defaults "
        "differ: width C * 1/16 * 2/3 rounded to 8, no biases)."
    ),
)
class CoordAttention(nn.Module):
    r"""Coordinate attention: channel attention factorised into a height and a width direction.

    Coordinate information embedding (eqs. 4, 5) pools each channel along one direction:

    .. math::
        z^h_c(h) = \frac{1}{W}\sum_{i} x_c(h, i),\qquad z^w_c(w) = \frac{1}{H}\sum_{j} x_c(j, w)

    Coordinate attention generation (eqs. 6-9): a shared 1x1 conv :math:`F_1` on the concatenation,

    .. math::
        f = \delta(\mathrm{BN}(F_1([z^h, z^w]))),\quad [f^h, f^w] = \mathrm{split}(f),\quad
        g^h = \sigma(F_h(f^h)),\quad g^w = \sigma(F_w(f^w)),\quad y_c(i, j) = x_c(i, j)\, g^h_c(i)\, g^w_c(j)

    Args:
        channels: input channels :math:`C`.
        reduction: reduction ratio :math:`r` (paper and official code: 32); the middle width is
            ``max(min_channels, C // r)``.
        rd_channels: explicit middle width, overriding ``reduction`` and ``min_channels``.
        min_channels: lower bound of the middle width (official code: 8).
        act_layer: :math:`\delta`, a name or class (official: ``"h_swish"``, :math:`x\,\mathrm{ReLU6}(x+3)/6`).
        norm_layer: the norm after :math:`F_1` (``"batch"``), or None.
        gate_layer: :math:`\sigma`, a name or class (``"sigmoid"``).
        gate_init: start the product :math:`g^h g^w` near this value (in (0, 1)) by setting the biases of
            ``conv_h`` and ``conv_w``; ``None`` (default, the official init) starts it near 1/4. Not in the
            paper: an option against the slow start of gated blocks trained from scratch.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The ``gate`` submodule is called twice per forward, first giving :math:`g^h` of shape
    :math:`(B, C, H, 1)`, then :math:`g^w` of shape :math:`(B, C, 1, W)`; :meth:`attention_map` returns their
    product.

    Example:
        >>> ca = CoordAttention(64)
        >>> ca.conv1.out_channels  # max(8, 64 // 32)
        8
        >>> sum(p.numel() for p in ca.parameters())  # (64 * 8 + 8) + 2 * 8 + 2 * (8 * 64 + 64)
        1688
        >>> ca(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
    """

    def __init__(self, channels: int, *, reduction: float = 32, rd_channels: int | None = None,
                 min_channels: int = 8, act_layer: LayerType = "h_swish", norm_layer: LayerType = "batch",
                 gate_layer: LayerType = "sigmoid", gate_init: float | None = None):
        super().__init__()
        if rd_channels is None:
            if not reduction > 0:
                raise ValueError(f"CoordAttention: reduction must be > 0, got {reduction!r}")
            rd_channels = max(int(min_channels), int(channels // reduction))
        if int(rd_channels) < 1:
            raise ValueError(f"CoordAttention: the middle width must be >= 1, got {rd_channels!r}")
        rd_channels = int(rd_channels)
        self.channels = channels
        # Names as the official CoordAtt and timm's CoordAttn, so their state dicts load as they are.
        self.conv1 = nn.Conv2d(channels, rd_channels, 1)
        self.bn1 = create_norm(norm_layer, rd_channels)
        self.act = create_act(act_layer)
        self.conv_h = nn.Conv2d(rd_channels, channels, 1)
        self.conv_w = nn.Conv2d(rd_channels, channels, 1)
        self.gate = create_act(gate_layer)
        if gate_init is not None:
            for conv in (self.conv_h, self.conv_w):
                init_gate_bias(self, conv.bias, self.gate, gate_init, factors=2)

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_input(self, x, self.channels)
        h, w = x.shape[-2:]
        z_h = x.mean(3, keepdim=True)  # [B, C, H, 1]
        z_w = x.mean(2, keepdim=True).transpose(2, 3)  # [B, C, 1, W] -> [B, C, W, 1]
        f = self.act(self.bn1(self.conv1(torch.cat((z_h, z_w), dim=2))))  # [B, mip, H + W, 1]
        f_h, f_w = torch.split(f, [h, w], dim=2)  # [B, mip, H, 1], [B, mip, W, 1]
        g_h = self.gate(self.conv_h(f_h))  # [B, C, H, 1]
        g_w = self.gate(self.conv_w(f_w.transpose(2, 3)))  # [B, C, 1, W]
        return g_h, g_w

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The product :math:`g^h g^w`, shape :math:`(B, C, H, W)`, by which the module scales x."""
        g_h, g_w = self._gates(x)
        return g_h * g_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g_h, g_w = self._gates(x)
        return x * g_w * g_h
