"""Exact softmax attention without the N x N map: SDPA where it applies, a query-blocked kernel where it does not.

Every quadratic context module (non-local, MHSA, DANet's PAM, OCNet) computes
``softmax(scale * Q K^T) V`` over the ``N = H * W`` positions. Written out, that holds the ``N x N``
energies (and, for the backward, the softmax and its gradient) whole: at 96 x 96 that is 85 M entries,
340 MiB each in float32. The functions here give the same result without that map:

- :func:`softmax_attention` is the entry point the modules call. Where the explicit map is small (at most
  :data:`EXPLICIT_MAX_BYTES`, 64 MiB: 64 x 64 at batch 1), it writes the map out (:func:`plain_attention`):
  there the lean kernels cost as much time as they save or more (``benchmarks/results/context-sizes-cpu.md``,
  C = 512, one thread: 0.99-1.18x the plain formulation's time at 32 x 32 and 48 x 48; at 64 x 64 0.78-0.93x,
  within the shared machine's noise, so 64 x 64 stays explicit) and the map is no memory burden. Above the
  threshold (96 x 96: 0.06-0.10x the memory, ``context-cpu.md``), with equal query and value widths it is
  :func:`torch.nn.functional.scaled_dot_product_attention` (fused, memory-lean on CPU and GPU). With
  unequal widths (DANet's PAM: Q, K at C/8, V at C) SDPA has no fused path on CPU (it falls back to its
  math path, which builds the map, and is slower: measured in ``benchmarks/context.py``), so it is
  :func:`blocked_attention`.
- :func:`blocked_attention`: exact attention computed one block of queries at a time, as an autograd
  function whose backward recomputes each block's softmax (FlashAttention's recomputation, in plain
  PyTorch; blocks hold whole rows, so no running statistics are needed): peak extra memory is one or two
  ``block x N`` tiles, in forward and backward.
- :func:`plain_attention`: the explicit formula, the reference path (``memory_efficient=False`` on the
  modules), and the path used while compiling or exporting for unequal widths (the blocked kernel loops
  over a data-dependent number of blocks, which a graph with dynamic H, W cannot hold).

Energies and softmax are computed in float32 for low-precision inputs (bf16 / fp16, autocast included)
and in float64 for float64 inputs.

Tensors are ``(..., N, D)`` (any leading batch / head dimensions), as for SDPA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .precision import compute_dtype

__all__ = ["softmax_attention", "blocked_attention", "plain_attention", "attention_weights", "default_block_size",
           "explicit_map_bytes", "EXPLICIT_MAX_BYTES"]

#: :func:`softmax_attention` writes the map out (:func:`plain_attention`) when it takes at most this many bytes.
EXPLICIT_MAX_BYTES = 64 << 20

#: Elements of one ``(batch, block, N)`` energy tile in :func:`blocked_attention` (8 MiB in float32).
_TILE_ELEMENTS = 1 << 21


def _scale(q: torch.Tensor, scale: float | None) -> float:
    return 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)


def _compiling() -> bool:
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def explicit_map_bytes(q: torch.Tensor, k: torch.Tensor) -> int:
    """Bytes of the explicit ``(..., N, M)`` energy map of ``q``, ``k`` in the compute dtype (float32 / float64)."""
    lead = math.prod(q.shape[:-2])
    return lead * q.shape[-2] * k.shape[-2] * torch.finfo(compute_dtype(q, k)).bits // 8


def default_block_size(batch: int, n_keys: int) -> int:
    """Queries per block so that one ``(batch, block, n_keys)`` tile holds about 2 M elements (at least 16)."""
    return max(16, _TILE_ELEMENTS // max(1, batch * n_keys))


def attention_weights(q: torch.Tensor, k: torch.Tensor, *, scale: float | None = None,
                      attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The attention map ``softmax(scale * q k^T + mask)`` explicitly, shape ``(..., N, M)``.

    Energies and softmax in float32 (float64 for float64 inputs), autocast disabled; the result is in that
    dtype. ``attn_mask`` follows :func:`torch.nn.functional.scaled_dot_product_attention`: a bool mask is
    True where a query may attend to a key, a float mask is added to the energies.
    """
    cdt = compute_dtype(q, k)
    with torch.autocast(q.device.type, enabled=False):
        s = torch.matmul(q.to(cdt) * _scale(q, scale), k.to(cdt).transpose(-2, -1))  # [..., N, M]
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                s = s.masked_fill(~attn_mask, float("-inf"))
            else:
                s = s + attn_mask.to(cdt)
        return torch.softmax(s, dim=-1)


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
                    attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(scale * q k^T + mask) v`` written out (holds the ``N x M`` map): the reference path.

    Args:
        q: queries ``(..., N, Dk)``.
        k: keys ``(..., M, Dk)``.
        v: values ``(..., M, Dv)``.
        scale: factor on the energies; ``None`` is ``1 / sqrt(Dk)``.
        attn_mask: bool (True = may attend) or additive float mask broadcastable to ``(..., N, M)``.

    Returns:
        ``(..., N, Dv)`` in ``v``'s dtype.
    """
    p = attention_weights(q, k, scale=scale, attn_mask=attn_mask)
    return torch.matmul(p.to(v.dtype), v)


class _BlockedAttention(torch.autograd.Function):
    """Exact attention over query blocks; the backward recomputes each block's softmax.

    Inputs are 3-D ``(B, N, Dk)``, ``(B, M, Dk)``, ``(B, M, Dv)``. Only queries are blocked, so every tile
    ``(B, bq, M)`` holds whole rows of the map and its softmax is recomputed exactly, with no running
    statistics. Forward keeps the inputs and the output (for ``rowsum(dO * O)``); no ``N x M`` tensor
    outlives one block. The scale is folded into the queries (``N x Dk``), never applied to a tile.
    """

    @staticmethod
    def forward(ctx, q, k, v, scale: float, block: int):
        cdt = compute_dtype(q, k, v)
        b, n, _ = q.shape
        with torch.autocast(q.device.type, enabled=False):
            qs = (q.to(cdt) * scale).contiguous()  # [B, N, Dk]
            kt = k.to(cdt).transpose(1, 2)  # [B, Dk, M]; strided operands go to the GEMM as they are
            vc = v.to(cdt)  # [B, M, Dv]
            out = torch.empty(b, n, v.shape[-1], dtype=cdt, device=q.device)  # [B, N, Dv]
            for i in range(0, n, block):
                # the same ops as plain_attention, so that a single block gives bit-identical results
                p = torch.softmax(torch.matmul(qs[:, i:i + block], kt), dim=-1)  # [B, bq, M]
                out[:, i:i + block] = torch.matmul(p, vc)
        ctx.scale, ctx.block = scale, block
        ctx.save_for_backward(q, k, v, out)
        return out.to(v.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out = ctx.saved_tensors
        scale, block = ctx.scale, ctx.block
        cdt = out.dtype
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        n = q.shape[1]
        with torch.autocast(q.device.type, enabled=False):
            qs = (q.to(cdt) * scale).contiguous()  # [B, N, Dk]
            kc = k.to(cdt).contiguous()  # [B, M, Dk]
            kt = kc.transpose(1, 2)
            vt = v.to(cdt).transpose(1, 2).contiguous()  # [B, Dv, M]
            go = grad_out.to(cdt).contiguous()  # [B, N, Dv]
            delta = (go * out).sum(-1, keepdim=True)  # [B, N, 1]: rowsum(dO * O) = rowsum(P * dP)
            dq = torch.empty_like(qs) if need_q else None
            dk = torch.zeros_like(kc) if need_k else None
            dv = torch.zeros(vt.shape[0], vt.shape[2], vt.shape[1], dtype=cdt, device=q.device) if need_v else None
            for i in range(0, n, block):
                sl = slice(i, i + block)
                p = torch.softmax(torch.matmul(qs[:, sl], kt), dim=-1)  # [B, bq, M], recomputed
                if need_v:
                    dv.baddbmm_(p.transpose(1, 2), go[:, sl])  # dV += P^T dO
                if need_q or need_k:
                    ds = torch.matmul(go[:, sl], vt).sub_(delta[:, sl]).mul_(p)  # dS = P * (dP - delta)
                    if need_q:
                        dq[:, sl] = torch.matmul(ds, kc).mul_(scale)  # dQ = scale dS K
                    if need_k:
                        dk.baddbmm_(ds.transpose(1, 2), qs[:, sl])  # dK += dS^T (scale Q)
        return (dq.to(q.dtype) if need_q else None, dk.to(k.dtype) if need_k else None,
                dv.to(v.dtype) if need_v else None, None, None)


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
                      block_size: int | None = None) -> torch.Tensor:
    """Exact ``softmax(scale * q k^T) v``, one block of queries at a time, with a recomputing backward.

    The forward holds one ``(batch, block_size, M)`` tile of the attention map at a time, the backward two
    (the recomputed softmax and its gradient); nothing of size ``N x M`` is kept between them. The query / key
    width ``Dk`` and the value width ``Dv`` may differ, and ``N`` need not be a multiple of ``block_size``.

    Args:
        q: queries ``(..., N, Dk)``.
        k: keys ``(..., M, Dk)``.
        v: values ``(..., M, Dv)``.
        scale: factor on the energies; ``None`` is ``1 / sqrt(Dk)`` (DANet's PAM uses 1).
        block_size: queries per block; ``None`` picks :func:`default_block_size`.

    Returns:
        ``(..., N, Dv)`` in ``v``'s dtype.

    Example:
        >>> q, k, v = torch.randn(2, 50, 4), torch.randn(2, 50, 4), torch.randn(2, 50, 32)
        >>> out = blocked_attention(q, k, v, scale=1.0, block_size=16)
        >>> torch.allclose(out, torch.softmax(q @ k.mT, -1) @ v, atol=1e-5)
        True
    """
    lead = q.shape[:-2]
    n, m = q.shape[-2], k.shape[-2]
    q3 = q.reshape(-1, n, q.shape[-1])  # [B*, N, Dk]
    k3 = k.reshape(-1, m, k.shape[-1])
    v3 = v.reshape(-1, m, v.shape[-1])
    block = int(block_size) if block_size is not None else default_block_size(q3.shape[0], m)
    if block < 1:
        raise ValueError(f"blocked_attention: block_size must be >= 1, got {block_size}")
    out = _BlockedAttention.apply(q3, k3, v3, _scale(q, scale), block)
    return out.reshape(*lead, n, v.shape[-1])


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
              attn_mask: torch.Tensor | None = None, memory_efficient: bool = True) -> torch.Tensor:
    """Exact ``softmax(scale * q k^T + mask) v`` by the fastest path that keeps memory lean.

    ``memory_efficient=False`` is :func:`plain_attention`. Otherwise: a map of at most
    :data:`EXPLICIT_MAX_BYTES` (see :func:`explicit_map_bytes`) is written out (:func:`plain_attention`,
    faster there; not while compiling / exporting, whose graphs stay free of size-dependent branches);
    larger ones with equal query and value widths go to
    :func:`torch.nn.functional.scaled_dot_product_attention`; unequal widths without a mask go to
    :func:`blocked_attention`, or to :func:`plain_attention` while compiling / exporting.

    Args:
        q: queries ``(..., N, Dk)``.
        k: keys ``(..., M, Dk)``.
        v: values ``(..., M, Dv)``.
        scale: factor on the energies; ``None`` is ``1 / sqrt(Dk)``.
        attn_mask: as for SDPA: bool (True = may attend) or additive float, broadcastable to ``(..., N, M)``.
        memory_efficient: False selects the explicit formula.

    Returns:
        ``(..., N, Dv)``.

    Example:
        >>> q, k, v = torch.randn(1, 30, 8), torch.randn(1, 30, 8), torch.randn(1, 30, 64)
        >>> torch.allclose(softmax_attention(q, k, v, scale=1.0), plain_attention(q, k, v, scale=1.0), atol=1e-5)
        True
    """
    if not memory_efficient:
        return plain_attention(q, k, v, scale=scale, attn_mask=attn_mask)
    compiling = _compiling()
    if not compiling and explicit_map_bytes(q, k) <= EXPLICIT_MAX_BYTES:
        return plain_attention(q, k, v, scale=scale, attn_mask=attn_mask)
    if q.shape[-1] == v.shape[-1]:
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.to(q.dtype)
        # The fused CPU kernels need a unit stride on the last dimension (tokens made by transposing a conv
        # output have stride N there); otherwise SDPA silently takes its math path, which builds the map.
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        if q.dim() == 3:  # (B, N, D): add a head dimension; ONNX export supports only 4-D SDPA
            if attn_mask is not None and attn_mask.dim() == 3:
                attn_mask = attn_mask.unsqueeze(1)
            out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), attn_mask=attn_mask,
                                                 scale=_scale(q, scale))
            return out.squeeze(1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=_scale(q, scale))
    if attn_mask is not None or compiling:
        return plain_attention(q, k, v, scale=scale, attn_mask=attn_mask)
    return blocked_attention(q, k, v, scale=scale)
