"""Selective Kernel convolution.

Li, Wang, Hu, Yang. "Selective Kernel Networks", CVPR 2019.
https://arxiv.org/abs/1903.06586 -- official code (Caffe): https://github.com/implus/SKNet
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import LayerType, check_input, create_act, create_norm
from ..registry import register

__all__ = ["SelectiveKernelConv"]


class _FCBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d for the ``(B, d, 1, 1)`` descriptor ``z``.

    In training mode a batch of one sample has a single value per channel, which batch statistics cannot
    normalise (PyTorch raises). Such a batch is normalised with the running statistics instead (and does not
    update them); any other batch is ordinary BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _conv_norm_act(in_channels: int, out_channels: int, *, stride: int, dilation: int, groups: int,
                   norm_layer: LayerType, act_layer: LayerType) -> nn.Sequential:
    """3x3 conv (no bias, padding = dilation) -> norm -> act, with timm's child names ``conv``, ``bn``."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, groups=groups,
                       bias=False),
        bn=create_norm(norm_layer, out_channels),
        act=create_act(act_layer),
    ))


@register(
    "sk",
    title="Selective Kernel convolution (SK)",
    paper="Selective Kernel Networks",
    authors="Li et al.",
    venue="CVPR",
    year=2019,
    arxiv="1903.06586",
    code="https://github.com/implus/SKNet",
    family="selective-kernel",
    domain="channel",
    weights="pool+mlp",
    applied="scale",
    role="conv",
    placement="replaces_conv3x3_norm",
    complexity="O(HW)",
    note=(
        "Paper and official code (Caffe prototxt) agree and visattn follows both: M branches of grouped 3x3 convs "
        "(G = 32) with dilation 1, 2, ... (the 5x5 branch is a dilated 3x3, padding = dilation), each + BN + ReLU, "
        "no conv biases; fuse U = sum, s = GAP(U), z = ReLU(BN(W s)) with d = max(C / r, L) (r = 16, L = 32, no "
        "rounding) and no FC biases; per-branch FCs (one 1x1 conv to M * C), softmax across branches, "
        "V = sum_m a_m U_m. Stride is applied in every branch. timm's SelectiveKernel equals it with "
        "split_input=False, keep_3x3=True, groups=32, rd_channels=d (its defaults split the input across the "
        "branches and round d to a multiple of 8 without the L floor). In training mode a batch of one sample "
        "normalises z with BN's running statistics (batch statistics of one value are undefined)."
    ),
)
class SelectiveKernelConv(nn.Module):
    r"""Selective Kernel convolution: branches with different receptive fields, mixed by a softmax attention.

    Split (M branches), fuse and select (Sec. 3.1, eqs. 1-6):

    .. math::
        U_m = \delta(\mathrm{BN}(K_m * X)),\quad U = \sum_m U_m,\quad s_c = \frac{1}{HW}\sum_{i,j} U_c(i, j),

        z = \delta(\mathrm{BN}(W s)),\quad a_{m,c} = \frac{e^{A_{m,c} z}}{\sum_{k} e^{A_{k,c} z}},\quad
        V_c = \sum_m a_{m,c}\, U_{m,c}

    where :math:`K_m` is a grouped 3x3 conv with dilation :math:`m + 1` (kernel :math:`2m + 3` seen as a
    dilated 3x3), :math:`W \in R^{d \times C'}`, :math:`A_m \in R^{C' \times d}` and :math:`\delta` is ReLU.

    Args:
        channels: input channels :math:`C`.
        out_channels: output channels :math:`C'` (default: ``channels``).
        stride: stride of every branch conv.
        num_branches: number of branches :math:`M` (paper: 2).
        groups: conv groups :math:`G` of every branch (paper: 32).
        reduction: reduction ratio :math:`r` (paper: 16).
        min_dim: lower bound :math:`L` of the width :math:`d = \max(C'/r, L)` (paper: 32).
        rd_channels: explicit width :math:`d`, overriding ``reduction`` and ``min_dim``.
        norm_layer: norm after each branch conv and after :math:`W` (``"batch"``).
        act_layer: :math:`\delta` (``"relu"``).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C', \lceil H / stride \rceil, \lceil W / stride \rceil)`

    The ``gate`` submodule (softmax across branches) outputs the branch weights :math:`a` of shape
    :math:`(B, M, C', 1, 1)`, which :meth:`attention_map` returns.

    Example:
        >>> sk = SelectiveKernelConv(128)
        >>> sk.fc_reduce.out_channels  # d = max(128 // 16, 32)
        32
        >>> sum(p.numel() for p in sk.parameters())  # 2 * (128 * 4 * 9 + 256) + 128 * 32 + 64 + 32 * 256
        22080
        >>> sk(torch.randn(2, 128, 7, 9)).shape
        torch.Size([2, 128, 7, 9])
        >>> SelectiveKernelConv(64, out_channels=128, stride=2)(torch.randn(1, 64, 7, 9)).shape
        torch.Size([1, 128, 4, 5])
    """

    def __init__(self, channels: int, *, out_channels: int | None = None, stride: int = 1, num_branches: int = 2,
                 groups: int = 32, reduction: float = 16, min_dim: int = 32, rd_channels: int | None = None,
                 norm_layer: LayerType = "batch", act_layer: LayerType = "relu"):
        super().__init__()
        out_channels = channels if out_channels is None else int(out_channels)
        name = type(self).__name__
        if num_branches < 1:
            raise ValueError(f"{name}: num_branches must be >= 1, got {num_branches!r}")
        if stride < 1:
            raise ValueError(f"{name}: stride must be >= 1, got {stride!r}")
        if groups < 1 or channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: channels ({channels}) and out_channels ({out_channels}) must be divisible by "
                f"groups ({groups})"
            )
        if rd_channels is None:
            if not reduction > 0:
                raise ValueError(f"{name}: reduction must be > 0, got {reduction!r}")
            rd_channels = max(int(out_channels // reduction), int(min_dim))
        if int(rd_channels) < 1:
            raise ValueError(f"{name}: the width d must be >= 1, got {rd_channels!r}")
        rd_channels = int(rd_channels)
        self.channels = channels
        self.out_channels = out_channels
        self.num_branches = num_branches
        # Names as timm's SelectiveKernel (paths.*, attn.* without the "attn." prefix).
        self.paths = nn.ModuleList(
            _conv_norm_act(channels, out_channels, stride=stride, dilation=m + 1, groups=groups,
                           norm_layer=norm_layer, act_layer=act_layer)
            for m in range(num_branches)
        )
        self.fc_reduce = nn.Conv2d(out_channels, rd_channels, 1, bias=False)  # W
        bn = create_norm(norm_layer, rd_channels)
        self.bn = _FCBatchNorm(rd_channels) if type(bn) is nn.BatchNorm2d else bn
        self.act = create_act(act_layer)
        self.fc_select = nn.Conv2d(rd_channels, num_branches * out_channels, 1, bias=False)  # [A_1; ...; A_M]
        self.gate = nn.Softmax(dim=1)

    def _branches(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        return torch.stack([path(x) for path in self.paths], dim=1)  # [B, M, C', H', W']

    def _select(self, u: torch.Tensor) -> torch.Tensor:
        s = u.sum(1).mean((2, 3), keepdim=True)  # [B, C', 1, 1]
        z = self.act(self.bn(self.fc_reduce(s)))  # [B, d, 1, 1]
        logits = self.fc_select(z)  # [B, M * C', 1, 1]
        return self.gate(logits.view(logits.shape[0], self.num_branches, self.out_channels, 1, 1))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Branch weights :math:`a`, shape :math:`(B, M, C', 1, 1)`, summing to 1 over the branches."""
        return self._select(self._branches(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self._branches(x)
        return (u * self._select(u)).sum(1)
