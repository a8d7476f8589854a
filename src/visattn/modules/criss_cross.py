"""Criss-cross attention.

Huang, Wang, Huang, Huang, Wei, Liu. "CCNet: Criss-Cross Attention for Semantic Segmentation", ICCV 2019.
https://arxiv.org/abs/1811.11721 -- official code: https://github.com/speedinghzl/CCNet
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Softmax32, check_input
from ..ops.criss_cross import criss_cross_attention
from ..registry import register

__all__ = ["CrissCrossAttention"]


@register(
    "cc",
    title="Criss-Cross Attention (recurrent)",
    paper="CCNet: Criss-Cross Attention for Semantic Segmentation",
    authors="Huang et al.",
    venue="ICCV",
    year=2019,
    arxiv="1811.11721",
    code="https://github.com/speedinghzl/CCNet",
    family="criss-cross",
    domain="context",
    weights="matmul",
    applied="matrix product",
    role="context",
    placement="after_last_stage",
    complexity="O(HW(H+W))",
    note=(
        "Follows the official PyTorch CrissCrossAttention (speedinghzl/CCNet, cc_attention/functions.py): Q, K 1x1 "
        "convs to C/8 and V at C, all with biases; the self position is masked with -inf in the column branch so "
        "each position attends to H + W - 1 keys (paper: the criss-cross set of H + W - 1 positions); one softmax "
        "over column and row jointly; out = gamma * aggregated V + x with gamma = 0 at init. Recurrence (RCCA, R = 2 "
        "in the paper) applies the same module, shared weights, R times. The official head's conv before / after "
        "RCCA and its concatenation with the input are not part of the module. The official INF mask built with "
        ".cuda() is replaced by a boolean mask on the input's device; energies are soft-maxed in float32. At C < 8 "
        "the official query_conv / key_conv have out_channels = in_dim // 8 = 0 and fail in forward; visattn uses "
        "width max(1, C // 8)."
    ),
)
class CrissCrossAttention(nn.Module):
    r"""Recurrent criss-cross attention: each position attends to its row and column, R times.

    For each position :math:`u`, with :math:`Q, K \in R^{C' \times H \times W}` (:math:`C' = C / 8`) and
    :math:`V \in R^{C \times H \times W}` from 1x1 convs of the input :math:`H`:

    .. math::
        d_{i,u} = Q_u \Omega_{i,u}^T,\quad A = \mathrm{softmax}_i(D),\quad
        H'_u = \gamma \sum_{i \in |\Phi_u|} A_{i,u} \Phi_{i,u} + H_u

    where :math:`\Omega_u` (keys) and :math:`\Phi_u` (values) are the :math:`H + W - 1` positions in the
    column and row of :math:`u` (:math:`u` itself once). ``recurrence`` applies the module R times with the
    same weights, so information reaches every position from every other one for R >= 2.

    Args:
        channels: input channels :math:`C`.
        reduction: :math:`C / C'`, the query / key width reduction (8 in the paper and official code).
        rd_channels: explicit query / key width :math:`C'`, overriding ``reduction``.
        recurrence: :math:`R`, the number of passes with shared weights (2 in the paper, "RCCA").

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The ``attend`` submodule is the softmax; its output, and :meth:`attention_map`'s, are the weights of
    shape :math:`(B, H + W, H, W)`: channels ``0..H-1`` over the column (the self entry is exactly 0: the
    position is counted in the row), channels ``H..H+W-1`` over the row.

    Example:
        >>> cc = CrissCrossAttention(64)
        >>> x = torch.randn(2, 64, 9, 11)
        >>> torch.equal(cc(x), x)  # gamma = 0 at init
        True
        >>> cc.attention_map(x).shape
        torch.Size([2, 20, 9, 11])
    """

    def __init__(self, channels: int, *, reduction: int = 8, rd_channels: int | None = None, recurrence: int = 2):
        super().__init__()
        if recurrence < 1:
            raise ValueError(f"CrissCrossAttention: recurrence must be >= 1, got {recurrence!r}")
        rd = int(rd_channels) if rd_channels is not None else max(1, channels // reduction)
        if rd < 1:
            raise ValueError(f"CrissCrossAttention: the query / key width must be >= 1, got {rd}")
        self.channels = channels
        self.recurrence = recurrence
        self.query_conv = nn.Conv2d(channels, rd, 1)
        self.key_conv = nn.Conv2d(channels, rd, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.attend = Softmax32(-1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The three 1x1 convs as one GEMM on the channels-last view: no NCHW <-> NHWC copies of q, k, v.
        weight = torch.cat([m.weight.flatten(1) for m in (self.query_conv, self.key_conv, self.value_conv)])
        bias = torch.cat([self.query_conv.bias, self.key_conv.bias, self.value_conv.bias])
        qkv = F.linear(x.permute(0, 2, 3, 1), weight, bias)  # [B, H, W, 2C' + C]
        rd = self.query_conv.out_channels
        q, k, v = qkv.split((rd, rd, self.channels), dim=-1)  # split's backward is one concatenation
        return q, k, v

    def _step(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._qkv(x)
        out, attn = criss_cross_attention(q, k, v, self.attend)  # [B, H, W, C], [B, H, W, H + W]
        return x + self.gamma * out.permute(0, 3, 1, 2), attn

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Weights of the first pass, :math:`(B, H + W, H, W)` (column part first, self entry 0)."""
        check_input(self, x, self.channels)
        return self._step(x)[1].permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        for _ in range(self.recurrence):
            x = self._step(x)[0]
        return x
