"""OCNet: object context (base-OC) and atrous spatial pyramid object context (ASP-OC).

Yuan, Huang, Wang, Chen, Wang. "OCNet: Object Context Network for Scene Parsing", 2018 (IJCV 2021).
https://arxiv.org/abs/1809.00916 -- official code: https://github.com/openseg-group/OCNet.pytorch
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvNormAct, LayerType, check_input
from ..ops.attention import softmax_attention
from ..ops.pooling import CeilMaxPool2d
from ..ops.precision import compute_dtype
from ..registry import register

__all__ = ["ObjectContext", "ASPObjectContext"]

_OCNET = dict(
    paper="OCNet: Object Context Network for Scene Parsing",
    authors="Yuan et al.",
    venue="arXiv",
    year=2018,
    arxiv="1809.00916",
    code="https://github.com/openseg-group/OCNet.pytorch",
    family="ocnet",
    domain="context",
    weights="matmul",
    applied="matrix product",
    role="context",
    placement="after_last_stage",
    complexity="O((HW)^2)",
)


class SelfAttentionContext(nn.Module):
    r"""OCNet's object context: :math:`W\big(\mathrm{softmax}(d_k^{-1/2} Q K^T) V\big)`, context only.

    Key / query: 1x1 conv + norm + activation to ``key_channels`` (one shared transform by default, as the
    official ``_SelfAttentionBlock``); value: a 1x1 conv to ``value_channels``; :math:`W`: a 1x1 conv to
    ``out_channels`` whose weight and bias start at zero (official). With ``pool > 1`` the attention runs on
    an input max-pooled by ``pool`` (ceil mode) and the context is resized back (bilinear, corners aligned).

    Args:
        channels: input channels.
        key_channels: query / key width :math:`d_k`.
        value_channels: value width.
        out_channels: output width.
        pool: down-sampling factor of the attention (1: none).
        share_query_key: one transform for queries and keys (official) or two.
        norm_layer: norm in the key / query transform.
        act_layer: activation in the key / query transform.
        memory_efficient: attention without the :math:`N \times N` map (see :mod:`visattn.ops.attention`).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, out\_channels, H, W)`

    Example:
        >>> SelfAttentionContext(64, 32, 32, 64)(torch.randn(1, 64, 5, 6)).shape
        torch.Size([1, 64, 5, 6])
    """

    def __init__(self, channels: int, key_channels: int, value_channels: int, out_channels: int, *, pool: int = 1,
                 share_query_key: bool = True, norm_layer: LayerType = "batch", act_layer: LayerType = "relu",
                 memory_efficient: bool = True):
        super().__init__()
        self.channels, self.key_channels, self.value_channels = channels, key_channels, value_channels
        self.memory_efficient = memory_efficient
        self.pool = CeilMaxPool2d(pool) if pool > 1 else nn.Identity()
        self.f_key = ConvNormAct(channels, key_channels, 1, bias=True, norm_layer=norm_layer, act_layer=act_layer)
        self.f_query = None if share_query_key else ConvNormAct(channels, key_channels, 1, bias=True,
                                                                norm_layer=norm_layer, act_layer=act_layer)
        self.f_value = nn.Conv2d(channels, value_channels, 1)
        self.W = nn.Conv2d(value_channels, out_channels, 1)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)
        self.attend = nn.Softmax(dim=-1)

    def _qkv(self, xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.f_key(xp).flatten(2).transpose(1, 2)  # [B, N, Ck]
        q = k if self.f_query is None else self.f_query(xp).flatten(2).transpose(1, 2)  # [B, N, Ck]
        v = self.f_value(xp).flatten(2).transpose(1, 2)  # [B, N, Cv]
        return q, k, v

    def _weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        cdt = compute_dtype(q)
        with torch.autocast(q.device.type, enabled=False):
            e = torch.matmul(q.to(cdt), k.to(cdt).transpose(1, 2)) * self.key_channels ** -0.5  # [B, N, N]
            return self.attend(e)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention over the (pooled) positions, shape ``(B, N, N)``."""
        q, k, _ = self._qkv(self.pool(x))
        return self._weights(q, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        xp = self.pool(x)
        q, k, v = self._qkv(xp)
        if self.memory_efficient:
            ctx = softmax_attention(q, k, v, scale=self.key_channels ** -0.5)  # [B, N, Cv]
        else:
            ctx = torch.matmul(self._weights(q, k).to(v.dtype), v)
        ctx = self.W(ctx.transpose(1, 2).reshape(b, self.value_channels, *xp.shape[-2:]))  # [B, out, h', w']
        if not isinstance(self.pool, nn.Identity):
            ctx = F.interpolate(ctx, size=(h, w), mode="bilinear", align_corners=True)
        return ctx


@register(
    "oc",
    title="Object context module (base-OC)",
    note=(
        "Follows the official BaseOC_Module: shared key/query transform (1x1 conv + BN + act) to C/2, value 1x1 "
        "conv to C/2, softmax(QK^T / sqrt(d_k)), W 1x1 conv zero-initialised, [context, x] concatenated, 1x1 conv "
        "+ BN + act to out_channels. Differences: the official InPlaceABNSync activations are leaky ReLU (0.01); "
        "here act_layer='relu' (the paper's ReLU) is the default. Official dropout after the fusion is 0.05; here "
        "0 (it belongs to the segmentation head), `dropout` restores it. Computed with SDPA (no HW x HW map)."
    ),
    **_OCNET,
)
class ObjectContext(nn.Module):
    r"""OCNet's base object context: self-attention context, concatenated with the input, fused by a 1x1 conv.

    .. math::
        c_i = W \sum_j \frac{\exp(d_k^{-1/2}\, q_i^T k_j)}{\sum_l \exp(d_k^{-1/2}\, q_i^T k_l)}\, v_j, \qquad
        y = \mathrm{act}(\mathrm{BN}(W_f [c; x]))

    with :math:`q = k = \mathrm{act}(\mathrm{BN}(W_k x))` (one shared transform, as the official code),
    :math:`v = W_v x`, and :math:`W` zero-initialised.

    Args:
        channels: input channels :math:`C`.
        out_channels: output channels (default :math:`C`).
        key_channels: query / key width :math:`d_k` (default :math:`C/2`, official 256 for 512).
        value_channels: value width (default :math:`C/2`, official 256 for 512).
        dropout: ``Dropout2d`` after the fusion (official 0.05; default 0).
        share_query_key: one transform for queries and keys (official) or two.
        norm_layer: norm in the key / query transform and the fusion (``"batch"``).
        act_layer: activation there (``"relu"``; official: leaky ReLU 0.01).
        memory_efficient: SDPA instead of the written-out :math:`HW \times HW` map.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, out\_channels, H, W)`

    The attention, shape :math:`(B, HW, HW)`, is the output of ``context.attend`` (called by
    :meth:`attention_map` and the reference path).

    Example:
        >>> oc = ObjectContext(64)
        >>> oc(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
        >>> oc.attention_map(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 63, 63])
    """

    #: What each map of ``attention_map`` is over, for ``visattn.viz``: attention between positions.
    attention_map_axes = ("positions",)

    def __init__(self, channels: int, *, out_channels: int | None = None, key_channels: int | None = None,
                 value_channels: int | None = None, dropout: float = 0.0, share_query_key: bool = True,
                 norm_layer: LayerType = "batch", act_layer: LayerType = "relu", memory_efficient: bool = True):
        super().__init__()
        out = channels if out_channels is None else out_channels
        key = max(1, channels // 2) if key_channels is None else key_channels
        value = max(1, channels // 2) if value_channels is None else value_channels
        for name, val in (("out_channels", out), ("key_channels", key), ("value_channels", value)):
            if val < 1:
                raise ValueError(f"ObjectContext: {name} must be >= 1, got {val!r}")
        self.channels, self.out_channels = channels, out
        self.context = SelfAttentionContext(channels, key, value, channels, share_query_key=share_query_key,
                                            norm_layer=norm_layer, act_layer=act_layer,
                                            memory_efficient=memory_efficient)
        self.fuse = ConvNormAct(2 * channels, out, 1, bias=True, norm_layer=norm_layer, act_layer=act_layer)
        self.dropout = nn.Dropout2d(dropout)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The object-context attention, shape ``(B, HW, HW)``."""
        check_input(self, x, self.channels)
        return self.context.attention_map(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        return self.dropout(self.fuse(torch.cat((self.context(x), x), dim=1)))


@register(
    "asp_oc",
    title="Atrous spatial pyramid object context (ASP-OC)",
    note=(
        "Follows the official ASP_OC_Module: five parallel branches on x -- [3x3 conv + BN + act, object context on "
        "a 2x max-pooled grid (key C'/2, value C'), 1x1 conv + BN + act], 1x1 conv + BN + act, and three 3x3 "
        "convs with dilations (12, 24, 36) + BN + act -- each to inner_channels C' (official 256 for 512), "
        "concatenated, 1x1 conv + BN + act to out_channels (official 2C' = C). Differences: act_layer 'relu' "
        "(official leaky ReLU 0.01 from InPlaceABNSync), dropout 0 (official 0.1), pooling in ceil mode so odd "
        "and 1-pixel sizes work. The dilations are the paper's for output stride 8 (feature maps ~97 px); on maps "
        "smaller than the dilation a dilated branch only sees its centre tap (a 1x1 conv): pass (6, 12, 18) at "
        "output stride 16 or smaller rates on small maps."
    ),
    **_OCNET,
)
class ASPObjectContext(nn.Module):
    r"""ASP-OC: an ASPP whose image-pooling branch is replaced by an object-context branch.

    .. math::
        y = \mathrm{act}\big(\mathrm{BN}\big(W_f\,[\mathrm{OC}(x);\ \mathrm{conv}_{1\times 1}(x);\
        \mathrm{conv}_{3\times 3}^{d_1}(x);\ \mathrm{conv}_{3\times 3}^{d_2}(x);\
        \mathrm{conv}_{3\times 3}^{d_3}(x)]\big)\big)

    Every branch ends in BN + activation at ``inner_channels``. The object-context branch is a 3x3 conv, the
    self-attention context of :class:`ObjectContext` (key width ``inner/2``, value width ``inner``) computed on
    a 2x max-pooled grid and resized back, and a 1x1 conv + BN + act (official ``BaseOC_Context_Module``).

    Args:
        channels: input channels :math:`C`.
        out_channels: output channels (default :math:`C`).
        inner_channels: width of each branch (default :math:`C/2`; official 256 with :math:`C = 512`).
        dilations: the three atrous rates (paper and official code: 12, 24, 36, for output stride 8).
        dropout: ``Dropout2d`` after the fusion (official 0.1; default 0).
        norm_layer: norm of every branch and the fusion (``"batch"``).
        act_layer: activation there (``"relu"``; official: leaky ReLU 0.01).
        memory_efficient: attention without the :math:`N \times N` map.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, out\_channels, H, W)`

    The attention of the context branch, on the pooled grid (:math:`N = \lceil H/2 \rceil \lceil W/2 \rceil`),
    shape :math:`(B, N, N)`, is the output of ``oc.attend``.

    Example:
        >>> asp = ASPObjectContext(64, dilations=(2, 4, 6))
        >>> asp(torch.randn(2, 64, 9, 11)).shape
        torch.Size([2, 64, 9, 11])
        >>> asp.attention_map(torch.randn(2, 64, 9, 11)).shape
        torch.Size([2, 30, 30])
    """

    #: What each map of ``attention_map`` is over, for ``visattn.viz``: attention between positions.
    attention_map_axes = ("positions",)

    def __init__(self, channels: int, *, out_channels: int | None = None, inner_channels: int | None = None,
                 dilations: Sequence[int] = (12, 24, 36), dropout: float = 0.0, norm_layer: LayerType = "batch",
                 act_layer: LayerType = "relu", memory_efficient: bool = True):
        super().__init__()
        out = channels if out_channels is None else out_channels
        inner = max(2, channels // 2) if inner_channels is None else inner_channels
        if out < 1 or inner < 2:
            raise ValueError(f"ASPObjectContext: out_channels must be >= 1 and inner_channels >= 2, got {out!r} and "
                             f"{inner!r}")
        dilations = tuple(int(d) for d in dilations)
        if len(dilations) != 3 or min(dilations) < 1:
            raise ValueError(f"ASPObjectContext: dilations must be three positive ints, got {dilations!r}")
        self.channels, self.out_channels, self.dilations = channels, out, dilations
        # Any size works in eager mode; a dynamic-shape torch.export specialises a pooled grid of size 1, so
        # exported graphs (and the contract's export test) need H, W >= 3. Not enforced: eager needs no minimum.
        self.min_size = 3
        cna = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.context_conv = ConvNormAct(channels, inner, 3, bias=True, **cna)
        self.oc = SelfAttentionContext(inner, inner // 2, inner, inner, pool=2, memory_efficient=memory_efficient,
                                       **cna)
        self.context_out = ConvNormAct(inner, inner, 1, bias=True, **cna)
        self.conv1x1 = ConvNormAct(channels, inner, 1, bias=False, **cna)
        self.dilated = nn.ModuleList(ConvNormAct(channels, inner, 3, dilation=d, bias=False, **cna) for d in dilations)
        self.fuse = ConvNormAct(5 * inner, out, 1, bias=False, **cna)
        self.dropout = nn.Dropout2d(dropout)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The context branch's attention on the 2x pooled grid, shape ``(B, N, N)``."""
        check_input(self, x, self.channels)
        return self.oc.attention_map(self.context_conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        # The context branch runs in contiguous layout: with large energies its softmax amplifies the last-bit
        # differences between channels-last and contiguous convolutions, and this keeps the result layout-free.
        feats = [self.context_out(self.oc(self.context_conv(x.contiguous()))), self.conv1x1(x)]
        feats += [conv(x) for conv in self.dilated]
        return self.dropout(self.fuse(torch.cat(feats, dim=1)))
