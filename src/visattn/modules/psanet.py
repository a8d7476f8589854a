"""Point-wise spatial attention.

Zhao, Zhang, Liu, Shi, Loy, Lin, Jia. "PSANet: Point-wise Spatial Attention Network for Scene Parsing",
ECCV 2018. https://hszhao.github.io/papers/eccv18_psanet.pdf -- official code:
https://github.com/hszhao/PSANet (Caffe) and https://github.com/hszhao/semseg (PyTorch, ``model/psanet.py``)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvNormAct, LayerType, Softmax32, check_input, create_norm, format_shape, reduced_channels
from ..ops.precision import compute_dtype
from ..ops.psa import psa_attention, psa_gather
from ..registry import register

__all__ = ["PointwiseSpatialAttention"]

_MODES = ("collect", "distribute", "both")


class _PSABranch(nn.Module):
    """One branch (collect or distribute): reduce, adapt to the over-complete mask, re-index, aggregate."""

    def __init__(self, channels: int, mid: int, grid: tuple[int, int], shrink: bool, mode: str,
                 norm_layer: LayerType):
        super().__init__()
        h, w = grid
        self.mode = mode
        self.grid = grid
        self.shrink = shrink
        self.reduce = ConvNormAct(channels, mid, 1, norm_layer=norm_layer)
        self.adapt = ConvNormAct(mid, mid, 1, norm_layer=norm_layer)
        # The last conv of the official `attention` Sequential: mid -> (2H-1)(2W-1) mask channels, no bias.
        # Applied as a matmul on the channels-last features so that the mask comes out channels-last.
        self.mask_conv = nn.Conv2d(mid, (2 * h - 1) * (2 * w - 1), 1, bias=False)
        # collect: rows of G are targets, softmax over the last dim; distribute: rows are sources, over dim 1.
        self.attend = Softmax32(-1 if mode == "collect" else 1)

    def reduced(self, x: torch.Tensor) -> torch.Tensor:
        """Reduced features ``(B, C', H', W')`` on the attention grid."""
        r = self.reduce(x)
        if self.shrink:
            r = F.interpolate(r, size=self.grid, mode="bilinear", align_corners=True)
        return r

    def masks(self, r: torch.Tensor) -> torch.Tensor:
        """Over-complete masks ``(B, H', W', (2H'-1)(2W'-1))``, channels-last, from reduced features ``r``."""
        return F.linear(self.adapt(r).permute(0, 2, 3, 1), self.mask_conv.weight.flatten(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Soft-maxed attention ``(B, H'W' sources, H'W' targets)`` (the official buffer after its softmax)."""
        g = psa_gather(self.masks(self.reduced(x)))
        a = self.attend(g.to(compute_dtype(g)))
        return a.transpose(1, 2) if self.mode == "collect" else a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduced(x)
        return psa_attention(self.masks(r), r, self.mode, self.attend)  # [B, C', H', W']


@register(
    "psa",
    title="Point-wise Spatial Attention (PSA)",
    paper="PSANet: Point-wise Spatial Attention Network for Scene Parsing",
    authors="Zhao et al.",
    venue="ECCV",
    year=2018,
    arxiv=None,
    code="https://github.com/hszhao/semseg",
    family="psanet",
    domain="context",
    weights="conv",
    applied="matrix product",
    role="context",
    placement="after_last_stage",
    complexity="O((HW)^2)",
    size_bound=True,
    note=(
        "Follows the official PyTorch PSA module (hszhao/semseg model/psanet.py, non-compact, psa_softmax=True, "
        "normalization factor 1): per branch a reduce conv1x1+BN+ReLU to C' (official 2048 -> 512, so C' = C/4 "
        "here), an adaptation conv1x1+BN+ReLU and a conv1x1 to the (2H-1)(2W-1) over-complete mask, the collect "
        "/ distribute re-indexing of the reference C++ loops (as an as_strided view, no scatter), softmax over the "
        "source positions, aggregation; branches concatenated (mode='both', the paper's bi-direction), projected "
        "by conv1x1+BN+ReLU to C, and concatenated with the input as the official module does. Departures: the "
        "official module returns that 2C-channel concatenation and leaves the fusion to the head's conv; here a "
        "conv1x1+BN+ReLU (2C -> C) fuses it so the module keeps (B, C, H, W). The mask always covers the whole map "
        "(mask_h = 2H-1, mask_w = 2W-1, the official default); smaller masks and the 'compact' variant are not "
        "offered. shrink_factor defaults to 1 (attention at the input's resolution, the paper's equations); the "
        "official configs use 2 (bilinear, align_corners=True, down then up; up-sampling here goes back to the "
        "exact input size)."
    ),
)
class PointwiseSpatialAttention(nn.Module):
    r"""PSANet's point-wise spatial attention: position-adaptive masks that collect and distribute context.

    Each position :math:`i` predicts, from its own feature, an over-complete mask :math:`h_i` of
    :math:`(2H-1) \times (2W-1)` values centred on it; re-indexed, it gives a weight for every position
    :math:`j` at relative offset :math:`j - i`:

    .. math::
        z_i = \sum_j a^c_{i,j} x_j + \sum_j a^d_{i,j} x_j,\quad
        a^c_{i,j} = \mathrm{softmax}_j\big(h^c_i[j - i]\big),\quad
        a^d_{i,j} = \mathrm{softmax}_j\big(h^d_j[i - j]\big)

    collect (:math:`a^c`): :math:`i` gathers from every :math:`j` with weights predicted at :math:`i`;
    distribute (:math:`a^d`): every :math:`j` sends to :math:`i` with weights predicted at :math:`j`. The
    softmax runs over the source positions :math:`j` (the official code's ``softmax(dim=1)``).

    The re-indexing is exactly the reference C++ ``PSAForward_buffer_mask_collect`` / ``_distribute`` loops
    (see :mod:`visattn.ops.psa`). The module is built for one feature size (the mask has :math:`(2H-1)(2W-1)`
    channels) and refuses any other.

    Args:
        channels: input channels :math:`C`.
        feature_size: ``(H, W)`` of the inputs the module will see.
        mode: ``"collect"``, ``"distribute"`` or ``"both"`` (the paper's bi-direction, concatenated).
        reduction: :math:`C / C'` for the reduced features the attention runs on (official 2048 -> 512: 4).
        rd_channels: explicit :math:`C'`, overriding ``reduction``.
        shrink_factor: attention on a map down-sampled by this factor, :math:`((H-1)/s + 1, (W-1)/s + 1)`
            (bilinear, align corners), its output up-sampled back to :math:`(H, W)`; 1 (default) computes it
            at full resolution. The official configs use 2.
        norm_layer: the norm of every conv-norm-ReLU (``"batch"``, as the official code).

    Shape:
        - Input: :math:`(B, C, H, W)` with :math:`(H, W)` = ``feature_size``
        - Output: :math:`(B, C, H, W)`

    Each branch (``collect`` / ``distribute`` submodules) has an ``attend`` softmax whose output is its
    ``(B, H'W', H'W')`` attention (rows targets for collect, rows sources for distribute);
    :meth:`attention_map` returns them in one layout.

    Example:
        >>> psa = PointwiseSpatialAttention(64, feature_size=(9, 11))
        >>> x = torch.randn(2, 64, 9, 11)
        >>> psa(x).shape
        torch.Size([2, 64, 9, 11])
        >>> psa.attention_map(x).shape  # (B, branches, source H*W, target H, target W)
        torch.Size([2, 2, 99, 9, 11])
    """

    def __init__(self, channels: int, *, feature_size: tuple[int, int], mode: str = "both", reduction: float = 4,
                 rd_channels: int | None = None, shrink_factor: int = 1, norm_layer: LayerType = "batch"):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"PointwiseSpatialAttention: mode must be one of {_MODES}, got {mode!r}")
        try:
            fh, fw = (int(s) for s in feature_size)
        except (TypeError, ValueError):
            raise ValueError(f"PointwiseSpatialAttention: feature_size must be (H, W), got {feature_size!r}") from None
        if fh < 1 or fw < 1:
            raise ValueError(f"PointwiseSpatialAttention: feature_size must be positive, got {feature_size!r}")
        if int(shrink_factor) != shrink_factor or shrink_factor < 1:
            raise ValueError(f"PointwiseSpatialAttention: shrink_factor must be an int >= 1, got {shrink_factor!r}")
        self.channels = channels
        self.feature_size = (fh, fw)
        self.mode = mode
        self.shrink_factor = int(shrink_factor)
        self.grid = ((fh - 1) // self.shrink_factor + 1, (fw - 1) // self.shrink_factor + 1)
        mid = reduced_channels(channels, reduction, rd_channels)
        modes = ("collect", "distribute") if mode == "both" else (mode,)
        self.branches = modes
        for m in modes:
            self.add_module(m, _PSABranch(channels, mid, self.grid, self.shrink_factor != 1, m, norm_layer))
        self.proj = ConvNormAct(mid * len(modes), channels, 1, norm_layer=norm_layer)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False), create_norm(norm_layer, channels),
                                  nn.ReLU())

    def _check(self, x: torch.Tensor) -> None:
        check_input(self, x, self.channels)
        if tuple(x.shape[-2:]) != self.feature_size:
            fh, fw = self.feature_size
            raise ValueError(
                f"PointwiseSpatialAttention: built for feature_size=({fh}, {fw}) (its masks have "
                f"{(2 * self.grid[0] - 1) * (2 * self.grid[1] - 1)} channels), expected input of shape "
                f"(B, {self.channels}, {fh}, {fw}), got {format_shape(x)}"
            )

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights :math:`(B, n_{branches}, H'W', H', W')` on the (shrunk) grid :math:`(H', W')`.

        ``[b, k, s, i, j]`` is the weight of source ``s`` for target ``(i, j)`` in branch ``k`` (collect first).
        """
        self._check(x)
        h, w = self.grid
        maps = [getattr(self, name).attention(x) for name in self.branches]  # [B, HW, HW] each
        return torch.stack(maps, dim=1).reshape(x.shape[0], len(maps), h * w, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        outs = [getattr(self, name)(x) for name in self.branches]  # [B, C', H', W'] each
        y = self.proj(torch.cat(outs, dim=1))  # [B, C, H', W']
        if self.shrink_factor != 1:
            y = F.interpolate(y, size=self.feature_size, mode="bilinear", align_corners=True)
        return self.fuse(torch.cat((x, y), dim=1))
