"""Bottleneck Attention Module.

Park, Woo, Lee, Kweon. "BAM: Bottleneck Attention Module", BMVC 2018.
https://arxiv.org/abs/1807.06514 -- official code: https://github.com/Jongchan/attention-module
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import LayerType, check_input, create_act, reduced_channels
from ..registry import register

__all__ = ["BAM"]

_FUSIONS = ("sum", "product")


def _batch_norm(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)``, except in training with one value per channel (batch 1 and a 1 x 1 map, or a batch-1 vector).

    PyTorch refuses batch statistics of a single value; there the running statistics are used (as in eval)
    and left unchanged, instead of an error.
    """
    if bn.training and x.numel() == x.shape[1]:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)


def _run(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for layer in seq:
        x = _batch_norm(layer, x) if isinstance(layer, _BatchNorm) else layer(x)
    return x


class _ChannelBranch(nn.Module):
    """M_c: GAP -> FC C -> C/r -> BN -> ReLU -> FC C/r -> C, as the official ChannelGate."""

    def __init__(self, channels: int, rd: int, act_layer: LayerType):
        super().__init__()
        # Names as the official ChannelGate.gate_c (num_layers=1), so its state dicts load.
        self.gate_c = nn.Sequential(OrderedDict(
            gate_c_fc_0=nn.Linear(channels, rd),
            gate_c_bn_1=nn.BatchNorm1d(rd),
            gate_c_relu_1=create_act(act_layer),
            gate_c_fc_final=nn.Linear(rd, channels),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        return _run(self.gate_c, x.mean((2, 3))).view(b, c, 1, 1)  # [B, C] -> [B, C, 1, 1]


class _SpatialBranch(nn.Module):
    """M_s: 1x1 reduce + BN + ReLU, dilated 3x3 convs + BN + ReLU, 1x1 to one channel, as the official SpatialGate."""

    def __init__(self, channels: int, rd: int, dilation: int, num_dilated: int, act_layer: LayerType):
        super().__init__()
        layers = OrderedDict(
            gate_s_conv_reduce0=nn.Conv2d(channels, rd, 1),
            gate_s_bn_reduce0=nn.BatchNorm2d(rd),
            gate_s_relu_reduce0=create_act(act_layer),
        )
        for i in range(num_dilated):
            layers[f"gate_s_conv_di_{i}"] = nn.Conv2d(rd, rd, 3, padding=dilation, dilation=dilation)
            layers[f"gate_s_bn_di_{i}"] = nn.BatchNorm2d(rd)
            layers[f"gate_s_relu_di_{i}"] = create_act(act_layer)
        layers["gate_s_conv_final"] = nn.Conv2d(rd, 1, 1)
        self.gate_s = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.gate_s, x)  # [B, 1, H, W]


@register(
    "bam",
    title="Bottleneck Attention Module",
    paper="BAM: Bottleneck Attention Module",
    authors="Park et al.",
    venue="BMVC",
    year=2018,
    arxiv="1807.06514",
    code="https://github.com/Jongchan/attention-module",
    family="bam",
    domain="channel+spatial",
    weights="conv",
    applied="scale",
    role="plugin",
    placement="stage_end",
    complexity="O(HW)",
    note=(
        "Combination: the paper's out = x + x * sigmoid(Mc + Ms) is the default (fusion='sum'); the official code "
        "(Jongchan/attention-module, MODELS/bam.py) computes x * (1 + sigmoid(Mc * Ms)) (fusion='product'). Branches "
        "follow the official code, whose BN sits on the hidden layers (channel: FC, BN1d, ReLU, FC; spatial: 1x1 + "
        "BN + ReLU, two 3x3 dilation-4 convs + BN + ReLU, plain 1x1 to one channel) where the paper's equations "
        "write one BN on each branch's output; r = 16, dilation 4 (padding 4 keeps any H, W). The official "
        "ChannelGate pools with F.avg_pool2d(x, x.size(2), stride=x.size(2)), an H x H window with stride H, then "
        "flattens: for H <= W < 2H it averages only the left H x H window (columns 0..H-1); for W < H the pool "
        "fails, for W >= 2H the flattened C * (W // H) features do not fit the first Linear. visattn pools over all "
        "of H x W (the paper's global average pool); both agree when H = W. In training, a BN that sees one value "
        "per channel (batch 1 for the channel BN) uses its running statistics instead of raising."
    ),
)
class BAM(nn.Module):
    r"""Bottleneck attention module: channel and spatial branches combined into one 3-D attention map, residual.

    .. math::
        M_c(F) = W_1\,\mathrm{ReLU}(\mathrm{BN}(W_0\,\mathrm{AvgPool}(F) + b_0)) + b_1 \in R^{C \times 1 \times 1}

        M_s(F) = f_3^{1\times1}(\mathrm{BRd}(f_2^{3\times3}(\mathrm{BRd}(f_1^{3\times3}(\mathrm{BRd}(
        f_0^{1\times1}(F))))))) \in R^{1 \times H \times W}

        M(F) = \sigma(M_c(F) + M_s(F)),\qquad F' = F + F \otimes M(F)

    where BRd is BN + ReLU and :math:`f_1, f_2` are 3x3 convs with dilation :math:`d` on :math:`C/r`
    channels (paper eqs. 1-4, with the BNs placed as in the official code). ``fusion="product"`` is the
    official code's :math:`M(F) = \sigma(M_c(F) \cdot M_s(F))`; both add the residual,
    :math:`F' = F \otimes (1 + M(F))`.

    Args:
        channels: input channels :math:`C`.
        reduction: reduction ratio :math:`r` of both branches (paper default 16); the hidden width is
            ``floor(C / r)``, at least 1.
        rd_channels: explicit hidden width, overriding ``reduction``.
        dilation: dilation :math:`d` of the 3x3 convs (paper default 4); padding :math:`d` keeps H, W.
        num_dilated: number of dilated 3x3 convs (paper: 2).
        fusion: ``"sum"`` (paper, :math:`\sigma(M_c + M_s)`) or ``"product"`` (official code,
            :math:`\sigma(M_c M_s)`).
        act_layer: the hidden activation (``"relu"``).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The attention map :math:`M(F)`, shape :math:`(B, C, H, W)`, is the ``gate`` submodule's (sigmoid) output
    and is returned by :meth:`attention_map`. In training, a BN that would see a single value per channel
    (the channel branch's BN at batch 1; every BN at batch 1 with a 1 x 1 map) normalises with its running
    statistics and does not update them, where PyTorch would raise.

    Example:
        >>> bam = BAM(64)
        >>> sum(p.numel() for p in bam.parameters())  # channel 588 + spatial 585
        1173
        >>> bam(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
    """

    def __init__(self, channels: int, *, reduction: float = 16, rd_channels: int | None = None, dilation: int = 4,
                 num_dilated: int = 2, fusion: str = "sum", act_layer: LayerType = "relu"):
        super().__init__()
        if fusion not in _FUSIONS:
            raise ValueError(f"BAM: fusion must be one of {_FUSIONS}, got {fusion!r}")
        if not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f"BAM: dilation must be a positive int, got {dilation!r}")
        if not isinstance(num_dilated, int) or num_dilated < 0:
            raise ValueError(f"BAM: num_dilated must be a non-negative int, got {num_dilated!r}")
        self.channels = channels
        self.fusion = fusion
        rd = reduced_channels(channels, reduction, rd_channels)
        self.channel_att = _ChannelBranch(channels, rd, act_layer)
        self.spatial_att = _SpatialBranch(channels, rd, dilation, num_dilated, act_layer)
        self.gate = nn.Sigmoid()

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map :math:`M(F)`, shape :math:`(B, C, H, W)`."""
        check_input(self, x, self.channels)
        m_c, m_s = self.channel_att(x), self.spatial_att(x)  # [B, C, 1, 1], [B, 1, H, W]
        return self.gate(m_c + m_s if self.fusion == "sum" else m_c * m_s)  # broadcast to [B, C, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.attention_map(x))
