r"""Criss-cross attention (CCNet) as channels-last batched matmuls.

Each position :math:`u = (i, j)` of an ``H x W`` map attends to the ``H`` positions of its column and the
``W`` positions of its row, itself counted once: CCNet's official PyTorch code masks the self position in
the column branch with :math:`-\infty`, so the softmax runs over ``H + W - 1`` keys.

The tensors here are channels-last, ``(B, H, W, C)``. With that layout both branches are plain batched
matmuls over strided views, no gathers:

- column energies ``(B, W, H, H)``: ``q^T`` of shape ``(B, W, H, C')`` @ ``k`` of shape ``(B, W, C', H)``,
  i.e. ``(B*W, H, C') @ (B*W, C', H)``;
- row energies ``(B, H, W, W)``: ``(B*H, W, C') @ (B*H, C', W)``;

both concatenated to ``(B, H, W, H + W)`` and soft-maxed jointly in float32 (float64 for float64 inputs),
then the weights multiply the values the same way. The cost is :math:`O(HW(H+W)C)` time and
:math:`O(HW(H+W))` memory for the weights, against :math:`O((HW)^2)` for full self-attention. Measured
against mmcv's ``einsum`` formulation in ``benchmarks/context_cc_psa.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .precision import compute_dtype

__all__ = ["criss_cross_energies", "criss_cross_aggregate", "criss_cross_attention"]


def criss_cross_energies(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Criss-cross affinities :math:`d_{i,u} = Q_u \cdot \Omega_{i,u}` of every position with its column and row.

    Args:
        q: queries, channels-last ``(B, H, W, C')`` (any strides).
        k: keys, channels-last ``(B, H, W, C')``.

    Returns:
        Energies ``(B, H, W, H + W)`` in float32 (float64 for float64 inputs): entry ``[b, i, j, g]`` for
        ``g < H`` pairs position ``(i, j)`` with ``(g, j)`` of its column (``-inf`` where ``g == i``, so the
        self position is counted once, in the row part), entry ``[b, i, j, H + g]`` pairs it with ``(i, g)``.
    """
    h = q.shape[1]
    e_col = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1))  # [B, W, H, H]: (B*W, H, C') @ (B*W, C', H)
    e_row = torch.matmul(q, k.transpose(2, 3))  # [B, H, W, W]: (B*H, W, C') @ (B*H, C', W)
    self_pos = torch.eye(h, dtype=torch.bool, device=q.device)  # [H, H]
    e_col = e_col.masked_fill(self_pos, float("-inf"))
    cdt = compute_dtype(q)
    return torch.cat((e_col.transpose(1, 2).to(cdt), e_row.to(cdt)), dim=-1)  # [B, H, W, H + W]


def criss_cross_aggregate(attn: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""Aggregate values along each position's column and row: :math:`\sum_i A_{i,u} \Phi_{i,u}`.

    Args:
        attn: weights ``(B, H, W, H + W)`` laid out as :func:`criss_cross_energies`.
        v: values, channels-last ``(B, H, W, C)``.

    Returns:
        ``(B, H, W, C)``, in ``v``'s dtype (the weights are cast to it).
    """
    h, w = v.shape[1:3]
    # split, not slicing: its backward concatenates the two gradients instead of zero-filling and copying
    a_col, a_row = attn.to(v.dtype).split((h, w), dim=-1)  # [B, H, W, H], [B, H, W, W]
    out_col = torch.matmul(a_col.transpose(1, 2), v.transpose(1, 2))  # [B, W, H, C]: (B*W, H, H) @ (B*W, H, C)
    out_row = torch.matmul(a_row, v)  # [B, H, W, C]: (B*H, W, W) @ (B*H, W, C)
    return out_row + out_col.transpose(1, 2)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous.

    The aggregated values come out channels-last ``(B, H, W, C)`` and the module hands them back as an NCHW
    view, so the gradient arriving from an NCHW graph is an NHWC view with no unit stride in the matrices
    that the matmul backward multiplies: CPU ``bmm`` then takes a slow path (measured 2-10x slower backward at
    128 x 128). One copy here keeps every backward matmul on the BLAS path.
    """

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def criss_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          attend: Callable[[torch.Tensor], torch.Tensor] | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """One criss-cross attention pass on channels-last tensors.

    Args:
        q: queries ``(B, H, W, C')``.
        k: keys ``(B, H, W, C')``.
        v: values ``(B, H, W, C)``.
        attend: the softmax over the last dimension (a module, so hooks can record it); default
            ``torch.softmax(e, -1)``.

    Returns:
        ``(out, attn)``: the aggregated values ``(B, H, W, C)`` and the weights ``(B, H, W, H + W)``
        (float32, float64 for float64 inputs) whose self entry in the column part is exactly 0.
    """
    energy = criss_cross_energies(q, k)
    attn = attend(energy) if attend is not None else torch.softmax(energy, dim=-1)
    out = criss_cross_aggregate(attn, v)
    return (_ContiguousGrad.apply(out) if out.requires_grad else out), attn
