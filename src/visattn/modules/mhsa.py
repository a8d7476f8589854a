"""Multi-head self-attention over the positions of a feature map, and the Transformer encoder block.

Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser, Polosukhin. "Attention Is All You Need",
NeurIPS 2017. https://arxiv.org/abs/1706.03762 -- official code: https://github.com/tensorflow/tensor2tensor
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import check_input
from ..ops.attention import softmax_attention
from ..ops.precision import compute_dtype
from ..registry import register

__all__ = ["MultiHeadSelfAttention", "TransformerBlock", "sine_position_embedding"]

_POS_EMBEDS = ("none", "sine", "learned")


def sine_position_embedding(channels: int, height: int, width: int, *, temperature: float = 10000.0,
                            device=None, dtype=None) -> torch.Tensor:
    r"""2-D sinusoidal position embedding (DETR's ``PositionEmbeddingSine``, normalised), ``(1, C, H, W)``.

    The first :math:`C/2` channels encode the row, the last :math:`C/2` the column; within each half,
    channel :math:`2i` is :math:`\sin(p / T^{2i/(C/2)})` and :math:`2i+1` the cosine, with the position
    :math:`p` in :math:`(0, 2\pi]` (the cumulative index normalised by the size). ``channels`` must be a
    multiple of 4.

    Example:
        >>> sine_position_embedding(64, 3, 5).shape
        torch.Size([1, 64, 3, 5])
    """
    npf = channels // 2
    cdt = compute_dtype(dtype)
    y = torch.arange(1, height + 1, device=device, dtype=cdt) / (height + 1e-6) * (2 * math.pi)  # [H]
    x = torch.arange(1, width + 1, device=device, dtype=cdt) / (width + 1e-6) * (2 * math.pi)  # [W]
    i = torch.arange(npf, device=device, dtype=cdt)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / npf)  # [C/2]
    py, px = y[:, None] / dim_t, x[:, None] / dim_t  # [H, C/2], [W, C/2]
    py = torch.stack((py[:, 0::2].sin(), py[:, 1::2].cos()), dim=2).flatten(1)  # [H, C/2], sin/cos interleaved
    px = torch.stack((px[:, 0::2].sin(), px[:, 1::2].cos()), dim=2).flatten(1)  # [W, C/2]
    pos = torch.cat((py[:, None, :].expand(height, width, npf), px[None, :, :].expand(height, width, npf)), dim=2)
    return pos.permute(2, 0, 1).unsqueeze(0).to(dtype or torch.float32)  # [1, C, H, W]


def _mha_mask_to_sdpa(mask: torch.Tensor | None, batch: int, heads: int, n: int, owner: str) -> torch.Tensor | None:
    """Check a ``torch.nn.MultiheadAttention``-style mask and turn it into SDPA's convention.

    MultiheadAttention: bool True = NOT allowed to attend, float = added. SDPA: bool True = allowed.
    Shapes ``(N, N)`` or ``(B * heads, N, N)`` (the latter reshaped to ``(B, heads, N, N)``).
    """
    if mask is None:
        return None
    if mask.dim() == 2:
        expected = (n, n)
    elif mask.dim() == 3:
        expected = (batch * heads, n, n)
    else:
        expected = None
    if expected is None or tuple(mask.shape) != expected:
        raise ValueError(
            f"{owner}: expected mask of shape ({n}, {n}) or ({batch * heads}, {n}, {n}) (positions HW = {n}, "
            f"B * heads = {batch} * {heads}), got {tuple(mask.shape)}"
        )
    if mask.dim() == 3:
        mask = mask.reshape(batch, heads, n, n)
    if mask.dtype == torch.bool:
        return ~mask
    if not mask.is_floating_point():
        raise ValueError(f"{owner}: mask must be bool or floating point, got {mask.dtype}")
    return mask


@register(
    "mhsa",
    title="Multi-head self-attention",
    paper="Attention Is All You Need",
    authors="Vaswani et al.",
    venue="NeurIPS",
    year=2017,
    arxiv="1706.03762",
    code="https://github.com/tensorflow/tensor2tensor",
    family="transformer",
    domain="context",
    weights="matmul",
    applied="matrix product",
    role="context",
    placement="after_last_stage",
    complexity="O((HW)^2)",
    note=(
        "Follows the paper (Sec. 3.2): softmax(QK^T / sqrt(d_k)) V per head, h = 8, d_k = C / h, output "
        "projection; the tokens are the H*W positions. Parameters and masks are torch.nn.MultiheadAttention's "
        "(in_proj_weight / in_proj_bias / out_proj; bool mask True = not allowed, float mask added), and the "
        "module equals it after copying weights. No residual (the Add & Norm belongs to `transformer`). "
        "Position embeddings are optional: 'sine' is DETR's normalised 2-D sinusoid (the paper's is 1-D), "
        "'learned' a table at `pos_size` bilinearly resized to H, W; both are added to the query and key inputs "
        "only, as DETR does. Dropout is left out (0 in eval)."
    ),
)
class MultiHeadSelfAttention(nn.Module):
    r"""Multi-head scaled dot-product self-attention over the :math:`HW` positions of a feature map.

    .. math::
        \mathrm{MultiHead}(X) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h) W^O, \quad
        \mathrm{head}_i = \mathrm{softmax}\Big(\frac{(X W_i^Q)(X W_i^K)^T}{\sqrt{d_k}} + M\Big) X W_i^V

    where :math:`X \in R^{HW \times C}` are the positions as tokens, :math:`d_k = C / h`, and :math:`M` the
    optional mask. With a position embedding :math:`P`, queries and keys are computed from :math:`X + P`.

    Args:
        channels: input channels, the model width :math:`d_{model} = C`.
        num_heads: :math:`h` (paper: 8); must divide ``channels``.
        bias: biases in the input and output projections (as ``torch.nn.MultiheadAttention``).
        pos_embed: ``"none"``, ``"sine"`` (2-D sinusoid, ``channels`` a multiple of 4) or ``"learned"``.
        pos_size: ``(H, W)`` of the learned table (resized bilinearly to other sizes).
        memory_efficient: fused SDPA (no :math:`HW \times HW` map held); ``False`` writes the map out.

    Shape:
        - Input: :math:`(B, C, H, W)`; ``mask`` :math:`(HW, HW)` or :math:`(B h, HW, HW)`, bool (True = not
          allowed to attend) or float (added to the energies), as ``torch.nn.MultiheadAttention``'s
          ``attn_mask``.
        - Output: :math:`(B, C, H, W)`

    The attention weights, shape :math:`(B, h, HW, HW)`, are the ``attend`` submodule's output (called by
    :meth:`attention_map` and by the reference path).

    Example:
        >>> mhsa = MultiHeadSelfAttention(64, num_heads=8)
        >>> mhsa(torch.randn(2, 64, 6, 7)).shape
        torch.Size([2, 64, 6, 7])
        >>> causal = torch.ones(42, 42, dtype=torch.bool).triu(1)  # True = masked out
        >>> mhsa.attention_map(torch.randn(1, 64, 6, 7), mask=causal)[0, 0, 0, 1].item()
        0.0
    """

    #: What each map of ``attention_map`` is over, for ``visattn.viz``: attention between positions.
    attention_map_axes = ("positions",)

    def __init__(self, channels: int, *, num_heads: int = 8, bias: bool = True, pos_embed: str = "none",
                 pos_size: int | tuple[int, int] = 16, memory_efficient: bool = True):
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"MultiHeadSelfAttention: channels ({channels}) must be divisible by num_heads "
                             f"({num_heads})")
        if pos_embed not in _POS_EMBEDS:
            raise ValueError(f"MultiHeadSelfAttention: pos_embed must be one of {_POS_EMBEDS}, got {pos_embed!r}")
        if pos_embed == "sine" and channels % 4:
            raise ValueError(f"MultiHeadSelfAttention: pos_embed='sine' needs channels divisible by 4, got {channels}")
        self.channels, self.num_heads, self.head_dim = channels, num_heads, channels // num_heads
        self.pos_embed, self.memory_efficient = pos_embed, memory_efficient
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))  # [W^Q; W^K; W^V]
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels)) if bias else None
        self.out_proj = nn.Linear(channels, channels, bias=bias)  # W^O
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)
        if pos_embed == "learned":
            ph, pw = (pos_size, pos_size) if isinstance(pos_size, int) else tuple(pos_size)
            self.pos_table = nn.Parameter(torch.empty(1, channels, ph, pw))
            nn.init.trunc_normal_(self.pos_table, std=0.02)
        else:
            self.pos_table = None
        self.attend = nn.Softmax(dim=-1)

    def position(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor | None:
        """The position embedding as tokens ``(1, HW, C)`` for an ``h x w`` map, or None."""
        if self.pos_embed == "none":
            return None
        if self.pos_embed == "sine":
            pos = sine_position_embedding(self.channels, h, w, device=like.device, dtype=like.dtype)
        else:
            # Always resampled (the identity at the table's own size), so no branch on H, W under export.
            pos = F.interpolate(self.pos_table, size=(h, w), mode="bilinear", align_corners=False)
        return pos.flatten(2).transpose(1, 2).to(like.dtype)  # [1, HW, C]

    def _qkv(self, tokens: torch.Tensor, pos: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        b, n, c = tokens.shape
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        qk_in = tokens if pos is None else tokens + pos
        q, k, v = F.linear(qk_in, w_q, b_q), F.linear(qk_in, w_k, b_k), F.linear(tokens, w_v, b_v)  # [B, N, C]
        return tuple(t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # [B,h,N,d]

    def attend_tokens(self, tokens: torch.Tensor, size: tuple[int, int], mask: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Self-attention on tokens ``(B, HW, C)`` of an ``size = (H, W)`` map; returns ``(B, HW, C)``."""
        b, n, c = tokens.shape
        q, k, v = self._qkv(tokens, self.position(*size, like=tokens))
        sdpa_mask = _mha_mask_to_sdpa(mask, b, self.num_heads, n, type(self).__name__)
        if self.memory_efficient:
            out = softmax_attention(q, k, v, attn_mask=sdpa_mask)  # [B, h, N, d]
        else:
            out = torch.matmul(self.attend(self._energies(q, k, sdpa_mask)).to(v.dtype), v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))

    def _energies(self, q, k, sdpa_mask):
        """Scaled energies plus mask, float32 (float64 for float64 inputs), ``(B, h, N, N)``."""
        cdt = compute_dtype(q)
        with torch.autocast(q.device.type, enabled=False):
            s = torch.matmul(q.to(cdt), k.to(cdt).transpose(-2, -1)) / math.sqrt(self.head_dim)
            if sdpa_mask is not None:
                s = s.masked_fill(~sdpa_mask, float("-inf")) if sdpa_mask.dtype == torch.bool else s + sdpa_mask
        return s

    def attention_map(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights per head, shape ``(B, heads, HW, HW)``."""
        check_input(self, x, self.channels)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        q, k, _ = self._qkv(tokens, self.position(h, w, like=tokens))
        return self.attend(self._energies(q, k, _mha_mask_to_sdpa(mask, b, self.num_heads, h * w,
                                                                  type(self).__name__)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_input(self, x, self.channels)
        b, c, h, w = x.shape
        out = self.attend_tokens(x.flatten(2).transpose(1, 2), (h, w), mask)  # [B, HW, C]
        return out.transpose(1, 2).reshape(b, c, h, w)


@register(
    "transformer",
    title="Transformer encoder block",
    paper="Attention Is All You Need",
    authors="Vaswani et al.",
    venue="NeurIPS",
    year=2017,
    arxiv="1706.03762",
    code="https://github.com/tensorflow/tensor2tensor",
    family="transformer",
    domain="context",
    weights="matmul",
    applied="matrix product",
    role="context",
    placement="after_last_stage",
    complexity="O((HW)^2)",
    note=(
        "Follows the paper's encoder layer (Sec. 3.1): MHSA then FFN max(0, xW1 + b1)W2 + b2 with d_ff = 4 d_model, "
        "each wrapped in Add & Norm (post-norm, LayerNorm(x + sublayer(x))); norm_first=True gives the pre-norm "
        "variant. Equals torch.nn.TransformerEncoderLayer (relu, batch_first, dropout 0) after copying weights, "
        "for both settings. The tokens are the H*W positions; dropout is left out. The residuals are the paper's."
    ),
)
class TransformerBlock(nn.Module):
    r"""Transformer encoder layer on the :math:`HW` positions: MHSA and a position-wise FFN, each with Add & Norm.

    Post-norm (paper, ``norm_first=False``):

    .. math::
        X' = \mathrm{LN}(X + \mathrm{MHSA}(X)), \qquad Y = \mathrm{LN}(X' + \mathrm{FFN}(X')), \qquad
        \mathrm{FFN}(x) = \max(0, x W_1 + b_1) W_2 + b_2

    Pre-norm (``norm_first=True``): :math:`X' = X + \mathrm{MHSA}(\mathrm{LN}(X))`,
    :math:`Y = X' + \mathrm{FFN}(\mathrm{LN}(X'))`.

    Args:
        channels: model width :math:`d_{model} = C`.
        num_heads: :math:`h` (paper: 8).
        mlp_ratio: :math:`d_{ff} / d_{model}` (paper: 2048 / 512 = 4).
        norm_first: pre-norm instead of the paper's post-norm.
        layer_norm_eps: LayerNorm epsilon (``torch.nn.TransformerEncoderLayer``'s 1e-5).
        pos_embed: position embedding of the attention, see :class:`MultiHeadSelfAttention`.
        pos_size: size of a learned position table.
        memory_efficient: see :class:`MultiHeadSelfAttention`.

    Shape:
        - Input: :math:`(B, C, H, W)`; optional ``mask`` as for :class:`MultiHeadSelfAttention`.
        - Output: :math:`(B, C, H, W)`

    Example:
        >>> block = TransformerBlock(64, num_heads=4)
        >>> block(torch.randn(2, 64, 5, 9)).shape
        torch.Size([2, 64, 5, 9])
    """

    #: What each map of ``attention_map`` is over, for ``visattn.viz``: attention between positions.
    attention_map_axes = ("positions",)

    def __init__(self, channels: int, *, num_heads: int = 8, mlp_ratio: float = 4.0, norm_first: bool = False,
                 layer_norm_eps: float = 1e-5, pos_embed: str = "none", pos_size: int | tuple[int, int] = 16,
                 memory_efficient: bool = True):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        if hidden < 1:
            raise ValueError(f"TransformerBlock: mlp_ratio must give a hidden width >= 1, got {mlp_ratio!r}")
        self.channels, self.norm_first = channels, norm_first
        self.attn = MultiHeadSelfAttention(channels, num_heads=num_heads, pos_embed=pos_embed, pos_size=pos_size,
                                           memory_efficient=memory_efficient)
        self.linear1 = nn.Linear(channels, hidden)  # W1, b1
        self.linear2 = nn.Linear(hidden, channels)  # W2, b2
        self.norm1 = nn.LayerNorm(channels, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(channels, eps=layer_norm_eps)

    def _ffn(self, t: torch.Tensor) -> torch.Tensor:
        return self.linear2(torch.relu(self.linear1(t)))

    def attention_map(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights of the block's MHSA, ``(B, heads, HW, HW)`` (input normed first if pre-norm)."""
        check_input(self, x, self.channels)
        if self.norm_first:
            x = self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.attn.attention_map(x, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_input(self, x, self.channels)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        if self.norm_first:
            t = t + self.attn.attend_tokens(self.norm1(t), (h, w), mask)
            t = t + self._ffn(self.norm2(t))
        else:
            t = self.norm1(t + self.attn.attend_tokens(t, (h, w), mask))
            t = self.norm2(t + self._ffn(t))
        return t.transpose(1, 2).reshape(b, c, h, w)
