"""The attention module of the Residual Attention Network.

Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang. "Residual Attention Network for Image Classification", CVPR 2017.
https://arxiv.org/abs/1704.06904 -- official code (Caffe): https://github.com/fwang91/residual-attention-network
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import LayerType, check_input, check_size, create_act, create_norm
from ..registry import register

__all__ = ["ResidualAttention"]

_UPSAMPLE_MODES = ("bilinear", "nearest")


class _PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual unit (He et al. 2016), ``channels`` in and out.

    ``x + conv1x1(act(bn(conv3x3(act(bn(conv1x1(act(bn(x)))))))))`` with width ``channels // reduction``.
    """

    def __init__(self, channels: int, reduction: int, norm_layer: LayerType, act_layer: LayerType):
        super().__init__()
        mid = max(1, channels // reduction)
        self.bn1 = create_norm(norm_layer, channels)
        self.act1 = create_act(act_layer)
        self.conv1 = nn.Conv2d(channels, mid, 1, bias=False)
        self.bn2 = create_norm(norm_layer, mid)
        self.act2 = create_act(act_layer)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn3 = create_norm(norm_layer, mid)
        self.act3 = create_act(act_layer)
        self.conv3 = nn.Conv2d(mid, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(out)))
        out = self.conv3(self.act3(self.bn3(out)))
        return x + out


