"""Self-Calibrated convolution (SCNet).

Liu, Hou, Cheng, Wang, Feng. "Improving Convolutional Networks with Self-Calibrated Convolutions", CVPR 2020.
https://openaccess.thecvf.com/content_CVPR_2020/html/Liu_Improving_Convolutional_Networks_With_Self-Calibrated_Convolutions_CVPR_2020_paper.html
-- official code: https://github.com/MCG-NKU/SCNet
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import CeilAvgPool2d, LayerType, check_input, check_size, create_act, create_norm
from ..registry import register

__all__ = ["SelfCalibratedConv"]


def _conv_norm(in_channels: int, out_channels: int, *, stride: int, groups: int, norm_layer: LayerType) -> list:
    """3x3 conv (padding 1, no bias) and its norm, as the official k1..k4."""
    return [nn.Conv2d(in_channels, out_channels, 3, stride, 1, groups=groups, bias=False),
            create_norm(norm_layer, out_channels)]


class _SelfCalibration(nn.Module):
    """The official ``SCConv`` (k2, k3, k4): ``k4(k3(x) * sigmoid(x + up(k2(avgpool_r(x)))))``."""

    def __init__(self, channels: int, out_channels: int, *, stride: int, pooling_r: int, groups: int,
                 norm_layer: LayerType, ceil_mode: bool):
        super().__init__()
        pool = CeilAvgPool2d(pooling_r) if ceil_mode else nn.AvgPool2d(pooling_r, pooling_r)
        self.k2 = nn.Sequential(pool,
                                *_conv_norm(channels, channels, stride=1, groups=groups, norm_layer=norm_layer))
        self.k3 = nn.Sequential(*_conv_norm(channels, channels, stride=1, groups=groups, norm_layer=norm_layer))
        self.k4 = nn.Sequential(*_conv_norm(channels, out_channels, stride=stride, groups=groups,
                                            norm_layer=norm_layer))
        self.gate = nn.Sigmoid()

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """``k2(x)``: average pool, conv, norm.

        A BN that sees one value per channel (a 1 x 1 context at batch 1, in training) uses its running
        statistics, unchanged, instead of raising.
        """
        pool, conv, norm = self.k2
        t = conv(pool(x))  # [B, C/2, H/r, W/r]
        if isinstance(norm, _BatchNorm) and norm.training and t.numel() == t.shape[1]:
            return F.batch_norm(t, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
        return norm(t)

    def calibration(self, x: torch.Tensor) -> torch.Tensor:
        # nearest up-sampling to x's exact size, as the official F.interpolate(k2(x), identity.size()[2:])
        return self.gate(x + F.interpolate(self.context(x), size=x.shape[-2:], mode="nearest"))  # [B, C/2, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * self.calibration(x))


@register(
    "scconv",
    title="Self-Calibrated convolution (SC-Conv)",
    paper="Improving Convolutional Networks with Self-Calibrated Convolutions",
    authors="Liu et al.",
    venue="CVPR",
    year=2020,
    arxiv=None,
    code="https://github.com/MCG-NKU/SCNet",
    family="self-calibrated",
    domain="channel+spatial",
    weights="conv",
    applied="scale",
    role="conv",
    placement="replaces_conv3x3_norm",
    complexity="O(HW)",
    note=(
        "The middle of the official SCBottleneck (backseason/SCNet, scnet.py; avd=False): from the two ReLU'd halves "
        "after conv1_a / conv1_b to the concatenation fed to conv3. The input is split into halves X_a, X_b (the "
        "paper's split; the official code makes them with two 1x1 convs, which stay outside this module): Y_a = "
        "ReLU(k1(X_a)), Y_b = ReLU(k4(k3(X_b) * sigmoid(X_b + up(k2(avgpool_r(X_b)))))), Y = [Y_a; Y_b] (the "
        "official order). The paper's equations write each k_i as a plain convolution; the official code follows "
        "each with BN (no conv bias) and applies ReLU after k1 and k4; visattn follows the official code. Stride in "
        "k1 and k4; r = 4; nearest up-sampling to X_b's exact size as the official F.interpolate. One departure: the "
        "average pool also pools the partial windows at the bottom / right edge (ceil_mode=True), where the official "
        "nn.AvgPool2d(kernel_size=r, stride=r) drops them (at 7 x 7, ResNet's last stage, it pools only the top-left "
        "4 x 4); the two agree when r divides H and W, and ceil_mode=False reproduces the official code everywhere, "
        "down to H, W = r (a 1 x 1 context, as the official code has at 4 <= H < 8, e.g. SCNet-50's 7 x 7 last "
        "stage). With ceil_mode=True the pooled context must be at least 2 x 2, so H, W >= r + 1. In training, a 1 x "
        "1 context at batch 1 gives its BN one value per channel: the running statistics are used there (PyTorch "
        "would raise)."
    ),
)
class SelfCalibratedConv(nn.Module):
    r"""Self-calibrated convolution: half the channels see a down-sampled context that gates their conv.

    The input is split into halves :math:`X_a, X_b` with :math:`C/2` channels each; :math:`X_b` is
    self-calibrated (Sec. 3.1 of the paper, which calls it :math:`X_1`):

    .. math::
        Y_a = \delta(\mathcal{F}_1(X_a)),

        T = \mathrm{AvgPool}_r(X_b),\quad X' = \mathrm{Up}(\mathcal{F}_2(T)),\quad
        Y' = \mathcal{F}_3(X_b) \cdot \sigma(X_b + X'),\quad Y_b = \delta(\mathcal{F}_4(Y')),

        Y = [Y_a; Y_b]

    with each :math:`\mathcal{F}_i` (the official ``k1``..``k4``) a 3x3 conv + BN, :math:`\sigma` sigmoid,
    :math:`\delta` ReLU and Up a nearest up-sampling to :math:`X_b`'s size. ``k1`` and ``k4`` carry the stride
    and produce :math:`C'/2` channels each; ``k2``, ``k3`` keep :math:`C/2` channels (the sum with
    :math:`X_b` needs them).

    This is the part of the official ``SCBottleneck`` between its first ReLUs and ``conv3``: the official
    bottleneck makes :math:`X_a, X_b` with two 1x1 convs ``conv1_a``, ``conv1_b`` (+ BN + ReLU) and
    concatenates :math:`Y_a, Y_b` into ``conv3``; here :math:`X_a, X_b` are the two halves of the input.
    Submodule names are the official ones (``k1``, ``scconv.k2``..``scconv.k4``), so the corresponding
    entries of an official state dict load unchanged.

    Args:
        channels: input channels :math:`C` (even).
        out_channels: output channels :math:`C'` (even; default: ``channels``), half from each path.
        stride: stride of ``k1`` and ``k4``.
        pooling_r: down-sampling rate :math:`r` of the average pooling in ``k2`` (official: 4).
        groups: groups of the 3x3 convs (official: the bottleneck's cardinality, 1).
        norm_layer: the norm of each :math:`\mathcal{F}_i` (``"batch"``).
        act_layer: :math:`\delta` after ``k1`` and ``k4`` (official: ReLU), or None.
        ceil_mode: also pool the partial windows at the bottom / right edge (default); False is the official
            floor pooling, which drops them. With ``ceil_mode`` the pooled context must be at least 2 x 2, so
            :math:`H, W \ge r + 1`; with ``ceil_mode=False`` :math:`H, W \ge r` (a 1 x 1 context below
            :math:`2r`, as the official code). ``min_size`` holds the bound.

    Shape:
        - Input: :math:`(B, C, H, W)` with :math:`H, W \ge` ``min_size`` (:math:`r + 1`, or :math:`r` with
          ``ceil_mode=False``)
        - Output: :math:`(B, C', \lceil H / stride \rceil, \lceil W / stride \rceil)`

    The ``scconv.gate`` submodule outputs the calibration weights :math:`\sigma(X_b + X')`, shape
    :math:`(B, C/2, H, W)`, which :meth:`attention_map` returns.

    Example:
        >>> sc = SelfCalibratedConv(64)
        >>> sum(p.numel() for p in sc.parameters())  # 4 * (32 * 32 * 9 + 2 * 32)
        37120
        >>> sc(torch.randn(2, 64, 7, 13)).shape
        torch.Size([2, 64, 7, 13])
        >>> SelfCalibratedConv(64, out_channels=128, stride=2)(torch.randn(1, 64, 9, 8)).shape
        torch.Size([1, 128, 5, 4])
    """

    def __init__(self, channels: int, *, out_channels: int | None = None, stride: int = 1, pooling_r: int = 4,
                 groups: int = 1, norm_layer: LayerType = "batch", act_layer: LayerType = "relu",
                 ceil_mode: bool = True):
        super().__init__()
        out_channels = channels if out_channels is None else int(out_channels)
        name = type(self).__name__
        if channels % 2 or out_channels % 2:
            raise ValueError(f"{name}: channels ({channels}) and out_channels ({out_channels}) must be even")
        half, out_half = channels // 2, out_channels // 2
        if groups < 1 or half % groups or out_half % groups:
            raise ValueError(
                f"{name}: channels / 2 ({half}) and out_channels / 2 ({out_half}) must be divisible by "
                f"groups ({groups})"
            )
        if stride < 1 or pooling_r < 1:
            raise ValueError(f"{name}: stride and pooling_r must be >= 1, got {stride!r}, {pooling_r!r}")
        self.channels = channels
        self.out_channels = out_channels
        # ceil_mode: the pooled context must be at least 2 x 2 (torch.export specialises an intermediate size
        # that may be 1). Floor pooling (official) runs from H, W = r, with a 1 x 1 context below 2r.
        self.min_size = (pooling_r + 1 if ceil_mode else pooling_r) if pooling_r > 1 else 1
        self.k1 = nn.Sequential(*_conv_norm(half, out_half, stride=stride, groups=groups, norm_layer=norm_layer))
        self.scconv = _SelfCalibration(half, out_half, stride=stride, pooling_r=pooling_r, groups=groups,
                                       norm_layer=norm_layer, ceil_mode=ceil_mode)
        self.act = create_act(act_layer)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_input(self, x, self.channels)
        check_size(self, x, self.min_size, "the context pooled by pooling_r must not be empty (at least 2 x 2 "
                   "with ceil_mode)")
        x1, x2 = torch.chunk(x, 2, dim=1)  # [B, C/2, H, W] each
        return x1, x2

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""Calibration weights :math:`\sigma(X_b + X')`, shape :math:`(B, C/2, H, W)`."""
        return self.scconv.calibration(self._split(x)[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self._split(x)
        return torch.cat((self.act(self.k1(x1)), self.act(self.scconv(x2))), dim=1)  # [B, C', H', W']
