"""DANet: position attention, channel attention, and both summed.

Fu, Liu, Tian, Li, Bao, Fang, Lu. "Dual Attention Network for Scene Segmentation", CVPR 2019.
https://arxiv.org/abs/1809.02983 -- official code: https://github.com/junfu1115/DANet
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import check_input
from ..ops.attention import softmax_attention
from ..ops.precision import compute_dtype
from ..registry import register

__all__ = ["PositionAttention", "ChannelAttention", "DualAttention"]

_CAM_ENERGIES = ("official", "paper")

_DANET = dict(
    paper="Dual Attention Network for Scene Segmentation",
    authors="Fu et al.",
    venue="CVPR",
    year=2019,
    arxiv="1809.02983",
    code="https://github.com/junfu1115/DANet",
    family="danet",
    domain="context",
    weights="matmul",
    applied="matrix product",
    role="context",
    placement="after_last_stage",
)


@register(
    "pam",
    title="Position attention module (PAM)",
    complexity="O((HW)^2)",
    note=(
        "Paper (eqs. 1-2) and official PAM_Module (junfu1115/DANet, encoding/nn/da_att.py) agree: Q, K 1x1 convs "
        "(with bias) to C/8, V to C, energies Q^T K with no 1/sqrt(d) scale, softmax over the keys, E = alpha * (V "
        "A^T) + A with alpha = 0 at start (the official parameter is named gamma). By default computed by an exact "
        "query-blocked kernel that never holds the HW x HW map (memory_efficient=False writes it out, as the "
        "official code). At C < 8 the official query_conv / key_conv have out_channels = in_dim // 8 = 0 and fail in "
        "forward; visattn uses width max(1, C // 8)."
    ),
    **_DANET,
)
class PositionAttention(nn.Module):
    r"""DANet's position attention: every position gathers all positions' features by feature similarity.

    .. math::
        s_{ji} = \frac{\exp(B_i \cdot C_j)}{\sum_{i=1}^{N} \exp(B_i \cdot C_j)}, \qquad
        E_j = \alpha \sum_{i=1}^{N} s_{ji} D_i + A_j

    where :math:`A` is the input, :math:`C` (``query_conv``, the position j being computed) and :math:`B`
    (``key_conv``, the positions i attended to) its 1x1-conv projections to :math:`C/8` channels, :math:`D`
    (``value_conv``) its 1x1-conv projection at :math:`C` channels, :math:`N = HW`, and :math:`\alpha` a
    learned scalar starting at 0 (so the module starts as the identity).

    Args:
        channels: input channels :math:`C`.
        reduction: query / key width is :math:`\lfloor C / r \rfloor` (paper and official code: 8), at least 1.
        memory_efficient: compute the attention one block of queries at a time with a recomputing backward
            (:func:`visattn.ops.blocked_attention`), never holding the :math:`N \times N` map; exact. ``False``
            writes the map out (the official formulation, the reference path). Under ``torch.compile`` /
            ``torch.export`` the written-out formula is traced.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The attention :math:`S` (row j: query position, column i: key position), shape :math:`(B, HW, HW)`, is the
    ``attend`` submodule's output (called by :meth:`attention_map` and the reference path).

    Example:
        >>> pam = PositionAttention(64)
        >>> x = torch.randn(2, 64, 9, 11)
        >>> torch.equal(pam(x), x)  # alpha = 0 at initialisation
        True
        >>> pam.attention_map(x).shape
        torch.Size([2, 99, 99])
    """

    #: What each map of ``attention_map`` is over, for ``visattn.viz``: attention between positions.
    attention_map_axes = ("positions",)

    def __init__(self, channels: int, *, reduction: int = 8, memory_efficient: bool = True):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"PositionAttention: reduction must be >= 1, got {reduction!r}")
        qk = max(1, channels // reduction)
        self.channels, self.memory_efficient = channels, memory_efficient
        self.query_conv = nn.Conv2d(channels, qk, 1)  # C in eq. 1
        self.key_conv = nn.Conv2d(channels, qk, 1)  # B in eq. 1
        self.value_conv = nn.Conv2d(channels, channels, 1)  # D
        self.alpha = nn.Parameter(torch.zeros(1))
        self.attend = nn.Softmax(dim=-1)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.query_conv(x).flatten(2).transpose(1, 2)  # [B, N, C/8]
        k = self.key_conv(x).flatten(2).transpose(1, 2)  # [B, N, C/8]
        v = self.value_conv(x).flatten(2).transpose(1, 2)  # [B, N, C]
        return q, k, v

    def _attention(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        cdt = compute_dtype(q)
        with torch.autocast(q.device.type, enabled=False):
            return self.attend(torch.matmul(q.to(cdt), k.to(cdt).transpose(1, 2)))  # [B, N, N], no scale

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The position attention :math:`S`, shape ``(B, HW, HW)``; row j sums to 1 over the keys i."""
        check_input(self, x, self.channels)
        q, k, _ = self._qkv(x)
        return self._attention(q, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        b, c, h, w = x.shape
        q, k, v = self._qkv(x)
        if self.memory_efficient:
            out = softmax_attention(q, k, v, scale=1.0)  # [B, N, C]
        else:
            out = torch.matmul(self._attention(q, k).to(v.dtype), v)  # [B, N, C] = (V A^T)^T
        out = out.transpose(1, 2).reshape(b, c, h, w)  # [B, C, H, W]
        return torch.addcmul(x, self.alpha, out)  # alpha * out + x, one buffer


@register(
    "cam",
    title="Channel attention module (CAM)",
    complexity="O(HW)",
    note=(
        "Follows the official CAM_Module (encoding/nn/da_att.py): energy X X^T (C x C), then max(energy) - energy "
        "before the softmax, which is softmax(-X X^T): the paper's eq. 3 is softmax(X X^T) (energy='paper' gives "
        "it). E = beta * (S X) + X with beta = 0 at start (the official parameter is named gamma). No convs (as both "
        "paper and code). Energies in float32 under autocast."
    ),
    **_DANET,
)
class ChannelAttention(nn.Module):
    r"""DANet's channel attention: every channel map becomes a weighted sum of all channel maps.

    .. math::
        x_{ji} = \mathrm{softmax}_i\big(\max_k (A A^T)_{jk} - (A A^T)_{ji}\big), \qquad
        E_j = \beta \sum_{i=1}^{C} x_{ji} A_i + A_j

    where :math:`A \in R^{C \times N}` is the input with its positions flattened and :math:`\beta` a learned
    scalar starting at 0. The :math:`\max - \cdot` is the official code's (the paper's eq. 3 applies the
    softmax to :math:`A A^T` itself, ``energy="paper"``).

    Args:
        channels: input channels :math:`C`.
        energy: ``"official"`` (``max(E) - E``, default) or ``"paper"`` (``E``).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The channel attention :math:`X`, shape :math:`(B, C, C)`, is the ``attend`` submodule's output.

    Example:
        >>> cam = ChannelAttention(64)
        >>> cam.attention_map(torch.randn(2, 64, 9, 11)).shape
        torch.Size([2, 64, 64])
    """

    #: What each map of ``attention_map`` is over, for ``visattn.viz``: a (B, C, C) matrix over channels.
    attention_map_axes = ("channels",)

    def __init__(self, channels: int, *, energy: str = "official"):
        super().__init__()
        if energy not in _CAM_ENERGIES:
            raise ValueError(f"ChannelAttention: energy must be one of {_CAM_ENERGIES}, got {energy!r}")
        self.channels, self.energy = channels, energy
        self.beta = nn.Parameter(torch.zeros(1))
        self.attend = nn.Softmax(dim=-1)

    def _attention(self, xf: torch.Tensor) -> torch.Tensor:
        cdt = compute_dtype(xf)
        with torch.autocast(xf.device.type, enabled=False):
            xc = xf.to(cdt)
            e = torch.matmul(xc, xc.transpose(1, 2))  # [B, C, C]
            if self.energy == "official":
                e = e.amax(dim=-1, keepdim=True) - e
            return self.attend(e)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The channel attention, shape ``(B, C, C)``; each row sums to 1."""
        check_input(self, x, self.channels)
        return self._attention(x.flatten(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        xf = x.flatten(2)  # [B, C, N]
        out = torch.matmul(self._attention(xf).to(x.dtype), xf)  # [B, C, N]
        return torch.addcmul(x, self.beta, out.reshape(x.shape))  # beta * out + x


@register(
    "danet",
    title="Dual attention (PAM + CAM)",
    complexity="O((HW)^2)",
    note=(
        "PAM(x) + CAM(x), the sum at the heart of the official DANetHead. The head's other layers (the 3x3 "
        "conv + BN + ReLU before and after each module, dropout and the classifiers) are not part of this "
        "module: they belong to the segmentation head, and without them the two branches see the same input. "
        "At initialisation (alpha = beta = 0) the output is 2x. PAM and CAM are as in `pam` and `cam`."
    ),
    **_DANET,
)
class DualAttention(nn.Module):
    r"""DANet's dual attention: the sum of position attention and channel attention on the same input.

    .. math::
        Y = \mathrm{PAM}(X) + \mathrm{CAM}(X)

    Each branch carries its own residual, so :math:`Y = 2X` at initialisation. The official head puts a
    3x3 conv + BN + ReLU before and after each branch; those are left to the caller.

    Args:
        channels: input channels :math:`C`.
        reduction: PAM's query / key reduction (8).
        cam_energy: CAM's energy, ``"official"`` or ``"paper"`` (see :class:`ChannelAttention`).
        memory_efficient: PAM's blocked attention (see :class:`PositionAttention`).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    Example:
        >>> da = DualAttention(64)
        >>> x = torch.randn(2, 64, 9, 11)
        >>> torch.equal(da(x), 2 * x)
        True
        >>> [a.shape for a in da.attention_map(x)]
        [torch.Size([2, 99, 99]), torch.Size([2, 64, 64])]
    """

    #: What each map of ``attention_map`` is over, for ``visattn.viz``: PAM's over positions, CAM's over channels.
    attention_map_axes = ("positions", "channels")

    def __init__(self, channels: int, *, reduction: int = 8, cam_energy: str = "official",
                 memory_efficient: bool = True):
        super().__init__()
        self.channels = channels
        self.pam = PositionAttention(channels, reduction=reduction, memory_efficient=memory_efficient)
        self.cam = ChannelAttention(channels, energy=cam_energy)

    def attention_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(position attention (B, HW, HW), channel attention (B, C, C))``."""
        check_input(self, x, self.channels)
        return self.pam.attention_map(x), self.cam.attention_map(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        return self.pam(x) + self.cam(x)
