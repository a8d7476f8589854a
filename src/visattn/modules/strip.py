"""Strip Pooling: the strip pooling module (SPM) and the mixed pooling module (MPM).

Hou, Zhang, Cheng, Feng. "Strip Pooling: Rethinking Spatial Pooling for Scene Parsing", CVPR 2020.
https://arxiv.org/abs/2003.13328 -- official code: https://github.com/Andrew-Qibin/SPNet
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import LayerType, check_input, create_act, create_norm, reduced_channels
from ..registry import register

__all__ = ["StripPooling", "MixedPooling"]


def _conv_norm(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], norm_layer: LayerType,
               act_layer: LayerType = None) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> norm -> optional activation, the official code's conv blocks."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=False),
        create_norm(norm_layer, out_channels),
        create_act(act_layer),
    )


@register(
    "strip",
    title="Strip Pooling Module (SPM)",
    paper="Strip Pooling: Rethinking Spatial Pooling for Scene Parsing",
    authors="Hou et al.",
    venue="CVPR",
    year=2020,
    arxiv="2003.13328",
    code="https://github.com/Andrew-Qibin/SPNet",
    family="strip-pooling",
    domain="channel+spatial",
    weights="conv",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "The SPM of Fig. 2, laid out as the official SPBlock: H x 1 and 1 x W average strip pools, "
        "3 x 1 and 1 x 3 convs at full width C (no bias) each followed by BN, broadcast back to H x W and summed, "
        "ReLU, conv 1x1 (with bias), sigmoid, y = x * map. The paper writes sigma(f(y_h + y_v)), with no ReLU; the "
        "official SPBlock has one and visattn follows it (act_layer=None gives the paper's equation). The "
        "official class named StripPooling is not this module but the MPM (visattn's 'mixed_pool')."
    ),
)
class StripPooling(nn.Module):
    r"""Strip Pooling Module (SPM): gate each position by context pooled along its row and its column.

    .. math::
        y^h_{c,i} = \frac{1}{W}\sum_{j} x_{c,i,j},\quad y^v_{c,j} = \frac{1}{H}\sum_{i} x_{c,i,j}

        y_{c,i,j} = \mathrm{BN}(k_{3\times1} * y^h)_{c,i} + \mathrm{BN}(k_{1\times3} * y^v)_{c,j}

        z = x \odot \sigma(f(\delta(y)))

    where :math:`f` is a 1x1 conv, :math:`\delta` is ``act_layer`` (ReLU, in the official code only) and
    :math:`\sigma` is ``gate_layer`` (sigmoid). The strips are expanded to :math:`H \times W` by
    broadcasting, as the paper's "expand" and the official SPBlock's ``expand`` do.

    Args:
        channels: input channels :math:`C`; the strip convs and :math:`f` keep :math:`C` channels.
        kernel_size: length of the 1-D strip convs (paper: 3).
        norm_layer: norm after each strip conv (official: BatchNorm).
        act_layer: :math:`\delta` applied to the fused strips (official: ReLU; ``None`` gives the paper's eq.).
        gate_layer: :math:`\sigma` (sigmoid).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    :meth:`attention_map` returns the gate :math:`\sigma(f(\delta(y)))`, shape :math:`(B, C, H, W)`; it is
    also the output of the ``gate`` submodule.

    Example:
        >>> spm = StripPooling(64)
        >>> sum(p.numel() for p in spm.parameters())
        28992
        >>> spm(torch.randn(2, 64, 9, 13)).shape
        torch.Size([2, 64, 9, 13])
    """

    def __init__(self, channels: int, *, kernel_size: int = 3, norm_layer: LayerType = "batch",
                 act_layer: LayerType = "relu", gate_layer: LayerType = "sigmoid"):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"StripPooling: kernel_size must be a positive odd number, got {kernel_size}")
        self.channels = channels
        self.conv_h = _conv_norm(channels, channels, (kernel_size, 1), norm_layer)  # on the H x 1 strip
        self.conv_w = _conv_norm(channels, channels, (1, kernel_size), norm_layer)  # on the 1 x W strip
        self.act = create_act(act_layer)
        self.fuse = nn.Conv2d(channels, channels, 1, bias=True)  # f
        self.gate = create_act(gate_layer)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""The gate :math:`\sigma(f(\delta(y)))`, shape :math:`(B, C, H, W)`."""
        check_input(self, x, self.channels)
        y_h = self.conv_h(x.mean(3, keepdim=True))  # [B, C, H, 1]
        y_v = self.conv_w(x.mean(2, keepdim=True))  # [B, C, 1, W]
        return self.gate(self.fuse(self.act(y_h + y_v)))  # broadcast sum: [B, C, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


@register(
    "mixed_pool",
    title="Mixed Pooling Module (MPM)",
    paper="Strip Pooling: Rethinking Spatial Pooling for Scene Parsing",
    authors="Hou et al.",
    venue="CVPR",
    year=2020,
    arxiv="2003.13328",
    code="https://github.com/Andrew-Qibin/SPNet",
    family="strip-pooling",
    domain="context",
    weights="conv",
    applied="add",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Follows the official StripPooling class (the MPM of Fig. 3): two 1x1 reductions to C/4; a short-range "
        "pyramid sub-module (3x3 conv, plus adaptive average pools to 20 x 20 and 12 x 12 with 3x3 conv + BN, "
        "bilinearly resized back with align_corners=True, summed, ReLU, 3x3 conv-BN-ReLU) and a long-range "
        "strip sub-module (1 x W and H x 1 pools, 1x3 / 3x1 conv + BN, expanded, summed, ReLU, 3x3 "
        "conv-BN-ReLU); concat, 1x1 conv + BN to C, and the official module's residual relu(x + out) "
        "(residual=True; residual=False returns the context features alone). The pool sizes (20, 12) are the "
        "official ones for 1/8-resolution features; pool_sizes makes them configurable. The strips are expanded "
        "by broadcasting, which equals the official bilinear resize of a 1-pixel strip."
    ),
)
class MixedPooling(nn.Module):
    r"""Mixed Pooling Module (MPM): pyramid pooling for short-range and strip pooling for long-range context.

    With :math:`x_1 = g_1(x)`, :math:`x_2 = g_2(x)` two 1x1 conv-BN-ReLU reductions to :math:`C_r` channels:

    .. math::
        s = h_s\big(\delta(k_0 x_1 + \mathrm{up}(k_1 P_{p_1} x_1) + \mathrm{up}(k_2 P_{p_2} x_1))\big)

        l = h_l\big(\delta(\mathrm{expand}(k_w P_{1\times W} x_2) + \mathrm{expand}(k_h P_{H\times 1} x_2))\big)

        y = \delta(x + \mathrm{BN}(W_o [s; l]))

    :math:`P_p` is adaptive average pooling to :math:`p \times p`, :math:`k_0, k_1, k_2` 3x3 conv-BN,
    :math:`k_w` / :math:`k_h` 1x3 / 3x1 conv-BN, :math:`h_s, h_l` 3x3 conv-BN-ReLU, :math:`\mathrm{up}`
    bilinear resizing to :math:`H \times W` (``align_corners=True`` as the official ``up_kwargs``),
    :math:`\delta` ReLU and :math:`W_o` a 1x1 conv. The MPM has no multiplicative gate: it adds context.

    Args:
        channels: input channels :math:`C`.
        pool_sizes: the two pyramid pool sizes :math:`(p_1, p_2)`; the official (20, 12) are meant for 1/8
            resolution feature maps (e.g. 64 x 64 on 512 crops). Pools larger than the input still work
            (adaptive pooling repeats values).
        reduction: channel reduction of the two branches, :math:`C_r = \lfloor C / r \rfloor` (official 4).
        rd_channels: explicit :math:`C_r`, overriding ``reduction``.
        norm_layer: norm after every conv (official: BatchNorm).
        align_corners: ``align_corners`` of the bilinear resize of the pyramid pools (official: True).
        residual: add the input and apply ReLU, ``relu(x + out)``, as the official module does.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    :meth:`attention_map` returns the context :math:`\mathrm{BN}(W_o [s; l])` added to :math:`x`, shape
    :math:`(B, C, H, W)`.

    Example:
        >>> mpm = MixedPooling(64)
        >>> mpm(torch.randn(2, 64, 16, 21)).shape
        torch.Size([2, 64, 16, 21])
        >>> MixedPooling(64, pool_sizes=(6, 3), residual=False)(torch.randn(1, 64, 5, 7)).shape
        torch.Size([1, 64, 5, 7])
    """

    def __init__(self, channels: int, *, pool_sizes: Sequence[int] = (20, 12), reduction: float = 4,
                 rd_channels: int | None = None, norm_layer: LayerType = "batch", align_corners: bool = True,
                 residual: bool = True):
        super().__init__()
        pool_sizes = tuple(int(p) for p in pool_sizes)
        if len(pool_sizes) != 2 or min(pool_sizes) < 1:
            raise ValueError(f"MixedPooling: pool_sizes must be two positive sizes, got {pool_sizes}")
        self.channels = channels
        self.pool_sizes = pool_sizes
        self.align_corners = align_corners
        self.residual = residual
        rd = reduced_channels(channels, reduction, rd_channels)
        self.reduce_short = _conv_norm(channels, rd, 1, norm_layer, "relu")  # g_1 (official conv1_1)
        self.reduce_long = _conv_norm(channels, rd, 1, norm_layer, "relu")  # g_2 (official conv1_2)
        # short-range (pyramid) sub-module
        self.local = _conv_norm(rd, rd, 3, norm_layer)  # k_0 (conv2_0)
        self.pyramid = nn.ModuleList([_conv_norm(rd, rd, 3, norm_layer) for _ in pool_sizes])  # k_1, k_2
        self.fuse_short = _conv_norm(rd, rd, 3, norm_layer, "relu")  # h_s (conv2_5)
        # long-range (strip) sub-module
        self.strip_w = _conv_norm(rd, rd, (1, 3), norm_layer)  # k_w on the 1 x W strip (conv2_3)
        self.strip_h = _conv_norm(rd, rd, (3, 1), norm_layer)  # k_h on the H x 1 strip (conv2_4)
        self.fuse_long = _conv_norm(rd, rd, 3, norm_layer, "relu")  # h_l (conv2_6)
        self.project = _conv_norm(2 * rd, channels, 1, norm_layer)  # W_o + BN (conv3)
        self.gate = nn.Identity()  # the added context as its own step, so hooks can record it

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""The context added to ``x``, :math:`\mathrm{BN}(W_o [s; l])`, shape :math:`(B, C, H, W)`."""
        check_input(self, x, self.channels)
        size = x.shape[-2:]
        x1 = self.reduce_short(x)  # [B, Cr, H, W]
        x2 = self.reduce_long(x)
        short = self.local(x1)
        for pool_size, conv in zip(self.pool_sizes, self.pyramid, strict=True):
            pooled = conv(F.adaptive_avg_pool2d(x1, pool_size))  # [B, Cr, p, p]
            short = short + F.interpolate(pooled, size=size, mode="bilinear", align_corners=self.align_corners)
        short = self.fuse_short(torch.relu(short))
        strip_w = self.strip_w(x2.mean(2, keepdim=True))  # [B, Cr, 1, W]
        strip_h = self.strip_h(x2.mean(3, keepdim=True))  # [B, Cr, H, 1]
        long = self.fuse_long(torch.relu(strip_w + strip_h))  # broadcast: [B, Cr, H, W]
        return self.gate(self.project(torch.cat([short, long], dim=1)))  # [B, C, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attention_map(x)
        return torch.relu(x + out) if self.residual else out