@register(
    "residual_attention",
    title="Attention module (Residual Attention Network)",
    paper="Residual Attention Network for Image Classification",
    authors="Wang et al.",
    venue="CVPR",
    year=2017,
    arxiv="1704.06904",
    code="https://github.com/fwang91/residual-attention-network",
    family="residual-attention",
    domain="channel+spatial",
    weights="conv",
    applied="scale",
    role="plugin",
    placement="stage_end",
    complexity="O(HW)",
    note=(
        "Follows the paper (Sec. 3, Fig. 2-3): p = 1 pre / post units, trunk of t = 2 units, soft mask of `depth` "
        "(max-pool 3x3/2 + r units) steps with a residual-unit skip between symmetric levels, 2r units at the lowest "
        "level, bilinear up-sampling (align_corners=True) to each skip's exact size, BN-ReLU-conv1x1 twice, sigmoid; "
        "out = (1 + M) * T. Units are pre-activation bottlenecks (width C/4, no biases). The official Caffe models "
        "(fwang91/residual-attention-network, imagenet_model/Attention-56-deploy.prototxt and "
        "Attention-92-deploy.prototxt) have the same structure: in every module the first unit, named trunk/res1, is "
        "the pre-unit; its output feeds trunk/res2 (then res3, the t = 2 trunk units) and "
        "mask/down_sample/pool1_3x3_s2, the start of the mask branch, as in the paper's Fig. 2; fusion = trunk * "
        "mask + trunk, then the post-unit. Their Interp layers take each skip's size from a second bottom blob. The "
        "difference is in the pools (kernel 3, stride 2, no padding): Caffe's PoolingLayer rounds the output size up "
        "(BVLC/caffe src/caffe/layers/pooling_layer.cpp), here padding 1 rounds down: the same output sizes for even "
        "H, W, windows shifted by one pixel. align_corners=True follows the Caffe Interp of DeepLab / PSPNet "
        "(hszhao/PSPNet src/caffe/util/interp.cpp: ratio (in - 1) / (out - 1)); the official models' Caffe fork (the "
        "buptwangfei/caffe submodule) was not available to check. H, W must exceed 2**depth so that the lowest mask "
        "level is at least 2 x 2 (min_size = 2**depth + 1). Default depth = 1 is the stage-3 module of Attention-56 "
        "(stages 1 and 2 use 3 and 2)."
    ),
)
class ResidualAttention(nn.Module):
    r"""Attention module of the Residual Attention Network: a trunk re-weighted by a bottom-up top-down mask.

    .. math::
        T = f_t(u),\quad M = \sigma(W_2\,\delta(\mathrm{BN}(W_1\,\delta(\mathrm{BN}(h_{up}(h_{down}(u))))))),
        \quad H = (1 + M) \odot T

    with :math:`u` the input after ``pre_units`` residual units, :math:`f_t` ``trunk_units`` residual units,
    :math:`h_{down}` ``depth`` steps of max pooling (3x3, stride 2, padding 1) followed by ``mask_units``
    residual units, :math:`h_{up}` the symmetric steps of ``mask_units`` residual units and up-sampling to the
    size of the level above, where the level's skip connection (a residual unit on the bottom-up feature)
    is added; :math:`W_1, W_2` are 1x1 convolutions, :math:`\sigma` the sigmoid (the mixed attention of the
    paper, one weight per channel and position). ``post_units`` residual units follow :math:`H`.
    :math:`(1 + M)` is the paper's attention residual learning (eq. 3).

    Args:
        channels: input channels :math:`C` (units keep :math:`C`; bottlenecks have :math:`C / 4`).
        depth: number of max-pool down-samplings in the soft mask branch (Attention-56: 3, 2, 1 in stages
            1, 2, 3; default 1). H and W must exceed ``2 ** depth`` (``min_size = 2 ** depth + 1``) so that
            the lowest level of the mask is at least 2 x 2.
        pre_units: :math:`p`, residual units before splitting into trunk and mask (paper: 1).
        trunk_units: :math:`t`, residual units of the trunk branch (paper: 2).
        mask_units: :math:`r`, residual units between adjacent pooling layers of the mask (paper: 1).
        reduction: bottleneck reduction of the residual units (4, as the official model).
        upsample_mode: ``"bilinear"`` (paper; ``align_corners=True`` as the official Caffe Interp) or
            ``"nearest"``.
        norm_layer: norm of the pre-activation units and the mask head (BatchNorm).
        act_layer: activation :math:`\delta` (ReLU).

    Shape:
        - Input: :math:`(B, C, H, W)` with :math:`H, W > 2^{depth}`
        - Output: :math:`(B, C, H, W)`

    :meth:`attention_map` returns the soft mask :math:`M`, shape :math:`(B, C, H, W)`; it is also the output
    of the ``gate`` submodule.

    Example:
        >>> ra = ResidualAttention(64)
        >>> ra.min_size
        3
        >>> sum(p.numel() for p in ra.parameters())
        35712
        >>> ResidualAttention(64, depth=3)(torch.randn(2, 64, 9, 13)).shape
        torch.Size([2, 64, 9, 13])
    """

    def __init__(self, channels: int, *, depth: int = 1, pre_units: int = 1, trunk_units: int = 2,
                 mask_units: int = 1, reduction: int = 4, upsample_mode: str = "bilinear",
                 norm_layer: LayerType = "batch", act_layer: LayerType = "relu"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"ResidualAttention: depth must be >= 1, got {depth}")
        if min(pre_units, trunk_units, mask_units) < 0:
            raise ValueError(f"ResidualAttention: unit counts must be >= 0, got pre_units={pre_units}, "
                             f"trunk_units={trunk_units}, mask_units={mask_units}")
        if upsample_mode not in _UPSAMPLE_MODES:
            raise ValueError(
                f"ResidualAttention: upsample_mode must be one of {_UPSAMPLE_MODES}, got {upsample_mode!r}"
            )
        self.channels = channels
        self.depth = depth
        self.upsample_mode = upsample_mode
        # The lowest mask level has ceil(H / 2**depth) rows: keep it at least 2 x 2. A 1 x 1 bottom cannot be
        # batch-normalised in training at batch 1, and torch.export specialises a pooled size that may be 1.
        self.min_size = 2**depth + 1

        def units(n: int) -> nn.Sequential:
            return nn.Sequential(*(_PreActBottleneck(channels, reduction, norm_layer, act_layer) for _ in range(n)))

        self.pre = units(pre_units)
        self.trunk = units(trunk_units)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.down = nn.ModuleList(units(mask_units) for _ in range(depth))
        self.skips = nn.ModuleList(units(1) for _ in range(depth - 1))
        self.up = nn.ModuleList(units(mask_units) for _ in range(depth))
        self.mask_head = nn.Sequential(
            create_norm(norm_layer, channels), create_act(act_layer), nn.Conv2d(channels, channels, 1, bias=False),
            create_norm(norm_layer, channels), create_act(act_layer), nn.Conv2d(channels, channels, 1, bias=False),
        )
        self.gate = nn.Sigmoid()
        self.post = units(pre_units)

    def _resize(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if self.upsample_mode == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return F.interpolate(x, size=size, mode="nearest")

    def _mask(self, u: torch.Tensor) -> torch.Tensor:
        h, sizes, skips = u, [], []
        for i, down in enumerate(self.down):  # bottom-up
            sizes.append(h.shape[-2:])
            h = down(self.pool(h))  # [B, C, ceil(H_i / 2), ceil(W_i / 2)]
            if i < self.depth - 1:
                skips.append(self.skips[i](h))
        for i in reversed(range(self.depth)):  # top-down, to each level's exact size
            h = self._resize(self.up[i](h), sizes[i])
            if i > 0:
                h = h + skips[i - 1]
        return self.gate(self.mask_head(h))

    def _check(self, x: torch.Tensor) -> None:
        check_input(self, x, self.channels)
        check_size(self, x, self.min_size,
                   f"the soft mask down-samples {self.depth} time(s) by 2 and its lowest level must be >= 2 x 2")

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""The soft mask :math:`M \in [0, 1]`, shape :math:`(B, C, H, W)`."""
        self._check(x)
        return self._mask(self.pre(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        u = self.pre(x)
        return self.post((1 + self._mask(u)) * self.trunk(u))
